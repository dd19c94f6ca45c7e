//! Coverage: which columns of a store look like personal data by their name
//! or type, and whether a rule covers each one. A schema migration that
//! adds `phone2` to a table whose rule pseudonymises `phone` leaves the new
//! column kept for ever; `glemsel check --coverage` catches it in CI.
//!
//! The hints are a heuristic and say so: a column is flagged, a person
//! decides. Reviewed columns go on the config's allow-list, with a reason.
//! Coverage is per column: it does not prove that the rules' `where`
//! conditions between them reach every row.

use serde::Serialize;

use crate::rules::{CoverageAllow, TableRef};

/// What a column's name or type suggests it holds.
#[derive(Debug)]
pub struct Hint {
    /// How reports name it: "e-mail", "phone number".
    pub label: &'static str,
    /// Found anywhere in the name, once separators are dropped
    /// (`E-Mail`, `contact_email` and `EmailAddress` all hold `email`).
    pub contains: &'static [&'static str],
    /// Whole words of the name (split at `_`, `-`, spaces, digits trailing a
    /// word and camelCase): `ip` matches `client_ip`, not `description`.
    pub words: &'static [&'static str],
    /// Types that hold it whatever the name (PostgreSQL's `inet`).
    pub types: &'static [&'static str],
    /// Words that cancel the hint (`file_name` is no person's name).
    pub unless: &'static [&'static str],
}

/// The documented list, first match wins (so `ip_address` is an IP
/// address and `email_address` an e-mail). The README shows it.
pub const HINTS: &[Hint] = &[
    Hint {
        label: "e-mail",
        contains: &["mail"],
        words: &[],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "IP address",
        contains: &["ipaddr", "remoteaddr", "clientip"],
        words: &["ip", "ipv4", "ipv6"],
        types: &["inet", "cidr"],
        unless: &[],
    },
    Hint {
        label: "device identifier",
        contains: &["macaddr", "useragent", "deviceid", "cookieid"],
        words: &["mac"],
        types: &["macaddr", "macaddr8"],
        unless: &[],
    },
    Hint {
        label: "phone number",
        contains: &["phone", "telefon", "mobil"],
        words: &["tel", "tlf", "fax", "mob", "cell"],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "national identity number",
        contains: &[
            "cpr",
            "personnummer",
            "personnr",
            "socialsecurity",
            "nationalid",
            "passport",
        ],
        words: &["ssn", "cvr", "cvrnr"],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "date of birth",
        contains: &["birth", "fodsel", "fødsel", "foedsel"],
        words: &["dob"],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "name",
        contains: &[],
        words: &[
            "name",
            "navn",
            "firstname",
            "lastname",
            "surname",
            "fullname",
            "givenname",
            "familyname",
            "middlename",
            "nickname",
            "username",
            "displayname",
            "fornavn",
            "efternavn",
            "mellemnavn",
            "contactperson",
            "kontaktperson",
        ],
        types: &[],
        unless: &[
            "file", "host", "table", "column", "schema", "product", "item", "domain", "server",
            "class", "type", "category", "event", "field", "database", "path", "tag", "group",
            "role", "rule", "key", "brand", "model", "device", "app", "service", "queue", "job",
            "index", "sheet", "varenavn", "filnavn",
        ],
    },
    Hint {
        label: "address",
        contains: &["address", "adresse", "street"],
        words: &[
            "addr",
            "zip",
            "zipcode",
            "postcode",
            "postalcode",
            "postnr",
            "postnummer",
            "gade",
            "vej",
        ],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "bank or card details",
        contains: &[
            "iban",
            "kontonr",
            "bankaccount",
            "accountnumber",
            "cardnumber",
            "creditcard",
        ],
        words: &[],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "location",
        contains: &["geolocation"],
        words: &["latitude", "longitude", "lat", "lng", "lon", "gps"],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "special category (GDPR art. 9)",
        contains: &[
            "health",
            "helbred",
            "diagnos",
            "religion",
            "ethnic",
            "sexual",
            "biometric",
        ],
        words: &[],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "gender",
        contains: &["gender"],
        words: &["sex", "køn", "koen"],
        types: &[],
        unless: &[],
    },
    Hint {
        label: "free text about a person",
        contains: &[],
        words: &[
            "note",
            "notes",
            "comment",
            "comments",
            "remark",
            "remarks",
            "bemaerkning",
            "bemærkning",
        ],
        types: &[],
        unless: &[],
    },
];

