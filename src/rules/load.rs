//! Reading `glemsel.toml` and the rule files, and validating them into a
//! [`Policy`]. Every check pushes a diagnostic and carries on, so one run
//! of `glemsel check --offline` shows every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::{RawCategory, RawConfig, RawRule, RawSubject};
use super::source::Source;
use super::subjects;
use super::{Category, Diagnostic, Diagnostics, Location, Policy, Rule};
use crate::period::Period;

use super::config::{coverage_allow, settings, stores};
use super::parse::{Diagnosed, is_simple_name, resolve};
use super::validate::{RuleContext, validate_rule};

pub(super) const DEFAULT_AUDIT_TABLE: &str = "glemsel_audit";

/// Loads and validates `config_file` and the rule files it names.
pub fn load(config_file: &Path) -> Result<Policy, Diagnostics> {
    let mut diags = Diagnosed::default();
    let base = config_file.parent().unwrap_or(Path::new("")).to_path_buf();
    let source = match read_source(config_file) {
        Ok(source) => source,
        Err(diag) => return Err(Diagnostics(vec![diag])),
    };
    let mut raw: RawConfig = match toml::from_str(&source.text) {
        Ok(raw) => raw,
        Err(err) => {
            diags.push(source.span_location(err.span()), None, err.message());
            return Err(diags.finish());
        }
    };
    let rule_paths = rule_paths(&source, &raw, &base, &mut diags);
    let (mut settings, financial_year_end) = settings(&source, &raw, &base, &mut diags);
    let default_audit = raw
        .audit_table
        .as_ref()
        .map_or(DEFAULT_AUDIT_TABLE, |a| a.get_ref().as_str())
        .to_string();
    let stores = stores(
        &source,
        std::mem::take(&mut raw.stores),
        &base,
        &settings,
        &default_audit,
        &mut diags,
    );
    settings.coverage_allow = coverage_allow(&source, raw.coverage, &stores, &mut diags);
    let files = read_rule_files(rule_paths, &mut diags);
    let context = RuleContext {
        stores: &stores,
        categories: &files.categories,
        financial_year_end,
        calendar: settings.calendar.as_ref(),
        default_batch_size: settings.batch_size,
        default_batch_ms: settings.batch_ms,
        default_pause_ms: settings.pause_ms,
        timezone: settings.timezone,
        default_schedule: settings.schedule.as_ref(),
        default_lead: settings.lead,
        gaps: RefCell::new(HashMap::new()),
    };
    let rules = validate_rules(&files.rules, &context, &mut diags);
    if rules.iter().any(Rule::needs_key) && settings.key.is_none() {
        diags.push(
            Location::file_start(&source.path),
            None,
            "no key: some rules pseudonymise; set key_file (a path) or key_credential (a systemd credential)",
        );
    }
    let subjects = subjects::validate(
        &files.subjects,
        &subjects::SubjectContext {
            stores: &stores,
            categories: &files.categories,
            rules: &rules,
            settings: &settings,
        },
        &mut diags,
    );
    if !diags.0.is_empty() {
        return Err(diags.finish());
    }
    Ok(Policy {
        settings,
        stores,
        categories: files.categories,
        rules,
        subjects,
        rule_files: files.paths,
    })
}

/// What the rule files hold, gathered from all of them before any rule is
/// validated: a rule may name a category defined in another file.
#[derive(Default)]
struct RuleFiles {
    categories: BTreeMap<String, Category>,
    /// Where each category was defined, to name the first of two.
    category_at: HashMap<String, Location>,
    rules: RawRules,
    subjects: Vec<(Rc<Source>, RawSubject)>,
    /// The files that could be read.
    paths: Vec<PathBuf>,
}

fn read_rule_files(paths: Vec<PathBuf>, diags: &mut Diagnosed) -> RuleFiles {
    let mut files = RuleFiles::default();
    for path in paths {
        match read_source(&path) {
            Ok(rule_source) => {
                parse_rule_file(&Rc::new(rule_source), &mut files, diags);
                files.paths.push(path);
            }
            Err(diag) => diags.0.push(diag),
        }
    }
    files
}

/// Each rule validated; of two with one id, the second is refused.
fn validate_rules(
    raw_rules: &RawRules,
    context: &RuleContext<'_>,
    diags: &mut Diagnosed,
) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, Location> = HashMap::new();
    for (rule_source, raw) in raw_rules {
        if let Some(rule) = validate_rule(rule_source, raw, context, diags) {
            if let Some(first) = seen.get(&rule.id) {
                diags.push(
                    rule.at.rule.clone(),
                    Some(&rule.id),
                    format!("duplicate rule id; first defined at {first}"),
                );
                continue;
            }
            seen.insert(rule.id.clone(), rule.at.rule.clone());
            rules.push(rule);
        }
    }
    rules
}

pub(super) fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    std::fs::read_to_string(path)
        .map(|text| Source::new(path.to_path_buf(), text))
        .map_err(|err| {
            Diagnostic::new(
                Location::file_start(path),
                None,
                format!("cannot read: {err}"),
            )
        })
}

pub(super) fn rule_paths(
    source: &Source,
    raw: &RawConfig,
    base: &Path,
    diags: &mut Diagnosed,
) -> Vec<PathBuf> {
    let (entries, at) = match &raw.rules {
        Some(rules) => (
            rules.get_ref().items(),
            source.span_location(Some(rules.span())),
        ),
        None => (vec!["rules"], Location::file_start(&source.path)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = resolve(base, entry);
        if path.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(dir) => {
                    let mut files: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                        .collect();
                    files.sort();
                    paths.extend(files);
                }
                Err(err) => diags.push(
                    at.clone(),
                    None,
                    format!("cannot read rule directory {}: {err}", path.display()),
                ),
            }
        } else if path.is_file() {
            paths.push(path);
        } else {
            diags.push(
                at.clone(),
                None,
                format!("rule path {} does not exist", path.display()),
            );
        }
    }
    paths
}

pub(super) type RawRules = Vec<(Rc<Source>, RawRule)>;

fn parse_rule_file(source: &Rc<Source>, files: &mut RuleFiles, diags: &mut Diagnosed) {
    let root = match DeTable::parse(&source.text) {
        Ok(root) => root.into_inner(),
        Err(err) => {
            diags.push(source.span_location(err.span()), None, err.message());
            return;
        }
    };
    for (key, value) in root.iter() {
        let at = source.span_location(Some(key.span()));
        match key.get_ref().as_ref() {
            "categories" => parse_categories(source, value.get_ref(), at, files, diags),
            "rule" => parse_rules(source, value.get_ref(), at, &mut files.rules, diags),
            "subject" => subjects::parse(source, value.get_ref(), at, &mut files.subjects, diags),
            other => diags.push(
                at,
                None,
                format!("unknown key {other:?}; a rule file holds [categories.<name>], [[rule]] and [[subject]] tables"),
            ),
        }
    }
}

