//! Least privilege: what the role glemsel connects as must be allowed to
//! do, read off the steps (the statements a run sends follow from them),
//! and the GRANT statements that allow exactly that, per dialect.
//!
//! Every table a rule names is read (counts, windows, conditions, holds):
//! SELECT. Pseudonymised columns: UPDATE of those columns only. Tables a
//! rule deletes from, its cascades included: DELETE. The audit table:
//! SELECT and INSERT, never UPDATE or DELETE, so the role cannot rewrite
//! the trail it writes; the DBA creates it, so the role does not own it
//! either (an owner may grant itself anything). Locks, session settings
//! and the catalogs need nothing on either engine.

use std::collections::{BTreeMap, BTreeSet};

use super::sql::Dialect;
use crate::rules::TableRef;
use crate::step::{Hold, Step, StepAction};

/// What one table needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableNeeds {
    /// The rules that use the table: all of them read it.
    pub rules: BTreeSet<String>,
    /// What they do to its rows: delete, pseudonymise, anonymise.
    pub actions: BTreeSet<&'static str>,
    pub delete: bool,
    /// The pseudonymised columns.
    pub update: BTreeSet<String>,
    /// A column to grant UPDATE of where the role must lock rows
    /// (`SELECT ... FOR UPDATE`, before a delete's cascades) but updates
    /// none: PostgreSQL lets a role lock a row only with an UPDATE right.
    pub lock: Option<String>,
    /// A rule reclaims the table's old row versions (`vacuum_after`).
    pub vacuum: bool,
}

impl TableNeeds {
    fn merge(&mut self, other: TableNeeds) {
        self.rules.extend(other.rules);
        self.actions.extend(other.actions);
        self.delete |= other.delete;
        self.update.extend(other.update);
        self.lock = self.lock.take().or(other.lock);
        self.vacuum |= other.vacuum;
    }
}

/// What a store's rules need, per table as the rules name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub tables: BTreeMap<TableRef, TableNeeds>,
    /// A rule waits for the server's load (`max_load`).
    pub watches_load: bool,
    /// A rule waits for the store's replicas (`max_lag`).
    pub watches_lag: bool,
}

impl Needs {
    /// The needs of `steps`, which should all be of one store.
    pub fn of<'s>(steps: impl IntoIterator<Item = &'s Step>) -> Needs {
        let mut needs = Needs::default();
        for step in steps {
            let mut main = TableNeeds {
                vacuum: step.vacuum_after,
                ..TableNeeds::default()
            };
            main.actions.insert(step.action.as_str());
            needs.watches_load |= step.max_load.is_some();
            needs.watches_lag |= step.max_lag.is_some();
            match &step.action {
                StepAction::Delete => {
                    main.delete = true;
                    if !step.cascades.is_empty() {
                        main.lock = step.key.first().map(|c| c.name.clone());
                    }
                }
                StepAction::Pseudonymise { columns } | StepAction::Anonymise { columns } => {
                    main.update = columns.iter().map(|c| c.column.name.clone()).collect();
                }
            }
            needs.add(step, &step.table, main);
            for join in &step.joins {
                needs.add(step, &join.related.table, TableNeeds::default());
            }
            for hold in &step.holds {
                if let Hold::Table { related, .. } = hold {
                    needs.add(step, &related.table, TableNeeds::default());
                }
            }
            for cascade in &step.cascades {
                let deleted = TableNeeds {
                    delete: true,
                    actions: ["delete"].into(),
                    ..TableNeeds::default()
                };
                needs.add(step, &cascade.related.table, deleted);
            }
        }
        needs
    }

    fn add(&mut self, step: &Step, table: &TableRef, mut needs: TableNeeds) {
        needs.rules.insert(step.rule_id.clone());
        self.tables.entry(table.clone()).or_default().merge(needs);
    }

    /// The same needs with each table named as the store resolved it
    /// (`resolve` gives the schema-qualified name), so that two spellings
    /// of one table become one entry.
    pub fn resolved(&self, resolve: impl Fn(&TableRef) -> TableRef) -> Needs {
        let mut resolved = Needs {
            watches_load: self.watches_load,
            watches_lag: self.watches_lag,
            ..Needs::default()
        };
        for (table, needs) in &self.tables {
            resolved
                .tables
                .entry(resolve(table))
                .or_default()
                .merge(needs.clone());
        }
        resolved
    }
}

