//! What a delete from a subject table may not reach: the foreign keys into
//! it (and into its declared cascades' tables) are held to what erasure
//! means in the tables they come from, and its cascades to the rows rules
//! and the subject's other tables keep; every table compared as the store
//! resolves it (schema and all), never by name alone.

use super::EraseError;
use crate::rules::{
    Action, Policy, Rule, Subject, SubjectTable, TableRef, cascade_against_rule, cascade_into_kept,
    erasure_against_rule,
};
use crate::store::{ForeignKey, Store, TableSchema};

/// The subject's other tables in the same store, as the store resolves
/// them (schema and all), with where they stand from the table planned.
pub(super) struct SubjectTables<'a> {
    tables: Vec<(TableRef, &'a SubjectTable, bool)>,
}

impl<'a> SubjectTables<'a> {
    pub(super) async fn resolve(
        store: &mut dyn Store,
        subject: &'a Subject,
        planned: &SubjectTable,
        schema: &TableSchema,
        children: &[Child],
    ) -> Result<SubjectTables<'a>, EraseError> {
        let referencing: Vec<&str> = std::iter::once(schema)
            .chain(children.iter().map(|(child, _)| child))
            .flat_map(|t| &t.referenced_by)
            .map(|fk| fk.table.name.as_str())
            .collect();
        let mut tables = Vec::new();
        let mut earlier = true;
        for table in &subject.tables {
            if std::ptr::eq(table, planned) {
                earlier = false;
                continue;
            }
            // Only a table some foreign key names needs resolving.
            let named = referencing.contains(&table.table.name.as_str());
            if table.store != planned.store || !named {
                continue;
            }
            if let Some(resolved) = store.describe(&table.table).await? {
                tables.push((resolved.table, table, earlier));
            }
        }
        Ok(SubjectTables { tables })
    }

    /// The subject table `table` is, and whether it comes before the planned one.
    fn get(&self, table: &TableRef) -> Option<(&'a SubjectTable, bool)> {
        self.tables
            .iter()
            .find(|(resolved, _, _)| resolved == table)
            .map(|(_, t, earlier)| (*t, *earlier))
    }
}

