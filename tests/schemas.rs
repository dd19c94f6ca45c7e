//! The JSON Schemas in `schema/`, which editors use to complete keys and
//! flag typos as you type: every file we ship and every TOML example of the
//! README is valid against them, each shipped example names its schema with
//! a `#:schema` line that leads to it, and what glemsel refuses they refuse
//! too. (`src/rules/raw.rs` checks that they know exactly the keys the
//! parser knows.)

use std::path::{Path, PathBuf};

use boon::{Compiler, SchemaIndex, Schemas};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Both schemas, compiled (which checks them against the draft-07
/// meta-schema).
struct Validator {
    schemas: Schemas,
    config: SchemaIndex,
    rules: SchemaIndex,
}

impl Validator {
    fn new() -> Validator {
        let mut schemas = Schemas::new();
        let mut compiler = Compiler::new();
        let mut compile = |name: &str| {
            let path = repo().join("schema").join(name);
            compiler
                .compile(path.to_str().unwrap(), &mut schemas)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"))
        };
        let config = compile("glemsel.schema.json");
        let rules = compile("rules.schema.json");
        Validator {
            schemas,
            config,
            rules,
        }
    }

    fn check(&self, schema: SchemaIndex, toml_text: &str) -> Result<(), String> {
        let doc: toml::Table = toml::from_str(toml_text).map_err(|e| format!("TOML: {e}"))?;
        let doc: Value = serde_json::to_value(doc).unwrap();
        self.schemas
            .validate(&doc, schema)
            .map_err(|e| format!("{e}"))
    }

    fn config(&self, text: &str) -> Result<(), String> {
        self.check(self.config, text)
    }

    fn rules(&self, text: &str) -> Result<(), String> {
        self.check(self.rules, text)
    }
}

/// Every `*.toml` under `rules/`, the demo's included.
fn rule_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for set in std::fs::read_dir(repo().join("rules")).unwrap() {
        let set = set.unwrap().path();
        if !set.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&set).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "toml") {
                files.push(file);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    files
}

