//! The files we ship and document must load and mean what they say: every
//! rule set in `rules/`, the example config in `systemd/`, the TOML examples
//! in the README, and the README's table of exit codes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{assert_contains, code, text};
use glemsel::exit::Exit;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The store names a rule set refers to.
fn stores_of(rules: &Path) -> BTreeSet<String> {
    let mut stores = BTreeSet::new();
    for entry in std::fs::read_dir(rules).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            for rule in doc
                .get("rule")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                stores.insert(rule["store"].as_str().unwrap().to_string());
            }
        }
    }
    stores
}

/// A config for `rules` with each store it names, engine as given, and the
/// deployment facts the seed sets need: a schedule (deadline rules act
/// ahead of it) and whose holidays are days off (working days).
fn config_for(dir: &Path, rules: &Path, engine: &str) -> PathBuf {
    let mut config = format!(
        "timezone = \"Europe/Copenhagen\"\nfinancial_year_end = \"06-30\"\nkey_file = \"key\"\nrules = {:?}\n\
         schedule = \"0 30 2 * * *\"\nholidays = \"DK\"\n",
        rules.display().to_string()
    );
    // A rule set that declares subjects keeps its erasure ledger in its
    // (first) store.
    if let Some(store) = stores_of(rules).into_iter().next() {
        config.push_str(&format!(
            "erasure_store = \"{store}\"\nerasure_ledger = \"ledger.jsonl\"\n"
        ));
    }
    for store in stores_of(rules) {
        config.push_str(&format!(
            "[stores.{store}]\nengine = \"{engine}\"\nurl_env = \"UNUSED\"\n"
        ));
    }
    let path = dir.join("glemsel.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// What a rule file declares for each rule, read as plain TOML: id, store,
/// action, and the retention as a report says it ("36 months from the end
/// of the financial year (06-30)").
fn declared_rules(files: &[PathBuf], config_year_end: &str) -> Vec<[String; 4]> {
    let mut declared = Vec::new();
    for file in files {
        let doc: toml::Table = std::fs::read_to_string(file).unwrap().parse().unwrap();
        for rule in doc
            .get("rule")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            let field = |name: &str| rule[name].as_str().unwrap().to_string();
            let year_end = rule
                .get("financial_year_end")
                .and_then(|v| v.as_str())
                .unwrap_or(config_year_end);
            let roundings: Vec<String> = match rule.get("round_up_to") {
                None => Vec::new(),
                Some(toml::Value::String(one)) => vec![one.clone()],
                Some(list) => list
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            };
            let year = |rounding: &str| match rounding {
                "calendar_year_end" => "calendar year".to_string(),
                "financial_year_end" => format!("financial year ({year_end})"),
                other => panic!("{}: unknown rounding {other:?}", file.display()),
            };
            let mut retention = field("retain");
            // The test config counts working days with Danish holidays.
            if retention.contains("working day") {
                retention.push_str(" (Monday to Friday, less Danish public holidays)");
            }
            let mut from = roundings.iter().rev();
            if let Some(last) = from.next() {
                retention.push_str(&format!(" from the end of the {}", year(last)));
            }
            for rounding in from {
                retention.push_str(&format!(" in which the {} ends", year(rounding)));
            }
            declared.push([field("id"), field("store"), field("action"), retention]);
        }
    }
    declared
}

/// The same four facts of each loaded rule.
fn loaded_rules(policy: &glemsel::rules::Policy) -> Vec<[String; 4]> {
    policy
        .rules
        .iter()
        .map(|rule| {
            let action = match rule.action {
                glemsel::rules::Action::Delete => "delete",
                glemsel::rules::Action::Pseudonymise { .. } => "pseudonymise",
                glemsel::rules::Action::Anonymise { .. } => "anonymise",
            };
            [
                rule.id.clone(),
                rule.store.clone(),
                action.to_string(),
                rule.retention.to_string(),
            ]
        })
        .collect()
}

/// Every shipped rule set loads, and each rule means what its file says:
/// the same ids in the same order, stores, actions and retention periods.
#[test]
fn every_shipped_rule_set_loads_as_written() {
    let mut sets = Vec::new();
    for entry in std::fs::read_dir(repo().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let policy = glemsel::rules::load(&config_for(dir.path(), &path, "postgres"))
            .unwrap_or_else(|d| panic!("{}:\n{d}", path.display()));
        let declared = declared_rules(&policy.rule_files, "06-30");
        assert!(!declared.is_empty(), "{} has no rules", path.display());
        assert_eq!(loaded_rules(&policy), declared, "{}", path.display());
        sets.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    sets.sort();
    assert_eq!(
        sets,
        [
            "000-just-apps",
            "001-web-agency",
            "002-jetpak",
            "003-itj-consult",
            "004-jma",
            "demo",
            "webshop"
        ]
    );
}

#[test]
fn the_example_deployment_config_loads() {
    let text = std::fs::read_to_string(repo().join("systemd/glemsel.toml")).unwrap();
    let rules = repo().join("rules/webshop");
    let text = text.replace(
        "\"/etc/glemsel/rules\"",
        &format!("{:?}", rules.display().to_string()),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("glemsel.toml"), text).unwrap();
    let policy =
        glemsel::rules::load(&dir.path().join("glemsel.toml")).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        loaded_rules(&policy),
        [[
            "customers-after-contract",
            "shop",
            "pseudonymise",
            "36 months from the end of the financial year (06-30)"
        ]
        .map(String::from)]
    );
}

/// The README's ```toml blocks: the config one and the rule ones, together.
#[test]
fn the_readme_examples_load() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    let (configs, rules): (Vec<&str>, Vec<&str>) =
        blocks.iter().partition(|b| b.contains("[stores."));
    assert_eq!(configs.len(), 1, "one config example");
    assert!(!rules.is_empty());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for (i, block) in rules.iter().enumerate() {
        std::fs::write(dir.path().join("rules").join(format!("{i}.toml")), block).unwrap();
    }
    // Examples taken from other deployments name their own stores.
    let mut config = configs[0].to_string();
    for block in &rules {
        let file: toml::Table = block.parse().unwrap_or_else(|e| panic!("{e}\n{block}"));
        for rule in file
            .get("rule")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            let store = rule["store"].as_str().unwrap();
            if !config.contains(&format!("[stores.{store}]")) {
                config.push_str(&format!(
                    "\n[stores.{store}]\nengine = \"postgres\"\nurl_env = \"UNUSED\"\n"
                ));
            }
        }
    }
    // The erasure example's two config keys are shown on their own.
    if rules.iter().any(|b| b.contains("[[subject]]")) {
        config = format!("erasure_store = \"shop\"\nerasure_ledger = \"ledger.jsonl\"\n{config}");
    }
    std::fs::write(dir.path().join("glemsel.toml"), config).unwrap();
    let policy = glemsel::rules::load(&dir.path().join("glemsel.toml"))
        .unwrap_or_else(|d| panic!("README example:\n{d}"));
    assert_eq!(
        loaded_rules(&policy),
        declared_rules(&policy.rule_files, "06-30")
    );
    // The worked example's rule is there, as the text around it says.
    assert_contains(
        &format!("{:?}", loaded_rules(&policy)),
        "[\"customers-after-contract\", \"shop\", \"pseudonymise\", \"36 months from the end of the financial year (06-30)\"]",
    );
}

