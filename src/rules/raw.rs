//! What the files say, as serde reads it: every key known, every value
//! spanned so validation can point at it. Nothing here leaves `rules/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `glemsel.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub timezone: Option<Spanned<String>>,
    pub financial_year_end: Option<Spanned<String>>,
    /// Whose public holidays are not working days: "DK" or "none".
    pub holidays: Option<Spanned<String>>,
    /// Further days that are not working days, "YYYY-MM-DD".
    pub closing_days: Option<Vec<Spanned<String>>>,
    pub key_file: Option<Spanned<String>>,
    /// The key as a systemd credential (a file in $CREDENTIALS_DIRECTORY).
    pub key_credential: Option<Spanned<String>>,
    /// The audit chain's own key (never the pseudonymisation key).
    pub audit_key_file: Option<Spanned<String>>,
    pub audit_key_credential: Option<Spanned<String>>,
    /// The default cron schedule of the daemon, with seconds.
    pub schedule: Option<Spanned<String>>,
    /// How long before its deadline a deadline rule acts when no schedule
    /// says how often glemsel runs (a timer, or by hand).
    pub lead: Option<Spanned<String>>,
    /// Where the daemon serves Prometheus metrics (a loopback address).
    pub metrics_listen: Option<Spanned<String>>,
    pub rules: Option<Spanned<OneOrMany>>,
    pub audit_table: Option<Spanned<String>>,
    pub audit_checkpoints: Option<Spanned<String>>,
    pub batch_size: Option<Spanned<i64>>,
    pub batch_ms: Option<Spanned<i64>>,
    pub lock_timeout_ms: Option<Spanned<i64>>,
    /// How long a server log may keep old row values before `check` warns.
    pub copies_max_log_days: Option<Spanned<i64>>,
    /// The longest any one statement may run (a count, a batch).
    pub statement_timeout_ms: Option<Spanned<i64>>,
    /// How far glemsel's clock and a database server's may differ.
    pub max_clock_skew_ms: Option<Spanned<i64>>,
    /// While this file exists, runs stop after the batch in flight.
    pub stop_file: Option<Spanned<String>>,
    /// A pause between batches, for a gentle purge.
    pub pause_ms: Option<Spanned<i64>>,
    /// The longest a run waits for a store's load to fall before it stops.
    pub max_pause_ms: Option<Spanned<i64>>,
    /// The store whose audit chain holds the erasure ledger.
    pub erasure_store: Option<Spanned<String>>,
    /// A file every ledger entry is also appended to, outside the database.
    pub erasure_ledger: Option<Spanned<String>>,
    #[serde(default)]
    pub stores: BTreeMap<String, Spanned<RawStore>>,
    pub coverage: Option<RawCoverage>,
}

/// `[coverage]`: what the coverage review was told to leave alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCoverage {
    #[serde(default)]
    pub allow: Vec<Spanned<RawAllow>>,
}

/// `[[coverage.allow]]`: a reviewed table or columns, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllow {
    pub store: Option<String>,
    pub table: String,
    pub columns: Option<Vec<String>>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub engine: Spanned<String>,
    /// Accepted only to refuse it with a clear message: secrets never inline.
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub url_file: Option<Spanned<String>>,
    pub url_credential: Option<Spanned<String>>,
    /// The database file of an embedded (sqlite) store.
    pub path: Option<Spanned<String>>,
    pub audit_table: Option<Spanned<String>>,
    pub time_zone: Option<Spanned<String>>,
    pub empty_dates: Option<Vec<Spanned<String>>>,
    /// "disable", "require" or "verify-full" (servers only).
    pub tls: Option<Spanned<String>>,
    /// The CA that signed the server's certificate, for "verify-full".
    pub ca_file: Option<Spanned<String>>,
    /// When rules of this store may run, "HH:MM-HH:MM" in the config's zone.
    pub window: Option<Spanned<String>>,
    /// Above this many running statements, batches wait.
    pub max_load: Option<Spanned<i64>>,
    /// Replicas whose lag is checked before each batch.
    pub replicas: Option<Vec<Spanned<RawReplica>>>,
    /// Above this replica lag ("5s"), batches wait.
    pub max_lag: Option<Spanned<String>>,
}