/// What lets a role VACUUM a table, for `vacuum_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VacuumRight {
    /// Nothing to reclaim (MySQL, MariaDB): no right is needed.
    NotNeeded,
    /// A right of its own (PostgreSQL 17 and later: MAINTAIN).
    Grant(&'static str),
    /// Only the table's owner may (PostgreSQL before 17): no grant helps.
    OwnerOnly,
}

/// How one dialect writes grants.
pub(crate) struct GrantSyntax<'a> {
    /// Quotes names.
    pub dialect: &'a dyn Dialect,
    /// The grantee as a GRANT names it.
    pub grantee: String,
    /// Whether a row lock needs an UPDATE right (PostgreSQL).
    pub lock_needs_update: bool,
    pub vacuum: VacuumRight,
}

impl GrantSyntax<'_> {
    fn table(&self, table: &TableRef) -> String {
        self.dialect.table(table)
    }

    /// One GRANT per table, with a comment naming its rules and why.
    pub fn table_grants(&self, needs: &Needs) -> Vec<String> {
        let mut lines = Vec::new();
        for (table, need) in &needs.tables {
            let granted = self.rights(need);
            let rules: Vec<&str> = need.rules.iter().map(String::as_str).collect();
            lines.push(format!(
                "-- {} {}: {}",
                if rules.len() == 1 { "rule" } else { "rules" },
                rules.join(", "),
                granted.why.join(", ")
            ));
            lines.extend(granted.notes.iter().map(|note| format!("-- {note}")));
            lines.push(format!(
                "GRANT {} ON {} TO {};",
                granted.rights.join(", "),
                self.table(table),
                self.grantee
            ));
        }
        lines
    }

    /// The rights one table's needs come to, with why, and what no right
    /// can give.
    fn rights(&self, need: &TableNeeds) -> Granted {
        let mut granted = Granted {
            rights: vec!["SELECT".to_string()],
            why: vec!["read"],
            notes: Vec::new(),
        };
        granted.why.extend(&need.actions);
        if need.delete {
            granted.rights.push("DELETE".into());
        }
        let update: Vec<&String> = match (&need.lock, self.lock_needs_update) {
            (Some(lock), true) if need.update.is_empty() => {
                granted.why.push(
                    "lock the due rows before their cascades go (SELECT ... FOR UPDATE, which PostgreSQL allows only with UPDATE of some column; the role never updates it)",
                );
                vec![lock]
            }
            _ => need.update.iter().collect(),
        };
        if !update.is_empty() {
            let columns: Vec<String> = update.iter().map(|c| self.dialect.quote(c)).collect();
            granted
                .rights
                .push(format!("UPDATE ({})", columns.join(", ")));
        }
        match (need.vacuum, self.vacuum) {
            (true, VacuumRight::Grant(right)) => {
                granted.rights.push(right.to_string());
                granted.why.push("VACUUM (vacuum_after)");
            }
            (true, VacuumRight::OwnerOnly) => granted.notes.extend([
                "vacuum_after: before PostgreSQL 17 only the table's owner may VACUUM it, and no grant",
                "allows it: VACUUM it from the owner's own job after glemsel's runs (check warns)",
            ]),
            _ => {}
        }
        granted
    }

    /// The audit table: created by the DBA, then only read and appended.
    pub fn audit_grants(&self, audit: &TableRef, create: &str) -> Vec<String> {
        vec![
            "-- The audit trail. Create it as yourself, so that the role does not own it (an owner"
                .into(),
            "-- may grant itself anything); the role reads and appends, and can neither change"
                .into(),
            "-- nor delete a row.".into(),
            format!("{create};"),
            format!(
                "GRANT SELECT, INSERT ON {} TO {};",
                self.table(audit),
                self.grantee
            ),
        ]
    }
}

/// One table's rights, why it needs them, and what no grant can give.
struct Granted {
    rights: Vec<String>,
    why: Vec<&'static str>,
    notes: Vec<&'static str>,
}