#[test]
fn every_shipped_file_is_valid() {
    let v = Validator::new();
    for file in rule_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        v.rules(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    let config = repo().join("systemd/glemsel.toml");
    v.config(&std::fs::read_to_string(&config).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
}

#[test]
fn the_readme_examples_are_valid() {
    let v = Validator::new();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 3);
    for block in blocks {
        let result = if block.contains("[stores.") {
            v.config(block)
        } else {
            v.rules(block)
        };
        result.unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

/// The `#:schema` line a shipped example starts with (as taplo and the
/// editor plugins built on it read it: a header directive), resolved
/// against the file's folder.
fn schema_directive(file: &Path) -> PathBuf {
    let text = std::fs::read_to_string(file).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let target = first
        .strip_prefix("#:schema ")
        .unwrap_or_else(|| panic!("{} does not start with #:schema", file.display()));
    file.parent().unwrap().join(target.trim())
}

#[test]
fn every_shipped_example_names_its_schema() {
    let schema = |name: &str| repo().join("schema").join(name).canonicalize().unwrap();
    // The demo writes its rules into a folder of its own; the examples
    // are the reference sets and the example config.
    for file in rule_files()
        .into_iter()
        .filter(|f| !f.starts_with(repo().join("rules/demo")))
    {
        let named = schema_directive(&file);
        assert_eq!(
            named.canonicalize().ok(),
            Some(schema("rules.schema.json")),
            "{}",
            file.display()
        );
    }
    let config = repo().join("systemd/glemsel.toml");
    assert_eq!(
        schema_directive(&config).canonicalize().ok(),
        Some(schema("glemsel.schema.json"))
    );
}

const RULE: &str = r#"
[categories.customer_contact]
description = "Name and e-mail"

[[rule]]
id = "contacts"
store = "shop"
table = "public.customers"
category = "customer_contact"
after = "contract_ended"
retain = "36 months"
action = "pseudonymise"
columns = { name = "hmac", email = "hmac_email" }
"#;

const CONFIG: &str = r#"
timezone = "Europe/Copenhagen"
key_credential = "hmac-key"

[stores.shop]
engine = "postgres"
url_credential = "shop-url"
"#;

/// What glemsel refuses, the schemas refuse: typos first of all.
#[test]
fn mistakes_are_flagged() {
    let v = Validator::new();
    v.rules(RULE).unwrap();
    v.config(CONFIG).unwrap();
    let rule = |from: &str, to: &str| {
        assert!(RULE.contains(from), "{from}");
        RULE.replace(from, to)
    };
    for bad in [
        rule("retain =", "retian ="),
        rule("retain = \"36 months\"", "retain = \"12 fortnights\""),
        rule("retain = \"36 months\"", "retain = \"months\""),
        rule("\"hmac_email\"", "\"md5\""),
        rule("action = \"pseudonymise\"", "action = \"anonymise\""),
        rule("action = \"pseudonymise\"", "action = \"delete\""),
        rule("columns = { name = \"hmac\", email = \"hmac_email\" }", ""),
        rule("id = \"contacts\"", "id = \"contacts and more\""),
        rule("description = \"Name", "descripton = \"Name"),
        rule(
            "after = \"contract_ended\"",
            "after = { lastest = [\"a\", \"b\"] }",
        ),
        format!("{RULE}round_up_to = \"month_end\"\n"),
        format!(
            "{RULE}[[rule.cascade]]\ntable = \"orders\"\non = {{ customer_id = \"id\" }}\nopen = \"x\"\n"
        ),
        format!("{RULE}[[rule.join]]\ntable = \"orders\"\n"),
        format!("{RULE}[[rules]]\nid = \"x\"\n"),
    ] {
        assert!(v.rules(&bad).is_err(), "accepted:\n{bad}");
    }
    let config = |from: &str, to: &str| {
        assert!(CONFIG.contains(from), "{from}");
        CONFIG.replace(from, to)
    };
    for bad in [
        config("timezone", "time_zone"),
        config("timezone = \"Europe/Copenhagen\"\n", ""),
        config("engine = \"postgres\"", "engine = \"oracle\""),
        config(
            "url_credential = \"shop-url\"",
            "url = \"postgresql://u:secret@db/shop\"",
        ),
        config("url_credential = \"shop-url\"", ""),
        config(
            "url_credential = \"shop-url\"",
            "url_credential = \"shop-url\"\nurl_env = \"SHOP_URL\"",
        ),
        config("key_credential", "key_credentials"),
        format!("key_file = \"k\"\n{CONFIG}"),
        format!("batch_size = 0\n{CONFIG}"),
        format!("holidays = \"SE\"\n{CONFIG}"),
        format!("financial_year_end = \"06-31\"\n{CONFIG}"),
        format!("{CONFIG}[stores.local]\nengine = \"sqlite\"\n"),
        format!("{CONFIG}tls = \"verify-ca\"\n"),
        format!("{CONFIG}tls = \"verify-full\"\n"),
        format!("{CONFIG}tls = \"require\"\nca_file = \"ca.pem\"\n"),
        format!("{CONFIG}ca_file = \"ca.pem\"\n"),
        format!(
            "{CONFIG}[stores.local]\nengine = \"sqlite\"\npath = \"x.db\"\ntls = \"require\"\n"
        ),
    ] {
        assert!(v.config(&bad).is_err(), "accepted:\n{bad}");
    }
    v.config(&format!(
        "{CONFIG}tls = \"verify-full\"\nca_file = \"/etc/glemsel/shop-ca.pem\"\n"
    ))
    .unwrap();
    v.config(&format!("{CONFIG}tls = \"require\"\n")).unwrap();
}

/// The schema's pattern for `retain` accepts what the period parser
/// accepts, spelling and all.
#[test]
fn retain_reads_as_the_parser_reads_it() {
    let v = Validator::new();
    for retain in [
        "36 months",
        "1 month",
        "0 days",
        "1 day",
        "3 working days",
        "1 Working Day",
        "2 weeks",
        "5 YEARS",
        "  7   years ",
        "10 working  days",
        "months",
        "12 fortnights",
        "3 working weeks",
        "-1 days",
        "1.5 years",
        "36months",
        "",
    ] {
        let text = RULE.replace("36 months", retain);
        let parser = retain.parse::<glemsel::period::Period>().is_ok();
        assert_eq!(v.rules(&text).is_ok(), parser, "{retain:?}");
    }
}