/// `[categories.<name>]`: each name simple and defined once across all
/// files, its `minimum` and `deadline` periods.
fn parse_categories(
    source: &Rc<Source>,
    value: &DeValue<'_>,
    at: Location,
    files: &mut RuleFiles,
    diags: &mut Diagnosed,
) {
    let Some(table) = value.as_table() else {
        diags.push(at, None, "categories must be a table: [categories.<name>]");
        return;
    };
    for (name, body) in table.iter() {
        let name_at = source.span_location(Some(name.span()));
        let name = name.get_ref().to_string();
        let raw = match RawCategory::deserialize(ValueDeserializer::from(body.clone())) {
            Ok(raw) => raw,
            Err(err) => {
                diags.push(
                    source.span_location(err.span()),
                    None,
                    format!("category {name}: {}", err.message()),
                );
                continue;
            }
        };
        if !is_simple_name(&name) {
            diags.push(
                name_at.clone(),
                None,
                format!("category name {name:?} may hold only letters, digits, '_' and '-'"),
            );
        }
        if let Some(first) = files.category_at.get(&name) {
            diags.push(
                name_at,
                None,
                format!("category {name} is defined twice; first at {first}"),
            );
            continue;
        }
        files.category_at.insert(name.clone(), name_at);
        let mut bound = |text: &Option<Spanned<String>>, what: &str| {
            text.as_ref()
                .and_then(|text| match text.get_ref().parse::<Period>() {
                    Ok(period) => Some(period),
                    Err(err) => {
                        diags.push(
                            source.span_location(Some(text.span())),
                            None,
                            format!("category {name}: {what}: {err}"),
                        );
                        None
                    }
                })
        };
        let minimum = bound(&raw.minimum, "minimum");
        let deadline = bound(&raw.deadline, "deadline");
        files.categories.insert(
            name.clone(),
            Category {
                name,
                description: raw.description,
                legal_basis: raw.legal_basis,
                minimum,
                deadline,
            },
        );
    }
}