/// A delete from the planned table (or a declared cascade's) changes no
/// row erasure must keep: every foreign key into it is a declared cascade,
/// or comes from a table of the subject that erasure deletes, unheld and
/// kept by no rule; one that would block the delete (NO ACTION, RESTRICT)
/// only from a table of the subject deleted before it. An ON DELETE CASCADE, SET
/// NULL or SET DEFAULT from anywhere else would change rows unseen.
pub(super) fn check_references(
    schema: &TableSchema,
    children: &[Child],
    others: &SubjectTables<'_>,
    what: &str,
) -> Result<(), EraseError> {
    for fk in schema
        .referenced_by
        .iter()
        .filter(|fk| fk.table != schema.table && !declared(children, fk))
    {
        if children.iter().any(|(child, _)| child.table == fk.table) {
            return Err(EraseError::Schema(format!(
                "{what}: {} ({}) references this table {}, but the declared cascade into it matches on other columns: declare on = {{ {} }}",
                fk.table,
                fk.columns.join(", "),
                fk.on_delete.as_sql(),
                fk.columns
                    .iter()
                    .zip(&fk.references)
                    .map(|(theirs, ours)| format!("{theirs} = {ours:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let other = others.get(&fk.table);
        // A blocking key from a table whose rows go first can only stop
        // the delete (a held row there), never widen it.
        let deleted_first =
            other.is_some_and(|(t, earlier)| earlier && matches!(t.action, Action::Delete));
        match fk.on_delete.widens() {
            true if other.is_some_and(|(t, _)| t.erasure_deletes()) => {}
            false if deleted_first => {}
            true => return Err(widening(what, &schema.table, fk, other.map(|(t, _)| t))),
            false => {
                return Err(EraseError::Schema(format!(
                    "{what}: {} has a foreign key into this table ({}); declare it as a [[subject.table.cascade]]",
                    fk.table,
                    fk.on_delete.as_sql()
                )));
            }
        }
    }
    for (child, _) in children {
        for fk in child
            .referenced_by
            .iter()
            .filter(|fk| fk.table != child.table && fk.on_delete.widens())
        {
            let other = others.get(&fk.table);
            if !other.is_some_and(|(t, _)| t.erasure_deletes()) {
                return Err(widening(what, &child.table, fk, other.map(|(t, _)| t)));
            }
        }
    }
    Ok(())
}

/// A declared cascade's table, as the store resolved it, and its `on`
/// pairs (theirs, ours).
pub(super) type Child = (TableSchema, Vec<(String, String)>);

/// Whether a declared cascade deletes the rows the foreign key points
/// from, first: the same table, on the same columns.
fn declared(children: &[Child], fk: &ForeignKey) -> bool {
    let mut pairs: Vec<(&String, &String)> = fk.columns.iter().zip(&fk.references).collect();
    pairs.sort();
    children.iter().any(|(child, on)| {
        let mut on: Vec<(&String, &String)> = on.iter().map(|(a, b)| (a, b)).collect();
        on.sort();
        child.table == fk.table && on == pairs
    })
}

/// The refusal of a delete from `parent` that a foreign key would carry
/// into rows erasure must keep.
fn widening(
    what: &str,
    parent: &TableRef,
    fk: &ForeignKey,
    other: Option<&SubjectTable>,
) -> EraseError {
    let meaning = match other {
        None => "a table erasure does not delete".to_string(),
        Some(t) => t.kept_meaning(),
    };
    EraseError::Schema(format!(
        "{what}: deleting rows of {parent} would change rows of {} through its foreign key {} ({}), {meaning}; erasure refuses to take rows it must keep: drop or change that foreign key, or declare {} as a [[subject.table.cascade]] if its rows are the person's",
        fk.table,
        fk.columns.join(", "),
        fk.on_delete.as_sql(),
        fk.table
    ))
}

/// Where the rows a delete from `table` would take are kept by something
/// else: compared as the store resolves the tables (`public.invoices` is
/// `invoices`; on MariaDB `shop.invoices` is `invoices` in the store's
/// database), never as written. A rule keeping the table itself or a
/// declared cascade's table (a statutory minimum, a hold), and a table of
/// any subject whose rows erasure keeps (held, kept under a minimum, or
/// only overwritten) that a declared cascade would delete, are refused:
/// a cascade deletes without looking at either. `resolved` is the
/// table's own name as the store resolved it.
pub(super) async fn check_kept(
    store: &mut dyn Store,
    policy: &Policy,
    table: &SubjectTable,
    resolved: &TableRef,
    what: &str,
) -> Result<(), EraseError> {
    let refuse = |problem: String| Err(EraseError::Schema(format!("{what}: {problem}")));
    // Only a table named as this one or a cascade's (schema and case
    // aside) can be one of them; the others need no resolving, which
    // costs a look at the catalog each.
    let ours = |t: &TableRef| same_name(t, &table.table);
    let a_child = |t: &TableRef| {
        table
            .cascades
            .iter()
            .any(|c| same_name(t, &c.related.table))
    };
    let mut names = Resolved(vec![(table.table.clone(), Some(resolved.clone()))]);
    if let Some(id) = &table.kept_by
        && let Some(rule) = policy.rule(id)
        && let Some(theirs) = names.resolve(store, &rule.table).await?
        && &theirs != resolved
    {
        return refuse(format!(
            "kept_by: rule {id} works on {theirs}, not this table ({resolved})"
        ));
    }
    let rules: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| r.store == table.store && (ours(&r.table) || a_child(&r.table)))
        .collect();
    // Any subject's: a row another kind of person's erasure holds is held.
    let mut kept: Vec<(&Subject, &SubjectTable)> = Vec::new();
    for whose in &policy.subjects {
        for other in &whose.tables {
            if other.store == table.store && a_child(&other.table) && !other.erasure_deletes() {
                kept.push((whose, other));
            }
        }
    }
    let mut children = Vec::new();
    if !kept.is_empty() || rules.iter().any(|r| a_child(&r.table)) {
        for cascade in &table.cascades {
            children.extend(names.resolve(store, &cascade.related.table).await?);
        }
    }
    for rule in rules {
        let Some(theirs) = names.resolve(store, &rule.table).await? else {
            continue;
        };
        if &theirs == resolved {
            let problems = erasure_against_rule(
                rule,
                &policy.categories,
                table.kept_by.is_some(),
                table.hold.as_deref(),
                Some(&table.action),
            );
            if let Some(problem) = problems.into_iter().next() {
                return refuse(problem);
            }
        }
        if children.contains(&theirs)
            && let Some(problem) = cascade_against_rule(rule, &policy.categories)
        {
            return refuse(problem);
        }
    }
    for (whose, other) in kept {
        let Some(theirs) = names.resolve(store, &other.table).await? else {
            continue;
        };
        if children.contains(&theirs) {
            return refuse(cascade_into_kept(&theirs.to_string(), whose, other));
        }
    }
    Ok(())
}

/// Whether two tables as written have the same name, schema and case
/// aside: only then can the store resolve them to one table.
fn same_name(a: &TableRef, b: &TableRef) -> bool {
    a.name.to_lowercase() == b.name.to_lowercase()
}

/// Tables as the store resolved them, each looked up once.
struct Resolved(Vec<(TableRef, Option<TableRef>)>);

impl Resolved {
    /// The table as the store resolves it; `None` when it does not exist
    /// (the rule's own check reports that).
    async fn resolve(
        &mut self,
        store: &mut dyn Store,
        table: &TableRef,
    ) -> Result<Option<TableRef>, EraseError> {
        if let Some((_, known)) = self.0.iter().find(|(written, _)| written == table) {
            return Ok(known.clone());
        }
        let known = store.describe(table).await?.map(|schema| schema.table);
        self.0.push((table.clone(), known.clone()));
        Ok(known)
    }
}