/// A MySQL account for GRANT: `user@host` (host `%` when not given), each
/// part a string literal.
pub(crate) fn mysql_account(role: &str) -> String {
    let literal = |text: &str| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"));
    let (user, host) = role.rsplit_once('@').unwrap_or((role, "%"));
    format!("{}@{}", literal(user), literal(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{mysql::MYSQL, postgres::Postgres};

    fn needs(rule: &str, delete: bool, update: &[&str], lock: Option<&str>) -> TableNeeds {
        TableNeeds {
            rules: [rule.to_string()].into(),
            actions: BTreeSet::new(),
            delete,
            update: update.iter().map(|c| c.to_string()).collect(),
            lock: lock.map(str::to_string),
            vacuum: false,
        }
    }

    #[test]
    fn one_grant_per_table_with_only_the_rights_its_rules_use() {
        let mut all = Needs::default();
        let t = |name: &str| TableRef::new(Some("public"), name);
        all.tables
            .insert(t("customers"), needs("c", false, &["name", "email"], None));
        all.tables
            .insert(t("accounts"), needs("a", true, &[], Some("id")));
        all.tables.insert(t("tickets"), needs("a", true, &[], None));
        all.tables
            .insert(t("disputes"), needs("c", false, &[], None));
        let pg = GrantSyntax {
            dialect: &Postgres,
            grantee: Postgres.quote("glemsel"),
            lock_needs_update: true,
            vacuum: VacuumRight::Grant("MAINTAIN"),
        };
        let statements: Vec<String> = pg
            .table_grants(&all)
            .into_iter()
            .filter(|l| !l.starts_with("--"))
            .collect();
        assert_eq!(
            statements,
            [
                r#"GRANT SELECT, DELETE, UPDATE ("id") ON "public"."accounts" TO "glemsel";"#,
                r#"GRANT SELECT, UPDATE ("email", "name") ON "public"."customers" TO "glemsel";"#,
                r#"GRANT SELECT ON "public"."disputes" TO "glemsel";"#,
                r#"GRANT SELECT, DELETE ON "public"."tickets" TO "glemsel";"#,
            ]
        );
        // MySQL locks rows with SELECT (and DELETE) alone.
        let my = GrantSyntax {
            dialect: &MYSQL,
            grantee: mysql_account("glemsel"),
            lock_needs_update: false,
            vacuum: VacuumRight::NotNeeded,
        };
        assert_eq!(
            my.table_grants(&all)[1],
            "GRANT SELECT, DELETE ON `public`.`accounts` TO 'glemsel'@'%';"
        );
        // vacuum_after: PostgreSQL 17 grants MAINTAIN; before, only a note.
        all.tables.get_mut(&t("customers")).unwrap().vacuum = true;
        assert!(pg.table_grants(&all).contains(
            &r#"GRANT SELECT, UPDATE ("email", "name"), MAINTAIN ON "public"."customers" TO "glemsel";"#
                .to_string()
        ));
        let old = GrantSyntax {
            vacuum: VacuumRight::OwnerOnly,
            ..pg
        };
        let lines = old.table_grants(&all);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("-- vacuum_after: before PostgreSQL 17"))
        );
        assert!(lines.iter().all(|l| !l.contains("MAINTAIN")));
        assert!(my.table_grants(&all).iter().all(|l| !l.contains("vacuum")));
        let audit = my.audit_grants(&t("glemsel_audit"), "CREATE TABLE x");
        assert!(
            audit
                .iter()
                .all(|l| !l.contains("UPDATE") && !l.contains("DELETE"))
        );
    }

    #[test]
    fn accounts_are_quoted_literals() {
        assert_eq!(mysql_account("glemsel"), "'glemsel'@'%'");
        assert_eq!(mysql_account("gl'em@10.0.0.%"), "'gl''em'@'10.0.0.%'");
    }

    #[test]
    fn two_spellings_of_a_table_merge() {
        let mut all = Needs::default();
        all.tables
            .insert(TableRef::new(None, "t"), needs("a", true, &[], None));
        all.tables.insert(
            TableRef::new(Some("public"), "t"),
            needs("b", false, &["x"], None),
        );
        let resolved = all.resolved(|t| TableRef::new(Some("public"), &t.name));
        assert_eq!(resolved.tables.len(), 1);
        let merged = &resolved.tables[&TableRef::new(Some("public"), "t")];
        assert!(merged.delete);
        assert_eq!(merged.rules.len(), 2);
        assert_eq!(merged.update.len(), 1);
    }
}