/// The rows of the README's table under `## Exit codes`, code formatting
/// removed.
fn readme_exit_codes() -> Vec<(u8, String)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("an Exit codes section");
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 2, "{line}");
            (cells[0].parse().unwrap(), cells[1].replace('`', ""))
        })
        .collect()
}

/// The README's exit codes are `Exit::TABLE`, row for row.
#[test]
fn the_readme_lists_every_exit_code() {
    let table: Vec<(u8, String)> = Exit::TABLE
        .iter()
        .map(|(code, meaning)| (*code, meaning.to_string()))
        .collect();
    assert_eq!(readme_exit_codes(), table);
}

/// `glemsel --help` ends with `Exit::TABLE`.
#[test]
fn help_lists_every_exit_code() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(code(&help), 0, "{}", text(&help));
    let mut expected = String::from("Exit codes:\n");
    for exit in Exit::ALL {
        expected.push_str(&format!("  {}  {}\n", exit.code(), exit.meaning()));
    }
    assert_contains(&text(&help), &expected);
}

/// The README's table of coverage hints is the code's list, word for word.
#[test]
fn the_readme_lists_every_coverage_hint() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("| looks like | part of the name | whole word | type |")
        .nth(1)
        .expect("the README's table of coverage hints");
    let rows: Vec<&str> = section
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(rows.len(), glemsel::coverage::HINTS.len());
    for (row, hint) in rows.iter().zip(glemsel::coverage::HINTS) {
        assert!(row.starts_with(&format!("| {} |", hint.label)), "{row}");
        let parts = hint
            .contains
            .iter()
            .chain(hint.words)
            .chain(hint.types)
            .chain(hint.unless);
        for part in parts {
            assert!(
                row.contains(&format!("`{part}`")),
                "{part} missing in {row}"
            );
        }
        let listed = row.matches('`').count() / 2;
        let known = hint.contains.len() + hint.words.len() + hint.types.len() + hint.unless.len();
        assert_eq!(listed, known, "{row}");
    }
}