/// `[[stores.<name>.replicas]]`: where a replica is, as a store's URL is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplica {
    pub url_env: Option<Spanned<String>>,
    pub url_file: Option<Spanned<String>>,
    pub url_credential: Option<Spanned<String>>,
}

/// One string or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// `[categories.<name>]` in a rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCategory {
    pub description: Option<String>,
    pub legal_basis: Option<String>,
    /// A floor: no rule of the category lets its data go before this.
    pub minimum: Option<Spanned<String>>,
    /// A ceiling: every rule of the category has its data gone by this.
    pub deadline: Option<Spanned<String>>,
}

/// One `[[rule]]`. Serialised (without spans) to fingerprint the rule.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub id: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub store: Spanned<String>,
    pub table: Spanned<String>,
    pub category: Spanned<String>,
    pub after: Spanned<RawAfter>,
    pub retain: Spanned<String>,
    /// "minimum" (the default) or "deadline".
    pub kind: Option<Spanned<String>>,
    /// A deadline rule's lead, when no schedule says how often it runs.
    pub lead: Option<Spanned<String>>,
    /// How long a run of the rule may take: the margin a deadline leaves it.
    pub max_duration: Option<Spanned<String>>,
    pub round_up_to: Option<Spanned<OneOrMany>>,
    pub financial_year_end: Option<Spanned<String>>,
    #[serde(rename = "where")]
    pub filter: Option<Spanned<String>>,
    pub hold: Option<Spanned<String>>,
    pub action: Spanned<String>,
    pub columns: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub key: Option<Spanned<Vec<String>>>,
    pub empty_dates: Option<Vec<Spanned<String>>>,
    pub max_rows: Option<Spanned<i64>>,
    /// After a run that changed rows, reclaim the old row versions
    /// (PostgreSQL VACUUM), so no plaintext stays in the table's pages.
    pub vacuum_after: Option<bool>,
    pub batch_size: Option<Spanned<i64>>,
    pub batch_ms: Option<Spanned<i64>>,
    pub schedule: Option<Spanned<String>>,
    /// When the rule may run, "HH:MM-HH:MM" in the config's zone. Left
    /// out of the fingerprint when absent, so older rules keep theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Spanned<String>>,
    /// Overrides the config's pause_ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<Spanned<i64>>,
    /// "drop" (the default): expired range partitions go whole; "rows":
    /// every row is deleted by batches, and glemsel runs no DDL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Spanned<String>>,
    pub join: Option<Vec<RawRelated>>,
    pub hold_table: Option<Vec<RawRelated>>,
    pub cascade: Option<Vec<RawRelated>>,
}

/// `after`: one column, or the latest / earliest of several.
#[derive(Debug, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "a column name, or { latest = [\"col\", \"join.col\", ...] }, or { earliest = [...] }"
)]
pub(crate) enum RawAfter {
    One(String),
    Latest(RawLatest),
    Earliest(RawEarliest),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLatest {
    pub latest: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEarliest {
    pub earliest: Vec<String>,
}

/// `[[rule.join]]`, `[[rule.hold_table]]` and `[[rule.cascade]]`: another
/// table, related to the rule's rows by `on = { their_column = "our_column" }`.
/// Which of the optional keys a kind takes is checked by validation.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelated {
    /// How `after` refers to a join (default: the table's name).
    pub name: Option<String>,
    pub table: Spanned<String>,
    pub on: BTreeMap<String, String>,
    /// join: a related row matching this keeps the rule's row from being due.
    pub open: Option<Spanned<String>>,
    /// hold_table: only listed rows matching this hold.
    #[serde(rename = "where")]
    pub filter: Option<Spanned<String>>,
    /// cascade: the table this one hangs off (another cascade's table);
    /// default: the rule's table.
    pub parent: Option<String>,
}

/// `[[subject]]`: a kind of person a request may name, the identifiers
/// it names them by, and where their rows are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubject {
    pub kind: Spanned<String>,
    pub description: Option<String>,
    /// The kinds of identifier a request may give, e.g. `["email", "customer_no"]`.
    pub identifiers: Spanned<Vec<String>>,
    /// How long after a request is received it must be done (`1 month`).
    pub deadline: Spanned<String>,
    /// Identifiers whose values in a row of the person find further rows.
    pub follow: Option<Spanned<Vec<String>>>,
    /// `{ identifier = "lower" | "exact" }`: how a value is compared
    /// (default `lower`).
    pub normalise: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub table: Vec<Spanned<RawSubjectTable>>,
}