/// The words of a column name, lower-case: split at anything that is not a
/// letter or digit, and where a lower-case letter meets an upper-case one.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            previous_lower = false;
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The hint a column matches, if any. Boolean columns hold no personal
/// data whatever they are called (`email_verified`).
pub fn hint(name: &str, data_type: &str) -> Option<&'static Hint> {
    let base_type = data_type
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if matches!(base_type.as_str(), "boolean" | "bool")
        || data_type.eq_ignore_ascii_case("tinyint(1)")
    {
        return None;
    }
    let words = words(name);
    let joined: String = words.concat();
    let trimmed: Vec<&str> = words
        .iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()))
        .collect();
    let has_word = |list: &[&str]| {
        words
            .iter()
            .map(String::as_str)
            .chain(trimmed.iter().copied())
            .any(|w| list.contains(&w))
    };
    HINTS.iter().find(|hint| {
        let matched = hint.types.contains(&base_type.as_str())
            || hint.contains.iter().any(|part| joined.contains(part))
            || has_word(hint.words);
        matched && !has_word(hint.unless)
    })
}

/// What a rule does to one table, for coverage: deletes its rows (so every
/// column goes) or pseudonymises some columns.
#[derive(Debug, Clone)]
pub struct Claim {
    pub rule: String,
    /// As the store's catalog names it.
    pub table: TableRef,
    /// `None`: the rule deletes whole rows.
    pub columns: Option<Vec<String>>,
}

/// Whether a personal-looking column is taken care of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Disposition {
    /// These rules delete its rows or pseudonymise it.
    Covered { rules: Vec<String> },
    /// Reviewed and on the allow-list.
    Allowed { reason: String, at: String },
    /// Nothing removes it: `why` says what a person should look at.
    Uncovered { why: String },
}

/// One column that looks like personal data, and what becomes of it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub store: String,
    pub table: String,
    pub column: String,
    pub data_type: String,
    pub looks_like: &'static str,
    #[serde(flatten)]
    pub disposition: Disposition,
}

impl Finding {
    pub fn is_uncovered(&self) -> bool {
        matches!(self.disposition, Disposition::Uncovered { .. })
    }
}

