//! The files we ship and document must load: every rule set in `rules/`,
//! the example config in `systemd/`, and the TOML examples in the README.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    for store in stores_of(rules) {
        config.push_str(&format!(
            "[stores.{store}]\nengine = \"{engine}\"\nurl_env = \"UNUSED\"\n"
        ));
    }
    let path = dir.join("glemsel.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn every_shipped_rule_set_loads() {
    let mut sets = 0;
    for entry in std::fs::read_dir(repo().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let policy = glemsel::rules::load(&config_for(dir.path(), &path, "postgres"))
            .unwrap_or_else(|d| panic!("{}:\n{d}", path.display()));
        assert!(!policy.rules.is_empty(), "{} has no rules", path.display());
        sets += 1;
    }
    assert!(sets > 0);
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
    assert_eq!(policy.rules[0].id, "customers-after-contract");
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
    std::fs::write(dir.path().join("glemsel.toml"), config).unwrap();
    glemsel::rules::load(&dir.path().join("glemsel.toml"))
        .unwrap_or_else(|d| panic!("README example:\n{d}"));
}