/// `[[subject.table]]`: a table holding the subject's rows, found by
/// identifier columns, and what erasure means there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubjectTable {
    pub store: Spanned<String>,
    pub table: Spanned<String>,
    /// `{ identifier = "column" }`: a row is the subject's when a column holds the identifier.
    #[serde(rename = "match")]
    pub matches: Spanned<BTreeMap<String, String>>,
    pub action: Spanned<String>,
    pub columns: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// The minimum rule that keeps these rows (and deletes them when its period ends).
    pub kept_by: Option<Spanned<String>>,
    /// A boolean column: rows where it is true (or NULL) are held.
    pub hold: Option<Spanned<String>>,
    /// Followed identifiers this table is the authority for: a row here is
    /// one person, so its value of the identifier is theirs alone.
    pub authoritative: Option<Spanned<Vec<String>>>,
    pub cascade: Option<Vec<RawRelated>>,
}

/// The JSON Schemas in `schema/` (for editors) accept exactly the keys
/// these structs accept, and no other: a key added here and not there, or
/// the other way round, fails this test.
#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Visitor};
    use serde_json::Value;

    /// Answers only `deserialize_struct`, by noting the field names a
    /// derived `Deserialize` hands it (renames applied), then stopping.
    struct FieldNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for FieldNames<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields noted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<String> {
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(FieldNames(&mut fields));
        assert!(
            !fields.is_empty(),
            "{} is not a struct",
            std::any::type_name::<T>()
        );
        let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        fields.sort();
        fields
    }

    fn schema(name: &str) -> Value {
        let path = format!("{}/schema/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The keys of an object schema, which must refuse any other key.
    fn keys_of(schema: &Value, at: &str) -> Vec<String> {
        let object = schema.pointer(at).unwrap_or_else(|| panic!("no {at}"));
        assert_eq!(
            object["additionalProperties"],
            Value::Bool(false),
            "{at} must refuse unknown keys, as serde's deny_unknown_fields does"
        );
        let mut keys: Vec<String> = object["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{at} has no properties"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_config_schema_has_every_key_and_no_other() {
        let config = schema("glemsel.schema.json");
        assert_eq!(keys_of(&config, ""), fields_of::<RawConfig>());
        assert_eq!(
            keys_of(&config, "/definitions/store"),
            fields_of::<RawStore>()
        );
    }

    #[test]
    fn the_rule_schema_has_every_key_and_no_other() {
        let rules = schema("rules.schema.json");
        // The top level is read by hand in load.rs: categories, rule and subject.
        assert_eq!(keys_of(&rules, ""), ["categories", "rule", "subject"]);
        assert_eq!(
            keys_of(&rules, "/definitions/subject"),
            fields_of::<RawSubject>()
        );
        assert_eq!(
            keys_of(&rules, "/definitions/subject_table"),
            fields_of::<RawSubjectTable>()
        );
        assert_eq!(
            keys_of(&rules, "/definitions/category"),
            fields_of::<RawCategory>()
        );
        assert_eq!(keys_of(&rules, "/definitions/rule"), fields_of::<RawRule>());
        let after = "/definitions/rule/properties/after/anyOf";
        assert_eq!(
            keys_of(&rules, &format!("{after}/1")),
            fields_of::<RawLatest>()
        );
        assert_eq!(
            keys_of(&rules, &format!("{after}/2")),
            fields_of::<RawEarliest>()
        );
        // Each kind of related table takes some of RawRelated's keys (load.rs
        // refuses the others); together they are all of them.
        let mut related = Vec::new();
        for kind in ["join", "hold_table", "cascade"] {
            let keys = keys_of(
                &rules,
                &format!("/definitions/rule/properties/{kind}/items"),
            );
            assert!(
                keys.iter().all(|k| fields_of::<RawRelated>().contains(k)),
                "{kind}: {keys:?}"
            );
            related.extend(keys);
        }
        related.sort();
        related.dedup();
        assert_eq!(related, fields_of::<RawRelated>());
    }
}