/// Decides a personal-looking column's disposition from the rules' claims
/// on its table and the allow-list. A pseudonymising rule that leaves the
/// column leaves it in every row it pseudonymises, whatever deletes other
/// rows, so it makes the column uncovered.
pub fn disposition(
    store: &str,
    table: &TableRef,
    column: &str,
    claims: &[Claim],
    allow: &[CoverageAllow],
) -> Disposition {
    let on_table: Vec<&Claim> = claims.iter().filter(|c| &c.table == table).collect();
    let leaving: Vec<&str> = on_table
        .iter()
        .filter(|c| {
            c.columns
                .as_ref()
                .is_some_and(|columns| !columns.iter().any(|c| c == column))
        })
        .map(|c| c.rule.as_str())
        .collect();
    let covering: Vec<String> = on_table
        .iter()
        .filter(|c| {
            c.columns
                .as_ref()
                .is_none_or(|columns| columns.iter().any(|c| c == column))
        })
        .map(|c| c.rule.clone())
        .collect();
    let uncovered = if !leaving.is_empty() {
        format!(
            "rule{} {} pseudonymise{} the rows and leave{} this column as it is",
            if leaving.len() == 1 { "" } else { "s" },
            leaving.join(", "),
            if leaving.len() == 1 { "s" } else { "" },
            if leaving.len() == 1 { "s" } else { "" },
        )
    } else if covering.is_empty() {
        "no rule deletes or pseudonymises anything in this table".to_string()
    } else {
        return Disposition::Covered { rules: covering };
    };
    match allow.iter().find(|a| a.matches(store, table, column)) {
        Some(allowed) => Disposition::Allowed {
            reason: allowed.reason.clone(),
            at: allowed.at.to_string(),
        },
        None => Disposition::Uncovered { why: uncovered },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, data_type: &str) -> Option<&'static str> {
        hint(name, data_type).map(|h| h.label)
    }

    #[test]
    fn names_and_types_that_look_personal() {
        assert_eq!(label("email", "text"), Some("e-mail"));
        assert_eq!(label("E-Mail", "varchar(80)"), Some("e-mail"));
        assert_eq!(label("email_address", "text"), Some("e-mail"));
        assert_eq!(label("phone2", "text"), Some("phone number"));
        assert_eq!(label("Phone No_", "varchar(30)"), Some("phone number"));
        assert_eq!(label("tlf", "text"), Some("phone number"));
        assert_eq!(label("firstName", "text"), Some("name"));
        assert_eq!(label("efternavn", "text"), Some("name"));
        assert_eq!(label("Name", "VARCHAR(50)"), Some("name"));
        assert_eq!(label("ip", "varchar(45)"), Some("IP address"));
        assert_eq!(label("client_ip", "text"), Some("IP address"));
        assert_eq!(label("ip_address", "text"), Some("IP address"));
        assert_eq!(label("seen_from", "inet"), Some("IP address"));
        assert_eq!(
            label("cpr_nr", "char(10)"),
            Some("national identity number")
        );
        assert_eq!(label("birth_date", "date"), Some("date of birth"));
        assert_eq!(label("fødselsdato", "date"), Some("date of birth"));
        assert_eq!(label("adresse", "text"), Some("address"));
        assert_eq!(label("note", "text"), Some("free text about a person"));
        // Not personal: other words that contain the letters, other names, flags.
        assert_eq!(label("description", "text"), None);
        assert_eq!(label("shipped", "boolean"), None);
        assert_eq!(label("file_name", "text"), None);
        assert_eq!(label("table_name", "text"), None);
        assert_eq!(label("email_verified", "boolean"), None);
        assert_eq!(label("invoice_no", "varchar(20)"), None);
        assert_eq!(label("contract_ended", "date"), None);
    }

    fn allow(table: &str, columns: &[&str]) -> CoverageAllow {
        CoverageAllow {
            store: None,
            table: table.parse().unwrap(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            reason: "reviewed".into(),
            at: crate::rules::Location::file_start(std::path::Path::new("glemsel.toml")),
        }
    }

    #[test]
    fn a_pseudonymising_rule_that_leaves_a_column_leaves_it_uncovered() {
        let table: TableRef = "public.customers".parse().unwrap();
        let claims = vec![
            Claim {
                rule: "customers".into(),
                table: table.clone(),
                columns: Some(vec!["phone".into(), "email".into()]),
            },
            Claim {
                rule: "prospects".into(),
                table: table.clone(),
                columns: None,
            },
        ];
        assert_eq!(
            disposition("shop", &table, "phone", &claims, &[]),
            Disposition::Covered {
                rules: vec!["customers".into(), "prospects".into()]
            }
        );
        assert!(matches!(
            disposition("shop", &table, "phone2", &claims, &[]),
            Disposition::Uncovered { why } if why.contains("customers pseudonymises")
        ));
        assert!(matches!(
            disposition(
                "shop",
                &table,
                "phone2",
                &claims,
                &[allow("customers", &["phone2"])]
            ),
            Disposition::Allowed { .. }
        ));
        let other: TableRef = "public.leads".parse().unwrap();
        assert!(matches!(
            disposition("shop", &other, "email", &claims, &[allow("other.leads", &[])]),
            Disposition::Uncovered { why } if why.starts_with("no rule")
        ));
        assert!(matches!(
            disposition("shop", &other, "email", &claims, &[allow("leads", &[])]),
            Disposition::Allowed { .. }
        ));
    }
}