/// `[[rule]]`: each table read into a raw rule, validated later; a table
/// that does not read is reported under its id, if it has one.
fn parse_rules(
    source: &Rc<Source>,
    value: &DeValue<'_>,
    at: Location,
    rules: &mut RawRules,
    diags: &mut Diagnosed,
) {
    let DeValue::Array(items) = value else {
        diags.push(at, None, "rules are an array of tables: write [[rule]]");
        return;
    };
    for item in items.iter() {
        let id = item
            .get_ref()
            .as_table()
            .and_then(|t| t.get("id"))
            .and_then(|id| id.get_ref().as_str())
            .map(str::to_string);
        match RawRule::deserialize(ValueDeserializer::from(item.clone())) {
            Ok(raw) => rules.push((source.clone(), raw)),
            Err(err) => diags.push(
                source.span_location(err.span().or(Some(item.span()))),
                id.as_deref(),
                err.message(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::DEFAULT_BATCH_SIZE;
    use super::*;
    use crate::period::{Holidays, RoundUp};
    use crate::rules::*;

    struct Files(tempfile::TempDir);

    impl Files {
        fn new(config: &str, rules: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("glemsel.toml"), config).unwrap();
            std::fs::create_dir(dir.path().join("rules")).unwrap();
            for (name, text) in rules {
                std::fs::write(dir.path().join("rules").join(name), text).unwrap();
            }
            Files(dir)
        }

        fn load(&self) -> Result<Policy, Diagnostics> {
            load(&self.0.path().join("glemsel.toml"))
        }

        fn errors(&self) -> Vec<String> {
            let dir = format!("{}/", self.0.path().display());
            self.load()
                .expect_err("expected errors")
                .0
                .iter()
                .map(|d| d.to_string().replace(&dir, ""))
                .collect()
        }
    }

    /// The errors of loading `config` without rules: one says `expected`.
    fn refused(config: &str, expected: &str) -> Vec<String> {
        let errors = Files::new(config, &[]).errors();
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{config}\n{errors:?}"
        );
        errors
    }

    const CONFIG: &str = r#"
timezone = "Europe/Copenhagen"
financial_year_end = "06-30"
key_file = "hmac-key"

[stores.crm]
engine = "postgres"
url_env = "CRM_DATABASE_URL"
empty_dates = ["1753-01-01"]
"#;

    const CATEGORY: &str = r#"
[categories.customer_contact]
description = "Name, address, phone, e-mail of customers"
legal_basis = "contract"
"#;

    fn rule(body: &str) -> String {
        format!("{CATEGORY}\n[[rule]]\n{body}")
    }

    const GOOD_RULE: &str = r#"id = "crm-contacts"
store = "crm"
table = "public.contacts"
category = "customer_contact"
after = "contract_ended_at"
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
action = "pseudonymise"
columns = { email = "hmac_email", name = "hmac", phone = "null", note = "redact" }
max_rows = 500000
"#;

    #[test]
    fn loads_a_valid_policy() {
        let files = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))]);
        let policy = files.load().unwrap();
        assert_eq!(policy.rules.len(), 1);
        let rule = &policy.rules[0];
        assert_eq!(rule.table, TableRef::new(Some("public"), "contacts"));
        assert_eq!(
            rule.retention.to_string(),
            "36 months from the end of the financial year (06-30)"
        );
        assert_eq!(
            rule.empty_dates,
            vec![NaiveDate::from_ymd_opt(1753, 1, 1).unwrap()]
        );
        assert_eq!(rule.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(rule.at.rule.line, 7);
        let Action::Pseudonymise { columns } = &rule.action else {
            panic!()
        };
        assert_eq!(columns.len(), 4);
        assert_eq!(policy.stores["crm"].audit_table.name, "glemsel_audit");
        assert_eq!(
            policy.settings.key.as_ref().unwrap(),
            &SecretSource::File(files.0.path().join("hmac-key"))
        );
    }

    #[test]
    fn the_fingerprint_ignores_layout_but_not_meaning() {
        let a = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))])
            .load()
            .unwrap();
        let relaid = GOOD_RULE.replace("max_rows = 500000", "# a comment\nmax_rows   =   500000");
        let b = Files::new(CONFIG, &[("crm.toml", &rule(&relaid))])
            .load()
            .unwrap();
        let changed = GOOD_RULE.replace("36 months", "37 months");
        let c = Files::new(CONFIG, &[("crm.toml", &rule(&changed))])
            .load()
            .unwrap();
        assert_eq!(a.rules[0].fingerprint, b.rules[0].fingerprint);
        assert_ne!(a.rules[0].fingerprint, c.rules[0].fingerprint);
    }

    #[test]
    fn collects_every_error_with_location_and_rule() {
        let second = r#"
[[rule]]
id = "bad-two"
store = "nowhere"
table = "a.b.c"
category = "customer_contact"
after = "created"
retain = "12 fortnights"
action = "delete"
columns = { x = "hmac" }
"#;
        let text = rule(&GOOD_RULE.replace("\"hmac_email\"", "\"md5\"")) + second;
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(
            errors,
            vec![
                "rules/crm.toml:17:21: rule crm-contacts: unknown column action \"md5\"; use hmac, hmac_email, null, redact, year, month, ip_prefix or prefix:N",
                "rules/crm.toml:22:9: rule bad-two: unknown store \"nowhere\"; glemsel.toml defines: crm",
                "rules/crm.toml:23:9: rule bad-two: table \"a.b.c\" has more than two parts; write schema.table, quoting a part that holds a dot",
                "rules/crm.toml:26:10: rule bad-two: unknown unit \"fortnights\" in period \"12 fortnights\"; use days, working days, weeks, months or years",
                "rules/crm.toml:28:11: rule bad-two: columns apply only to action = \"pseudonymise\" or \"anonymise\"; a delete removes whole rows",
            ]
        );
    }

    /// Rule ids go into audit rows, metrics labels and file names: only
    /// letters, digits, '.', '_' and '-'.
    #[test]
    fn rule_ids() {
        for id in ["crm.contacts_2024-v2", "A9"] {
            let text = rule(&GOOD_RULE.replace("crm-contacts", id));
            let policy = Files::new(CONFIG, &[("crm.toml", &text)]).load().unwrap();
            assert_eq!(policy.rules[0].id, id);
        }
        for id in ["crm contacts", "crm/contacts", "crm;contacts", ""] {
            let text = rule(&GOOD_RULE.replace("crm-contacts", id));
            let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
            assert_eq!(
                errors,
                vec![format!(
                    "rules/crm.toml:7:6: rule {id}: rule id may hold only letters, digits, '.', '_' and '-'"
                )]
            );
        }
    }

    /// Cascades and dropped partitions remove rows: delete rules only.
    /// Partitions are dropped by default for a delete rule, never otherwise.
    #[test]
    fn cascades_and_partition_drops_belong_to_delete_rules() {
        let delete = GOOD_RULE
            .replace("action = \"pseudonymise\"", "action = \"delete\"")
            .replace(
                "columns = { email = \"hmac_email\", name = \"hmac\", phone = \"null\", note = \"redact\" }\n",
                "",
            );
        let cascade = "[[rule.cascade]]\ntable = \"public.notes\"\non = { contact_id = \"id\" }\n";
        let load = |body: &str| {
            Files::new(CONFIG, &[("crm.toml", &rule(body))])
                .load()
                .map(|policy| policy.rules.into_iter().next().unwrap())
        };
        let deleting = load(&delete).unwrap();
        assert!(deleting.drop_partitions);
        let with_cascade = load(&format!("{delete}{cascade}")).unwrap();
        assert_eq!(with_cascade.cascades.len(), 1);
        assert!(
            !load(&GOOD_RULE.replace("max_rows", "partitions = \"rows\"\nmax_rows"))
                .unwrap()
                .drop_partitions
        );
        assert!(!load(GOOD_RULE).unwrap().drop_partitions);
        assert!(
            !load(&delete.replace("max_rows", "partitions = \"rows\"\nmax_rows"))
                .unwrap()
                .drop_partitions
        );
        assert!(
            load(&delete.replace("max_rows", "partitions = \"drop\"\nmax_rows"))
                .unwrap()
                .drop_partitions
        );

        let errors = Files::new(
            CONFIG,
            &[("crm.toml", &rule(&format!("{GOOD_RULE}{cascade}")))],
        )
        .errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("[[rule.cascade]] applies to action = \"delete\""),
            "{errors:?}"
        );
        for (choice, expected) in [
            (
                "drop",
                "partitions = \"drop\" applies to action = \"delete\"",
            ),
            (
                "whole",
                "partitions must be \"drop\" or \"rows\", not \"whole\"",
            ),
        ] {
            let text = rule(
                &GOOD_RULE.replace("max_rows", &format!("partitions = \"{choice}\"\nmax_rows")),
            );
            let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(expected), "{errors:?}");
        }
    }

    /// `key`: the columns batches walk, each named once.
    #[test]
    fn walk_keys() {
        let with_key = |key: &str| {
            Files::new(
                CONFIG,
                &[(
                    "crm.toml",
                    &rule(&GOOD_RULE.replace("max_rows", &format!("key = {key}\nmax_rows"))),
                )],
            )
        };
        let policy = with_key("[\"tenant\", \"id\"]").load().unwrap();
        assert_eq!(
            policy.rules[0].key,
            Some(vec!["tenant".to_string(), "id".to_string()])
        );
        let policy = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].key, None);
        for (key, expected) in [
            ("[]", "key is empty; name the columns of a unique key"),
            ("[\"id\", \"id\"]", "key names \"id\" twice"),
            ("[\" id\"]", "key: name \" id\" starts or ends with a space"),
        ] {
            let errors = with_key(key).errors();
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert!(errors[0].contains(expected), "{key}: {errors:?}");
        }
    }

    /// Each related table's errors name its kind and table; a part of
    /// one kind given to another is refused.
    #[test]
    fn related_tables_name_their_kind() {
        let hold = "[[rule.hold_table]]\ntable = \"public.disputes\"\non = { contact_id = \"id\" }\nparent = \"public.contacts\"\n";
        let join = "[[rule.join]]\ntable = \"public.orders\"\non = { contact_id = \"id\" }\nwhere = \"open\"\n";
        let text = rule(&format!("{GOOD_RULE}{hold}{join}"));
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:20:9: rule crm-contacts: [[rule.hold_table]] public.disputes: parent applies only to [[rule.cascade]]",
                "rules/crm.toml:24:9: rule crm-contacts: [[rule.join]] public.orders: where applies only to [[rule.hold_table]]",
            ]
        );
    }

    /// Joins, hold tables and cascades as a rule keeps them, `after` read
    /// through a join, and each related table's own errors.
    #[test]
    fn related_tables_load() {
        let delete = GOOD_RULE
            .replace("after = \"contract_ended_at\"", "after = { latest = [\"contract_ended_at\", \"last.ordered_at\"] }")
            .replace("action = \"pseudonymise\"", "action = \"delete\"")
            .replace(
                "columns = { email = \"hmac_email\", name = \"hmac\", phone = \"null\", note = \"redact\" }\n",
                "",
            );
        let related = r#"
[[rule.join]]
table = "shop.orders"
name = "last"
on = { contact_id = "id" }
open = "status = 'open'"

[[rule.hold_table]]
table = "disputes"
on = { contact_id = "id", tenant = "tenant" }
where = "resolved IS NULL"

[[rule.cascade]]
table = "notes"
on = { contact_id = "id" }

[[rule.cascade]]
table = "note_files"
on = { note_id = "id" }
parent = "notes"
"#;
        let load = |body: &str| Files::new(CONFIG, &[("crm.toml", &rule(body))]);
        let policy = load(&format!("{delete}{related}")).load().unwrap();
        let rule = &policy.rules[0];
        let on = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(t, o)| (t.to_string(), o.to_string()))
                .collect()
        };
        assert_eq!(rule.joins.len(), 1);
        assert_eq!(rule.joins[0].name, "last");
        assert_eq!(
            rule.joins[0].related.table,
            TableRef::new(Some("shop"), "orders")
        );
        assert_eq!(rule.joins[0].related.on, on(&[("contact_id", "id")]));
        assert_eq!(rule.joins[0].open.as_deref(), Some("status = 'open'"));
        assert_eq!(rule.hold_tables.len(), 1);
        assert_eq!(rule.hold_tables[0].name, "disputes");
        assert_eq!(
            rule.hold_tables[0].related.on,
            on(&[("contact_id", "id"), ("tenant", "tenant")])
        );
        assert_eq!(
            rule.hold_tables[0].filter.as_deref(),
            Some("resolved IS NULL")
        );
        let cascades: Vec<(String, Option<String>)> = rule
            .cascades
            .iter()
            .map(|c| {
                (
                    c.related.table.to_string(),
                    c.parent.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        assert_eq!(
            cascades,
            [
                ("notes".to_string(), None),
                ("note_files".to_string(), Some("notes".to_string()))
            ]
        );
        // `last.ordered_at` is the join's column; `contract_ended_at` ours.
        assert_eq!(
            rule.event.sources,
            [
                EventRef {
                    join: None,
                    column: "contract_ended_at".into()
                },
                EventRef {
                    join: Some("last".into()),
                    column: "ordered_at".into()
                },
            ]
        );
        // Without the join, `last.ordered_at` is a column of our own
        // table with a dot in its name.
        let policy = load(&delete).load().unwrap();
        assert_eq!(
            policy.rules[0].event.sources[1],
            EventRef {
                join: None,
                column: "last.ordered_at".into()
            }
        );

        for (broken, expected) in [
            ("on = { contact_id = \"id\" }\nopen", "on = {}\nopen"),
            ("on = { note_id = \"id\" }", "on = { note_id = \" id\" }"),
            ("parent = \"notes\"", "parent = \"orders\""),
            ("table = \"note_files\"", "table = \"notes\""),
            (
                "where = \"resolved IS NULL\"",
                "where = \"resolved; DROP TABLE x\"",
            ),
        ] {
            assert!(related.contains(broken), "{broken}");
            let errors = load(&format!("{delete}{}", related.replace(broken, expected))).errors();
            assert_eq!(errors.len(), 1, "{expected}: {errors:?}");
            let message = match expected {
                "on = {}\nopen" => {
                    "[[rule.join]] shop.orders: on is empty; write on = { their_column = \"our_column\" }"
                }
                "on = { note_id = \" id\" }" => {
                    "[[rule.cascade]] note_files: on: name \" id\" starts or ends with a space"
                }
                "parent = \"orders\"" => {
                    "[[rule.cascade]] note_files: parent \"orders\" must be a cascade table declared before this one"
                }
                "table = \"notes\"" => {
                    "[[rule.cascade]] notes: \"notes\" is declared twice; give one a different name"
                }
                _ => "[[rule.hold_table]] disputes: where: ",
            };
            assert!(errors[0].contains(message), "{expected}: {errors:?}");
        }
    }

    /// Pseudonymise and anonymise name their columns; `{}` names none.
    #[test]
    fn columns_name_at_least_one() {
        let text = rule(&GOOD_RULE.replace(
            "columns = { email = \"hmac_email\", name = \"hmac\", phone = \"null\", note = \"redact\" }",
            "columns = {}",
        ));
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:17:11: rule crm-contacts: columns is empty; name at least one column to pseudonymise"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_errors_and_other_rules_still_checked() {
        let text = rule(&GOOD_RULE.replace("max_rows", "max_row"))
            + "\n[[rule]]\nid = \"second\"\nstore = \"crm\"\n";
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("rules/crm.toml:18:1: rule crm-contacts: unknown field `max_row`"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("rule second: missing field"),
            "{errors:?}"
        );
    }

    /// Each bounded number of the config and of a rule: its default when
    /// unset, and the range named when a value is out of it.
    #[test]
    fn bounded_numbers_and_their_defaults() {
        let files = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))]);
        let policy = files.load().unwrap();
        let (settings, first) = (&policy.settings, &policy.rules[0]);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        assert_eq!(
            [
                settings.batch_size,
                settings.batch_ms,
                ms(settings.lock_timeout),
                ms(settings.statement_timeout),
                settings.copies_max_log_days,
                ms(settings.max_clock_skew),
                settings.pause_ms,
                ms(settings.max_pause),
            ],
            [10_000, 100, 2_000, 900_000, 30, 300_000, 0, 1_800_000]
        );
        assert_eq!(
            [first.batch_size, first.batch_ms, first.pause_ms],
            [10_000, 100, 0]
        );

        let given = "batch_size = 7\nbatch_ms = 8\npause_ms = 9\n";
        let config = CONFIG.replace("key_file", &format!("{given}key_file"));
        let files = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]);
        let inherited = &files.load().unwrap().rules[0];
        assert_eq!(
            [inherited.batch_size, inherited.batch_ms, inherited.pause_ms],
            [7, 8, 9]
        );
        let own = format!("{GOOD_RULE}batch_size = 3\nbatch_ms = 4\npause_ms = 5\n");
        let files = Files::new(&config, &[("crm.toml", &rule(&own))]);
        let own_pace = &files.load().unwrap().rules[0];
        assert_eq!(
            [own_pace.batch_size, own_pace.batch_ms, own_pace.pause_ms],
            [3, 4, 5]
        );

        let out_of_range = [
            ("batch_size", "0", "1 and 1000000"),
            ("batch_ms", "-1", "0 and 60000"),
            ("lock_timeout_ms", "0", "1 and 600000"),
            ("statement_timeout_ms", "999", "1000 and 86400000"),
            ("copies_max_log_days", "36501", "0 and 36500"),
            ("max_clock_skew_ms", "86400001", "0 and 86400000"),
            ("pause_ms", "-1", "0 and 600000"),
            ("max_pause_ms", "999", "1000 and 86400000"),
        ];
        let given: String = out_of_range
            .iter()
            .map(|(key, value, _)| format!("{key} = {value}\n"))
            .collect();
        let config = CONFIG.replace("key_file", &format!("{given}key_file"));
        let joined = Files::new(&config, &[]).errors().join("\n");
        for (key, _, range) in out_of_range {
            assert!(
                joined.contains(&format!("{key} must be between {range}")),
                "{joined}"
            );
        }
        let own = format!("{GOOD_RULE}batch_size = 0\nbatch_ms = 60001\npause_ms = 600001\n");
        let joined = Files::new(CONFIG, &[("crm.toml", &rule(&own))])
            .errors()
            .join("\n");
        for message in [
            "batch_size must be between 1 and 1000000",
            "batch_ms must be between 0 and 60000",
            "pause_ms must be between 0 and 600000",
        ] {
            assert!(joined.contains(message), "{joined}");
        }
    }

    #[test]
    fn config_errors() {
        let config = r#"
financial_year_end = "06-15"
batch_size = 0

[stores.crm]
engine = "oracle"
url = "postgres://user:secret@db/crm"
"#;
        let errors = Files::new(config, &[]).errors();
        let joined = errors.join("\n");
        assert!(joined.contains("timezone is missing"), "{joined}");
        assert!(
            joined.contains("glemsel.toml:2:22: financial_year_end \"06-15\" must be"),
            "{joined}"
        );
        assert!(
            joined.contains("glemsel.toml:3:14: batch_size must be between 1 and 1000000"),
            "{joined}"
        );
        assert!(joined.contains("unknown engine \"oracle\""), "{joined}");
        assert!(
            joined.contains("an inline url would put a password in the config"),
            "{joined}"
        );
        assert!(
            !joined.contains("secret"),
            "the password must not be echoed: {joined}"
        );
    }

    /// A replica is reached as its store is, at its own URL, under a name
    /// that says whose it is.
    #[test]
    fn replicas_are_reached_as_their_store_is() {
        let config = CONFIG.replace(
            "url_env = \"CRM_DATABASE_URL\"",
            "url_env = \"CRM_DATABASE_URL\"\nmax_lag = \"5s\"",
        ) + "\n[[stores.crm.replicas]]\nurl_env = \"CRM_REPLICA_URL\"\n\
             \n[[stores.crm.replicas]]\nurl_file = \"replica-url\"\n";
        let policy = Files::new(&config, &[]).load().unwrap();
        let store = &policy.stores["crm"];
        let names: Vec<&str> = store.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["crm replica 1", "crm replica 2"]);
        let replica = &store.replicas[0];
        assert_eq!(replica.engine, store.engine);
        assert!(
            matches!(&replica.connection, Connection::UrlEnv(name) if name == "CRM_REPLICA_URL"),
            "{:?}",
            replica.connection
        );
        assert_eq!(replica.audit_table.name, store.audit_table.name);
        assert!(
            matches!(&store.replicas[1].connection,
                Connection::Url(SecretSource::File(path)) if path.ends_with("replica-url")),
            "{:?}",
            store.replicas[1].connection
        );
        assert_eq!(store.max_lag, Some(std::time::Duration::from_secs(5)));
    }

    /// Replicas, max_lag and max_load only together and on a server.
    #[test]
    fn load_limits_refused_where_they_mean_nothing() {
        let sqlite = |extra: &str| {
            format!("[stores.crm]\nengine = \"sqlite\"\npath = \"crm.db\"\n{extra}\n")
        };
        let server = |extra: &str| {
            CONFIG.replace(
                "url_env = \"CRM_DATABASE_URL\"",
                &format!("url_env = \"CRM_DATABASE_URL\"\n{extra}"),
            )
        };
        let replica = "\n[[stores.crm.replicas]]\nurl_env = \"CRM_REPLICA_URL\"";
        for (config, expected) in [
            (
                sqlite("max_lag = \"5s\""),
                "an sqlite store has no replicas to watch",
            ),
            (sqlite(replica), "an sqlite store has no replicas to watch"),
            (
                sqlite("max_load = 10"),
                "an sqlite store has no server whose load max_load could limit",
            ),
            (server("") + replica, "replicas are watched for max_lag"),
            (
                server("max_lag = \"5s\""),
                "max_lag needs replicas to watch",
            ),
            (
                server("max_lag = \"5s\"")
                    + "\n[[stores.crm.replicas]]\nurl_env = \"postgres://u:p@replica/db\"",
                "a replica needs exactly one of url_env (an environment variable's name)",
            ),
            (
                server("max_lag = \"5s\"")
                    + "\n[[stores.crm.replicas]]\nurl_env = \"CRM_REPLICA_URL\"\nurl_file = \"replica-url\"",
                "a replica needs exactly one of url_env",
            ),
        ] {
            refused(&config, expected);
        }
    }

    /// A URL written where the variable's name belongs is refused without
    /// being repeated: it carries a password.
    #[test]
    fn a_url_in_url_env_is_not_repeated() {
        let config = CONFIG.replace(
            "url_env = \"CRM_DATABASE_URL\"",
            "url_env = \"postgres://crm:s3cret-pw@db.internal/crm\"",
        );
        let errors = refused(&config, "url_env takes an environment variable's name");
        assert!(
            errors.iter().all(|e| !e.contains("s3cret-pw")),
            "{errors:?}"
        );
        for name in ["", "9CRM_URL", "CRM-URL"] {
            let config = CONFIG.replace("CRM_DATABASE_URL", name);
            refused(&config, "url_env takes an environment variable's name");
        }
    }

    /// A credential is a file's name in $CREDENTIALS_DIRECTORY; anything
    /// else is refused without being repeated.
    #[test]
    fn credential_names() {
        let with = |name: &str| {
            CONFIG.replace(
                "url_env = \"CRM_DATABASE_URL\"",
                &format!("url_credential = \"{name}\""),
            )
        };
        let policy = Files::new(&with("crm.url"), &[]).load().unwrap();
        assert!(
            matches!(&policy.stores["crm"].connection,
                Connection::Url(SecretSource::Credential(name)) if name == "crm.url"),
            "{:?}",
            policy.stores["crm"].connection
        );
        for bad in ["../crm-url", "mysql://crm:s3cret-pw@db/crm"] {
            let errors = refused(
                &with(bad),
                "a credential is a file name in $CREDENTIALS_DIRECTORY",
            );
            assert!(errors.iter().all(|e| !e.contains(bad)), "{errors:?}");
        }
    }

    /// A financial year ends on the last day of a month (02-29 too).
    #[test]
    fn financial_year_ends() {
        for (end, valid) in [
            ("06-30", true),
            ("12-31", true),
            ("01-31", true),
            ("02-28", true),
            ("02-29", true),
            ("06-29", false),
            ("06-31", false),
            ("04-29", false),
            ("02-30", false),
            ("13-31", false),
            ("0630", false),
        ] {
            let config = CONFIG.replace("\"06-30\"", &format!("\"{end}\""));
            let files = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]);
            match valid {
                true => {
                    let policy = files.load().unwrap();
                    let said = policy.rules[0].retention.to_string();
                    assert!(said.contains(&format!("({}-", &end[..2])), "{end}: {said}");
                }
                false => {
                    refused(&config, "must be \"MM-DD\" and the last day of a month");
                }
            }
        }
    }

    /// A store's operating window is read.
    #[test]
    fn a_store_window_is_read() {
        let config = CONFIG.replace(
            "url_env = \"CRM_DATABASE_URL\"",
            "url_env = \"CRM_DATABASE_URL\"\nwindow = \"22:00-04:00\"",
        );
        let policy = Files::new(&config, &[]).load().unwrap();
        assert!(policy.stores["crm"].window.is_some());
        assert!(
            Files::new(CONFIG, &[]).load().unwrap().stores["crm"]
                .window
                .is_none()
        );
    }

    /// Only the rule directory's .toml files are rule files.
    #[test]
    fn other_files_beside_the_rules_are_not_read() {
        let files = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))]);
        let rules = files.0.path().join("rules");
        std::fs::write(rules.join("README.md"), "not [ toml").unwrap();
        std::fs::create_dir(rules.join("old.toml")).unwrap();
        assert_eq!(files.load().unwrap().rules.len(), 1);
    }

    /// Metrics are served on loopback only.
    #[test]
    fn metrics_listen_on_loopback_only() {
        let with = |listen: &str| format!("metrics_listen = \"{listen}\"\n{CONFIG}");
        for listen in ["127.0.0.1:9187", "[::1]:9187"] {
            let policy = Files::new(&with(listen), &[]).load().unwrap();
            assert_eq!(
                policy.settings.metrics_listen,
                Some(listen.parse().unwrap()),
                "{listen}"
            );
        }
        for listen in ["0.0.0.0:9187", "192.0.2.7:9187", "127.0.0.1"] {
            refused(&with(listen), "must be a loopback address with a port");
        }
    }

    /// `[[coverage.allow]]`: a known store, a reason, a table.
    #[test]
    fn coverage_allow_entries() {
        let entry = |store: &str, reason: &str| {
            format!(
                "{CONFIG}\n[[coverage.allow]]\nstore = \"{store}\"\ntable = \"public.orders\"\ncolumns = [\"delivery_note\"]\nreason = \"{reason}\"\n"
            )
        };
        let policy = Files::new(&entry("crm", "free text; reviewed"), &[])
            .load()
            .unwrap();
        let allowed = &policy.settings.coverage_allow;
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].store.as_deref(), Some("crm"));
        assert_eq!(allowed[0].table, TableRef::new(Some("public"), "orders"));
        assert_eq!(allowed[0].columns, ["delivery_note"]);
        refused(
            &entry("shop", "reviewed"),
            "coverage.allow: no store named \"shop\"",
        );
        refused(&entry("crm", "  "), "say why the columns need no rule");
    }

    /// A server's URL from exactly one place: a file or a credential alone
    /// is enough, and a file beside an environment variable is refused.
    #[test]
    fn a_store_url_from_one_place() {
        for (place, expected) in [
            ("url_file = \"crm-url\"", "crm-url"),
            ("url_credential = \"crm-url\"", "crm-url"),
        ] {
            let config = CONFIG.replace("url_env = \"CRM_DATABASE_URL\"", place);
            let policy = Files::new(&config, &[]).load().unwrap();
            let Connection::Url(source) = &policy.stores["crm"].connection else {
                panic!("{place}: {:?}", policy.stores["crm"].connection);
            };
            let named = match source {
                SecretSource::File(path) => path.file_name().unwrap().to_str().unwrap().to_string(),
                SecretSource::Credential(name) => name.clone(),
            };
            assert_eq!(named, expected, "{place}");
        }
        let both = CONFIG.replace(
            "url_env = \"CRM_DATABASE_URL\"",
            "url_env = \"CRM_DATABASE_URL\"\nurl_file = \"crm-url\"",
        );
        refused(
            &both,
            "needs exactly one of url_env, url_file or url_credential",
        );
    }

    #[test]
    fn tls_settings() {
        let with = |store: &str| {
            CONFIG.replace(
                "url_env = \"CRM_DATABASE_URL\"",
                &format!("url_env = \"CRM_DATABASE_URL\"\n{store}"),
            )
        };
        let files = Files::new(
            &with("tls = \"verify-full\"\nca_file = \"certs/ca.pem\""),
            &[],
        );
        let policy = files.load().unwrap();
        assert_eq!(
            policy.stores["crm"].tls,
            Tls::VerifyFull {
                ca_file: files.0.path().join("certs/ca.pem")
            }
        );
        let plain = Files::new(CONFIG, &[]).load().unwrap();
        assert_eq!(plain.stores["crm"].tls, Tls::Disable, "today's default");
        for (store, expected) in [
            (
                "tls = \"verify-full\"",
                "glemsel.toml:9:7: store crm: tls = \"verify-full\" needs ca_file",
            ),
            (
                "tls = \"require\"\nca_file = \"ca.pem\"",
                "glemsel.toml:10:11: store crm: ca_file is used only with tls = \"verify-full\"",
            ),
            (
                "tls = \"verify-ca\"",
                "glemsel.toml:9:7: store crm: tls must be \"disable\", \"require\" or \"verify-full\", not \"verify-ca\"",
            ),
        ] {
            let errors = Files::new(&with(store), &[]).errors();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(expected), "{errors:?}");
        }
        let sqlite = "[stores.local]\nengine = \"sqlite\"\npath = \"x.db\"\ntls = \"require\"\n";
        let errors = Files::new(&format!("{CONFIG}{sqlite}"), &[]).errors();
        assert!(
            errors[0].ends_with(
                "store local: an sqlite store is a local file; it takes no tls or ca_file"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_ids_and_missing_key_file() {
        let config = CONFIG.replace("key_file = \"hmac-key\"\n", "");
        let text = rule(GOOD_RULE) + "\n[[rule]]\n" + GOOD_RULE;
        let errors = Files::new(&config, &[("crm.toml", &text)]).errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("no key: some rules pseudonymise")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("rules/crm.toml:21:6: rule crm-contacts: duplicate rule id; first defined at rules/crm.toml:7:6")), "{errors:?}");
    }

    #[test]
    fn financial_rounding_needs_a_year_end() {
        let config = CONFIG.replace("financial_year_end = \"06-30\"\n", "");
        let errors = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("needs financial_year_end"), "{errors:?}");
        let with_rule_end =
            GOOD_RULE.replace("round_up_to", "financial_year_end = \"12-31\"\nround_up_to");
        let policy = Files::new(&config, &[("crm.toml", &rule(&with_rule_end))])
            .load()
            .unwrap();
        assert_eq!(
            policy.rules[0].retention.round_up,
            vec![RoundUp::FinancialYearEnd { end_month: 12 }]
        );
    }

    /// "The end of the calendar year in which the financial year ends":
    /// a list, applied in order, with the deployment's year end.
    #[test]
    fn chained_rounding_with_the_deployments_year_end() {
        let chained = GOOD_RULE.replace(
            "round_up_to = \"financial_year_end\"",
            "round_up_to = [\"financial_year_end\", \"calendar_year_end\"]",
        );
        let at = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .unwrap()
                .and_time(chrono::NaiveTime::MIN)
        };
        for (year_end, due) in [("06-30", "2028-01-01"), ("12-31", "2027-01-01")] {
            let config = CONFIG.replace("06-30", year_end);
            let policy = Files::new(&config, &[("crm.toml", &rule(&chained))])
                .load()
                .unwrap();
            let retention = &policy.rules[0].retention;
            assert_eq!(retention.round_up.len(), 2);
            assert_eq!(retention.round_up[1], RoundUp::CalendarYearEnd);
            let seven_years = Retention {
                period: "7 years".parse().unwrap(),
                ..retention.clone()
            };
            assert_eq!(seven_years.due_at(at("2019-08-10")), at(due), "{year_end}");
        }
    }

    #[test]
    fn holidays_and_closing_days() {
        let working = GOOD_RULE.replace("36 months", "3 working days");
        let config = CONFIG.replace(
            "key_file",
            "holidays = \"DK\"\nclosing_days = [\"2026-12-31\", \"2026-12-24\"]\nkey_file",
        );
        let policy = Files::new(&config, &[("crm.toml", &rule(&working))])
            .load()
            .unwrap();
        let calendar = &policy.rules[0].retention.calendar;
        assert_eq!(calendar.holidays, Holidays::Denmark);
        assert_eq!(
            calendar.closing_days,
            [
                NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
                NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
            ]
        );
        assert_eq!(policy.settings.calendar.as_ref(), Some(calendar));
        // "none": weekends only, stated.
        let none = CONFIG.replace("key_file", "holidays = \"none\"\nkey_file");
        let policy = Files::new(&none, &[("crm.toml", &rule(&working))])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].retention.calendar, Calendar::default());
    }

    #[test]
    fn holiday_errors() {
        let working = GOOD_RULE.replace("36 months", "3 working days");
        // A rule counting working days needs the config to say which days.
        let errors = Files::new(CONFIG, &[("crm.toml", &rule(&working))]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:12:10: rule crm-contacts: retain counts working days: set holidays = \"DK\" (Danish public holidays are days off) or holidays = \"none\" in glemsel.toml"
            ]
        );
        // Rules in months need nothing.
        assert!(
            Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))])
                .load()
                .is_ok()
        );
        let config = CONFIG.replace(
            "key_file",
            "holidays = \"SE\"\nclosing_days = [\"2026-12-24\", \"24-12-2026\"]\nkey_file",
        );
        let errors = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]).errors();
        assert_eq!(
            errors,
            [
                "glemsel.toml:4:12: holidays \"SE\" is not known; use \"DK\" (Danish public holidays) or \"none\" (only weekends and closing_days)",
                "glemsel.toml:5:31: \"24-12-2026\" is not a date; write \"YYYY-MM-DD\"",
            ]
        );
        let config = CONFIG.replace("key_file", "closing_days = [\"2026-12-24\"]\nkey_file");
        let errors = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("glemsel.toml:1:1: closing_days needs holidays"),
            "{errors:?}"
        );
    }

    #[test]
    fn anonymise_refuses_keyed_tokens() {
        let anonymise = GOOD_RULE
            .replace("action = \"pseudonymise\"", "action = \"anonymise\"")
            .replace(
                "columns = { email = \"hmac_email\", name = \"hmac\", phone = \"null\", note = \"redact\" }",
                "columns = { email = \"hmac_email\", name = \"redact\", phone = \"null\", born = \"year\", ip = \"ip_prefix\", zip = \"prefix:2\" }",
            );
        let errors = Files::new(CONFIG, &[("crm.toml", &rule(&anonymise))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("rules/crm.toml:17:21: rule crm-contacts: column \"email\": hmac_email writes a keyed token, which whoever holds the key can recompute from a guessed value: pseudonymised data"),
            "{errors:?}"
        );
        let fixed = anonymise.replace("email = \"hmac_email\"", "email = \"null\"");
        let policy = Files::new(CONFIG, &[("crm.toml", &rule(&fixed))])
            .load()
            .unwrap();
        let loaded = &policy.rules[0];
        assert_eq!(loaded.action.as_str(), "anonymise");
        assert!(!loaded.needs_key());
        assert_eq!(
            loaded
                .action
                .columns()
                .unwrap()
                .iter()
                .map(|(c, a)| format!("{c}={a}"))
                .collect::<Vec<_>>(),
            [
                "born=year",
                "email=null",
                "ip=ip_prefix",
                "name=redact",
                "phone=null",
                "zip=prefix:2"
            ]
        );
        // Anonymising rules alone need no key.
        let no_key = CONFIG.replace("key_file = \"hmac-key\"\n", "");
        assert!(
            Files::new(&no_key, &[("crm.toml", &rule(&fixed))])
                .load()
                .is_ok()
        );
        let bad = fixed.replace("\"prefix:2\"", "\"prefix:0\"");
        let errors = Files::new(CONFIG, &[("crm.toml", &rule(&bad))]).errors();
        assert!(
            errors[0].contains("prefix:N keeps the first N characters"),
            "{errors:?}"
        );
    }

    const DAILY: &str = "schedule = \"0 30 2 * * *\"\n";

    /// The test config with more top-level keys.
    fn config_with(extra: &str) -> String {
        CONFIG.replace("key_file", &format!("{extra}key_file"))
    }

    fn deadline(period: &str, extra: &str) -> String {
        rule(&GOOD_RULE.replace(
            "retain = \"36 months\"",
            &format!("retain = \"{period}\"\nkind = \"deadline\"\n{extra}"),
        ))
    }

    #[test]
    fn a_minimum_never_goes_early() {
        let policy = Files::new(&config_with(DAILY), &[("crm.toml", &rule(GOOD_RULE))])
            .load()
            .unwrap();
        let timing = &policy.rules[0].timing;
        assert_eq!(timing.kind, PeriodKind::Minimum);
        assert_eq!(timing.lead, TimeDelta::zero());
        assert_eq!(timing.max_duration, TimeDelta::hours(1));
        // A lead on a minimum is a mistake, said so.
        let text = rule(&GOOD_RULE.replace("retain", "lead = \"1 day\"\nretain"));
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:12:8: rule crm-contacts: lead applies to kind = \"deadline\": a minimum never goes early"
            ]
        );
    }

    /// The config's schedule: daily at 02:30 in Copenhagen, 25 hours apart
    /// at most (the autumn change), plus the default hour for the run.
    #[test]
    fn a_deadline_acts_a_schedule_gap_ahead() {
        let config = config_with(DAILY);
        let policy = Files::new(&config, &[("crm.toml", &deadline("30 days", ""))])
            .load()
            .unwrap();
        let timing = &policy.rules[0].timing;
        assert_eq!(timing.kind, PeriodKind::Deadline);
        assert_eq!(timing.lead, TimeDelta::hours(26));
        assert_eq!(
            timing.lead_reason.as_deref(),
            Some(
                "schedule \"0 30 2 * * *\" leaves up to 25 hours between runs, + max_duration 1 hour"
            )
        );
        // The rule's own schedule and max_duration count instead.
        let own = deadline(
            "30 days",
            "schedule = \"0 0 */6 * * *\"\nmax_duration = \"30 minutes\"\n",
        );
        let policy = Files::new(&config, &[("crm.toml", &own)]).load().unwrap();
        assert_eq!(
            policy.rules[0].timing.lead,
            TimeDelta::hours(7) + TimeDelta::minutes(30)
        );
        // Exactly the lead the schedule needs is enough.
        let exact = deadline("30 days", "lead = \"26 hours\"\n");
        let policy = Files::new(&config, &[("crm.toml", &exact)]).load().unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::hours(26));
        // A longer lead than the schedule needs is allowed; a shorter one is not.
        let longer = deadline("30 days", "lead = \"2 days\"\n");
        let policy = Files::new(&config, &[("crm.toml", &longer)])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(2));
        let shorter = deadline("30 days", "lead = \"1 day\"\n");
        let errors = Files::new(&config, &[("crm.toml", &shorter)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("lead 24 hours is shorter than the schedule needs: schedule \"0 30 2 * * *\" leaves up to 25 hours between runs, + max_duration 1 hour, 26 hours in all"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_deadline_without_a_schedule_needs_a_lead() {
        let errors = Files::new(CONFIG, &[("crm.toml", &deadline("30 days", ""))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("rules/crm.toml:13:8: rule crm-contacts: kind = \"deadline\" needs to know how often glemsel runs"),
            "{errors:?}"
        );
        // A timer's lead, in the rule or in glemsel.toml.
        let policy = Files::new(
            CONFIG,
            &[("crm.toml", &deadline("30 days", "lead = \"1 day\"\n"))],
        )
        .load()
        .unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(1));
        let config = config_with("lead = \"2 days\"\n");
        let policy = Files::new(&config, &[("crm.toml", &deadline("30 days", ""))])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(2));
        assert_eq!(
            policy.rules[0].timing.lead_reason.as_deref(),
            Some("lead = \"2 days\" in glemsel.toml")
        );
    }

    /// A lead is more than nothing and at most a year (366 days: a leap
    /// year's deadline).
    #[test]
    fn a_lead_is_more_than_nothing_and_at_most_a_year() {
        let with_lead = |lead: &str| {
            Files::new(
                CONFIG,
                &[(
                    "crm.toml",
                    &deadline("2 years", &format!("lead = \"{lead}\"\n")),
                )],
            )
        };
        let policy = with_lead("366 days").load().unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(366));
        let policy = with_lead("1 minute").load().unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::minutes(1));
        for refused in ["0 minutes", "367 days"] {
            let errors = with_lead(refused).errors();
            assert_eq!(errors.len(), 1, "{refused}: {errors:?}");
            assert!(
                errors[0].ends_with("lead must be more than nothing and at most a year"),
                "{refused}: {errors:?}"
            );
        }
    }

    #[test]
    fn check_refuses_a_schedule_too_sparse_for_the_deadline() {
        let config = CONFIG.replace("key_file", "holidays = \"DK\"\nkey_file");
        // Weekly runs cannot keep "within 3 working days".
        let weekly = deadline("3 working days", "schedule = \"0 30 2 * * MON\"\n");
        let errors = Files::new(&config, &[("crm.toml", &weekly)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("kind = \"deadline\": retain \"3 working days\" can end 3 days after its event, but the rule must act 7 days 2 hours ahead"),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("the schedule is too sparse to meet it"),
            "{errors:?}"
        );
        // Daily runs can.
        let daily = deadline("3 working days", DAILY);
        assert!(Files::new(&config, &[("crm.toml", &daily)]).load().is_ok());
        // Nothing meets a deadline of no time at all.
        let errors = Files::new(
            &config_with(DAILY),
            &[("crm.toml", &deadline("0 days", ""))],
        )
        .errors();
        assert!(
            errors[0].contains("can end 0 minutes after its event"),
            "{errors:?}"
        );
        // A schedule that stops cannot keep a deadline either.
        let ending = deadline("30 days", "schedule = \"0 30 2 * * * 2026\"\n");
        let errors = Files::new(CONFIG, &[("crm.toml", &ending)]).errors();
        assert!(errors[0].contains("stops running"), "{errors:?}");
        let errors = Files::new(
            CONFIG,
            &[(
                "crm.toml",
                &rule(&GOOD_RULE.replace("retain", "kind = \"maximum\"\nretain")),
            )],
        )
        .errors();
        assert!(
            errors[0].contains("kind \"maximum\" is not known"),
            "{errors:?}"
        );
    }

    /// A category's minimum and deadline bound every rule of it: the same
    /// kinds of promise, one level up.
    #[test]
    fn categories_have_floors_and_ceilings() {
        let config = config_with(DAILY);
        let category = |bounds: &str| {
            CATEGORY.replace(
                "legal_basis = \"contract\"",
                &format!("legal_basis = \"contract\"\n{bounds}"),
            )
        };
        let file = |bounds: &str, body: &str| format!("{}\n[[rule]]\n{body}", category(bounds));
        // 36 months from the end of the financial year never goes before
        // 36 months, and a deadline of 36 months stays within them.
        let fine = file("minimum = \"36 months\"", GOOD_RULE);
        assert!(Files::new(&config, &[("crm.toml", &fine)]).load().is_ok());
        let fine = file(
            "deadline = \"36 months\"",
            &GOOD_RULE.replace(
                "retain = \"36 months\"\nround_up_to = \"financial_year_end\"",
                "retain = \"36 months\"\nkind = \"deadline\"",
            ),
        );
        assert!(Files::new(&config, &[("crm.toml", &fine)]).load().is_ok());
        // A rule shorter than the category's floor is refused...
        let short = file(
            "minimum = \"5 years\"",
            &GOOD_RULE.replace("round_up_to = \"financial_year_end\"\n", ""),
        );
        let errors = Files::new(&config, &[("crm.toml", &short)]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:11:12: rule crm-contacts: category customer_contact keeps its data at least 5 years (minimum), but this rule's data could go sooner: an event at 2024-01-01 00:00 would be due at 2027-01-01 00:00, before 2029-01-01 00:00"
            ]
        );
        // ...and so is a minimum that reaches the ceiling only at a run
        // after it: it should be a deadline.
        let late = file(
            "deadline = \"36 months\"",
            &GOOD_RULE.replace("round_up_to = \"financial_year_end\"\n", ""),
        );
        let errors = Files::new(&config, &[("crm.toml", &late)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("category customer_contact has its data gone within 36 months (deadline), but this rule's could stay longer: an event at 2024-01-01 00:00 would be gone only by 2027-01-02 02:00, after 2027-01-01 00:00; should the rule be kind = \"deadline\"?"),
            "{errors:?}"
        );
        // Without a schedule nobody knows when a minimum's rows go.
        let errors = Files::new(CONFIG, &[("crm.toml", &late)]).errors();
        assert!(
            errors[0].contains("nothing says how often this rule runs"),
            "{errors:?}"
        );
        // A deadline acts its lead early: a floor as long as the deadline
        // leaves it no room.
        let early = file(
            "minimum = \"36 months\"",
            &GOOD_RULE.replace(
                "retain = \"36 months\"\nround_up_to = \"financial_year_end\"",
                "retain = \"36 months\"\nkind = \"deadline\"",
            ),
        );
        let errors = Files::new(&config, &[("crm.toml", &early)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("category customer_contact keeps its data at least 36 months (minimum), but this rule's data could go sooner: an event at 2024-01-01 00:00 would be due at 2026-12-30 22:00, before 2027-01-01 00:00"),
            "{errors:?}"
        );
        let errors = Files::new(
            CONFIG,
            &[("crm.toml", &file("minimum = \"soon\"", GOOD_RULE))],
        )
        .errors();
        assert!(
            errors[0].contains(
                "category customer_contact: minimum: period \"soon\" must start with a whole number"
            ),
            "{errors:?}"
        );
    }
}
