//! Names of tables and columns as rules write them.
//!
//! Names are taken literally (no case folding), because legacy schemas are
//! full of mixed case, spaces and `$`. The stores quote them per dialect;
//! here they are only checked for characters no database accepts.

use std::fmt;
use std::str::FromStr;

/// The longest identifier any supported engine accepts (MySQL: 64).
pub const MAX_IDENTIFIER_CHARS: usize = 64;

/// Checks a table, schema or column name from a rule.
pub fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.chars().count() > MAX_IDENTIFIER_CHARS {
        return Err(format!(
            "name {name:?} is longer than {MAX_IDENTIFIER_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("name {name:?} contains a control character"));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(format!(
            "name {name:?} starts or ends with a space; databases trim those"
        ));
    }
    Ok(())
}

/// A table, optionally qualified with its schema (PostgreSQL) or database
/// (MySQL). Written `schema.table`; a part holding a dot is double-quoted:
/// `"my.schema"."t"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TableRef {
    pub schema: Option<String>,
    pub name: String,
}

impl TableRef {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl FromStr for TableRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted_part = false;
        while let Some(c) = chars.next() {
            match c {
                '"' if current.is_empty() && !quoted_part => {
                    quoted_part = true;
                    loop {
                        match chars.next() {
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                current.push('"');
                            }
                            Some('"') => break,
                            Some(c) => current.push(c),
                            None => {
                                return Err(format!("unterminated quote in table name {text:?}"));
                            }
                        }
                    }
                    if !matches!(chars.peek(), None | Some('.')) {
                        return Err(format!(
                            "unexpected text after a quoted part in table name {text:?}"
                        ));
                    }
                }
                '.' => {
                    parts.push(std::mem::take(&mut current));
                    quoted_part = false;
                }
                '"' => return Err(format!("stray quote in table name {text:?}")),
                c => current.push(c),
            }
        }
        parts.push(current);
        for part in &parts {
            check_identifier(part).map_err(|e| format!("table {text:?}: {e}"))?;
        }
        match parts.as_slice() {
            [name] => Ok(TableRef::new(None, name)),
            [schema, name] => Ok(TableRef::new(Some(schema), name)),
            _ => Err(format!(
                "table {text:?} has more than two parts; write schema.table, quoting a part that holds a dot"
            )),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: &str| {
            if p.contains(['.', '"']) {
                format!("\"{}\"", p.replace('"', "\"\""))
            } else {
                p.to_string()
            }
        };
        match &self.schema {
            Some(schema) => write!(f, "{}.{}", part(schema), part(&self.name)),
            None => write!(f, "{}", part(&self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_names() {
        assert_eq!("contacts".parse(), Ok(TableRef::new(None, "contacts")));
        assert_eq!(
            "public.contacts".parse(),
            Ok(TableRef::new(Some("public"), "contacts"))
        );
        assert_eq!(
            "CRONUS International Ltd_$Customer".parse(),
            Ok(TableRef::new(None, "CRONUS International Ltd_$Customer"))
        );
        assert_eq!(
            r#""my.schema"."a ""b""""#.parse(),
            Ok(TableRef::new(Some("my.schema"), r#"a "b""#))
        );
        assert!("a.b.c".parse::<TableRef>().is_err());
        assert!("".parse::<TableRef>().is_err());
        assert!("public.".parse::<TableRef>().is_err());
        assert!("\"open".parse::<TableRef>().is_err());
        assert!("ta\"ble".parse::<TableRef>().is_err());
        assert!("tab\nle".parse::<TableRef>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "public.contacts",
            "CRONUS International Ltd_$Customer",
            r#""my.schema".t"#,
        ] {
            let table: TableRef = text.parse().unwrap();
            assert_eq!(table.to_string().parse::<TableRef>().unwrap(), table);
        }
    }
}
