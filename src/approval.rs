//! Approved plans: `plan --save FILE` writes the dry run a person approves,
//! with what it was made from (each rule's fingerprint, each table's
//! schema, the due condition, the counts); `run --plan FILE` runs exactly
//! those rules at that as-of, or refuses with every difference named and
//! nothing changed. The file's SHA-256 goes into every audit row of the
//! run, so an auditor can match a run to the plan somebody approved.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::commands::{self, CommandError, PlanReport, RunOptions, StepOutcome, Stores};
use crate::execute::{Progress, Shutdown, cutoff_text};
use crate::plan;
use crate::rules::{Policy, Rule, TableRef};
use crate::store::TableSchema;

/// What the first line of a plan file's format says.
pub const FORMAT: &str = "glemsel-plan/1";

/// A rule of the policy the plan was made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFingerprint {
    pub id: String,
    pub fingerprint: String,
}

/// A column as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnShape {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// A table's schema as the plan saw it, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    /// As the rule names it.
    pub table: String,
    pub fingerprint: String,
    pub columns: Vec<ColumnShape>,
    pub primary_key: Vec<String>,
    pub unique_keys: Vec<Vec<String>>,
    /// Foreign keys elsewhere that point at the table.
    pub referenced_by: Vec<String>,
}

/// The counts the plan approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCounts {
    pub due: u64,
    pub held: u64,
    pub undated: u64,
    pub done: u64,
    pub rows: u64,
}

/// One rule of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRule {
    pub id: String,
    pub fingerprint: String,
    pub description: Option<String>,
    pub category: String,
    pub legal_basis: Option<String>,
    pub store: String,
    pub table: String,
    pub action: String,
    /// The due condition with its bound, as the audit trail records it.
    pub due_when: String,
    pub counts: PlannedCounts,
    pub tables: Vec<TableShape>,
}

/// A plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub format: String,
    pub as_of: DateTime<Utc>,
    pub timezone: String,
    pub created_at: DateTime<Utc>,
    pub glemsel: String,
    /// Every rule of the policy, so a rule added later is seen.
    pub policy: Vec<RuleFingerprint>,
    /// The rules the plan runs.
    pub rules: Vec<PlannedRule>,
}

/// The shape of a live table: what a plan compares.
pub fn table_shape(name: &TableRef, schema: &TableSchema) -> TableShape {
    let mut referenced_by: Vec<String> = schema
        .referenced_by
        .iter()
        .map(|fk| {
            format!(
                "{} ({}) -> ({}) {}",
                fk.table,
                fk.columns.join(", "),
                fk.references.join(", "),
                fk.on_delete.as_sql()
            )
        })
        .collect();
    referenced_by.sort();
    let mut shape = TableShape {
        table: name.to_string(),
        fingerprint: String::new(),
        columns: schema
            .columns
            .iter()
            .map(|c| ColumnShape {
                name: c.name.clone(),
                data_type: c.data_type.clone(),
                nullable: c.nullable,
            })
            .collect(),
        primary_key: schema.primary_key.clone(),
        unique_keys: schema.unique_keys.clone(),
        referenced_by,
    };
    let canonical = serde_json::to_vec(&shape).expect("shapes serialise");
    shape.fingerprint = hex::encode(Sha256::digest(canonical));
    shape
}

/// How a table changed since the plan, in words; empty when it did not.
pub fn shape_differences(planned: &TableShape, now: &TableShape) -> Vec<String> {
    if planned.fingerprint == now.fingerprint {
        return Vec::new();
    }
    let table = &planned.table;
    let mut found = Vec::new();
    for column in &now.columns {
        match planned.columns.iter().find(|c| c.name == column.name) {
            None => found.push(format!(
                "table {table}: column {} ({}) was added",
                column.name, column.data_type
            )),
            Some(before) if before != column => found.push(format!(
                "table {table}: column {} changed from {}{} to {}{}",
                column.name,
                before.data_type,
                if before.nullable {
                    " NULL"
                } else {
                    " NOT NULL"
                },
                column.data_type,
                if column.nullable {
                    " NULL"
                } else {
                    " NOT NULL"
                },
            )),
            Some(_) => {}
        }
    }
    for column in &planned.columns {
        if !now.columns.iter().any(|c| c.name == column.name) {
            found.push(format!("table {table}: column {} was dropped", column.name));
        }
    }
    if planned.primary_key != now.primary_key {
        found.push(format!(
            "table {table}: the primary key changed from ({}) to ({})",
            planned.primary_key.join(", "),
            now.primary_key.join(", ")
        ));
    }
    if planned.unique_keys != now.unique_keys {
        found.push(format!("table {table}: its unique keys changed"));
    }
    if planned.referenced_by != now.referenced_by {
        found.push(format!(
            "table {table}: the foreign keys that point at it changed"
        ));
    }
    if found.is_empty() {
        found.push(format!("table {table}: its schema changed"));
    }
    found
}

/// The live shapes of every table a rule uses.
async fn shapes(stores: &mut Stores<'_>, rule: &Rule) -> Result<Vec<TableShape>, CommandError> {
    let store = stores.get(&rule.store).await?;
    let mut shapes: Vec<TableShape> = Vec::new();
    for (table, _) in plan::tables_of(rule) {
        if shapes.iter().any(|s| s.table == table.to_string()) {
            continue;
        }
        if let Some(schema) = store.describe(table).await? {
            shapes.push(table_shape(table, &schema));
        }
    }
    Ok(shapes)
}

fn policy_rules(policy: &Policy) -> Vec<RuleFingerprint> {
    policy
        .rules
        .iter()
        .map(|r| RuleFingerprint {
            id: r.id.clone(),
            fingerprint: r.fingerprint.clone(),
        })
        .collect()
}

/// `plan --save`: the dry run, and the plan file that approves it.
pub async fn save(
    policy: &Policy,
    rule_ids: &[String],
    as_of: DateTime<Utc>,
) -> Result<(PlanReport, PlanFile), CommandError> {
    let report = commands::plan(policy, rule_ids, as_of).await?;
    let mut stores = Stores::new(policy);
    let mut rules = Vec::new();
    for planned in &report.steps {
        let step = &planned.step;
        let rule = policy.rule(&step.rule_id).expect("planned rules exist");
        let c = &planned.counts;
        rules.push(PlannedRule {
            id: step.rule_id.clone(),
            fingerprint: step.rule_fingerprint.clone(),
            description: step.description.clone(),
            category: step.category.clone(),
            legal_basis: planned.legal_basis.clone(),
            store: step.store.clone(),
            table: step.table.to_string(),
            action: step.action.as_str().to_string(),
            due_when: cutoff_text(step),
            counts: PlannedCounts {
                due: c.due,
                held: c.held,
                undated: c.undated,
                done: c.done,
                rows: c.rows,
            },
            tables: shapes(&mut stores, rule).await?,
        });
    }
    let file = PlanFile {
        format: FORMAT.to_string(),
        as_of,
        timezone: report.timezone.clone(),
        created_at: commands::now(),
        glemsel: crate::VERSION.to_string(),
        policy: policy_rules(policy),
        rules,
    };
    Ok((report, file))
}

/// The text of a plan file, and the hash the audit trail records for it.
pub fn read(path: &Path) -> Result<(PlanFile, String), CommandError> {
    let bytes = std::fs::read(path)
        .map_err(|err| CommandError::PlanFile(format!("cannot read {}: {err}", path.display())))?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let file: PlanFile = serde_json::from_slice(&bytes).map_err(|err| {
        CommandError::PlanFile(format!(
            "{}: not a glemsel plan file: {err}",
            path.display()
        ))
    })?;
    if file.format != FORMAT {
        return Err(CommandError::PlanFile(format!(
            "{}: format {:?}, but this glemsel reads {FORMAT:?}",
            path.display(),
            file.format
        )));
    }
    Ok((file, hash))
}

/// Reads `--max-drift`: `10%`, `10` or `0.5%`, as a percentage.
pub fn parse_drift(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!(
            "{text:?} is not a percentage; write for example 10% (0% allows no more rows than planned)"
        )),
    }
}

/// The most rows a run may change for a planned count and drift.
pub fn ceiling(planned: u64, drift_percent: f64) -> u64 {
    (planned as f64 * (1.0 + drift_percent / 100.0)).floor() as u64
}

/// Differences between the policy now and the one the plan was made under.
fn policy_differences(policy: &Policy, file: &PlanFile) -> Vec<String> {
    let mut found = Vec::new();
    let planned: BTreeMap<&str, &str> = file
        .policy
        .iter()
        .map(|r| (r.id.as_str(), r.fingerprint.as_str()))
        .collect();
    for rule in &policy.rules {
        match planned.get(rule.id.as_str()) {
            None => found.push(format!(
                "rule {} was added since the plan was made ({}:{})",
                rule.id,
                rule.at.rule.file.display(),
                rule.at.rule.line
            )),
            Some(fingerprint) if *fingerprint != rule.fingerprint => found.push(format!(
                "rule {} changed since the plan was made (fingerprint {}… is now {}…; {}:{})",
                rule.id,
                &fingerprint[..fingerprint.len().min(12)],
                &rule.fingerprint[..12],
                rule.at.rule.file.display(),
                rule.at.rule.line
            )),
            Some(_) => {}
        }
    }
    for id in planned.keys() {
        if policy.rule(id).is_none() {
            found.push(format!("rule {id} was removed since the plan was made"));
        }
    }
    found
}

/// Whether one planned rule still holds: its tables' shapes, its due
/// condition, and its due rows within the approved count plus the drift.
/// Returns what differs and, for a rule that got as far as its count,
/// the most rows the run may touch.
async fn check_rule(
    stores: &mut Stores<'_>,
    policy: &Policy,
    planned: &PlannedRule,
    rule: &Rule,
    as_of: DateTime<Utc>,
    drift_percent: f64,
) -> Result<(Vec<String>, Option<u64>), CommandError> {
    let now = shapes(stores, rule).await?;
    let mut changed = Vec::new();
    for shape in &planned.tables {
        match now.iter().find(|s| s.table == shape.table) {
            Some(live) => changed.extend(shape_differences(shape, live)),
            None => changed.push(format!("table {}: it no longer exists", shape.table)),
        }
    }
    if !changed.is_empty() {
        let found = changed
            .into_iter()
            .map(|d| format!("rule {}: {d}", rule.id));
        return Ok((found.collect(), None));
    }
    let config = &policy.stores[&rule.store];
    let store = stores.get(&rule.store).await?;
    let step = match commands::step_for(store, config, rule, as_of).await? {
        Ok(step) => step,
        Err(problems) => {
            let found = problems
                .iter()
                .map(|p| format!("rule {}: {}", rule.id, p.message));
            return Ok((found.collect(), None));
        }
    };
    let due_when = cutoff_text(&step);
    if due_when != planned.due_when {
        return Ok((
            vec![format!(
                "rule {}: the due condition changed from {} to {} (the configuration changed)",
                rule.id, planned.due_when, due_when
            )],
            None,
        ));
    }
    let counts = store.count(&step).await?;
    let allowed = ceiling(planned.counts.due, drift_percent);
    let mut found = Vec::new();
    if counts.due > allowed {
        found.push(format!(
            "rule {}: {} rows are due, more than the {} the plan approved{}",
            rule.id,
            counts.due,
            planned.counts.due,
            if drift_percent > 0.0 {
                format!(" (with --max-drift {drift_percent}%: at most {allowed})")
            } else {
                String::new()
            }
        ));
    }
    Ok((found, Some(allowed)))
}

/// `run --plan`: checks that nothing the plan was made from has changed and
/// that no rule finds more due rows than approved (plus `drift_percent`),
/// then runs exactly the plan's rules at its as-of. Any difference refuses
/// the whole run before anything is written.
pub async fn run(
    policy: &Policy,
    path: &Path,
    drift_percent: f64,
    shutdown: Shutdown,
    progress: Option<&dyn Progress>,
    limits: crate::operate::Limits,
) -> Result<Vec<StepOutcome>, CommandError> {
    let (file, hash) = read(path)?;
    let mut differences = policy_differences(policy, &file);
    let mut stores = Stores::new(policy);
    let mut ceilings = BTreeMap::new();
    for planned in &file.rules {
        let Some(rule) = policy.rule(&planned.id) else {
            continue;
        };
        if rule.fingerprint != planned.fingerprint {
            continue;
        }
        let (found, allowed) = check_rule(
            &mut stores,
            policy,
            planned,
            rule,
            file.as_of,
            drift_percent,
        )
        .await?;
        differences.extend(found);
        if let Some(allowed) = allowed {
            ceilings.insert(rule.id.clone(), allowed);
        }
    }
    if !differences.is_empty() {
        return Err(CommandError::PlanRefused {
            plan: path.display().to_string(),
            differences,
        });
    }
    drop(stores);
    let ids: Vec<String> = file.rules.iter().map(|r| r.id.clone()).collect();
    tracing::info!(plan = %path.display(), sha256 = %hash, rules = ids.len(), "running an approved plan");
    let options = RunOptions {
        plan: Some(hash),
        ceilings,
        progress,
        limits,
    };
    commands::run(policy, &ids, file.as_of, shutdown, &options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(columns: &[(&str, &str)]) -> TableShape {
        let schema = TableSchema {
            table: "public.t".parse().unwrap(),
            columns: columns
                .iter()
                .map(|(name, data_type)| crate::store::Column {
                    name: name.to_string(),
                    data_type: data_type.to_string(),
                    kind: crate::store::ColumnKind::Text,
                    nullable: true,
                    max_chars: None,
                })
                .collect(),
            primary_key: vec!["id".into()],
            unique_keys: vec![],
            referenced_by: vec![],
            unique_columns: vec![],
            foreign_key_columns: vec![],
        };
        table_shape(&"t".parse().unwrap(), &schema)
    }

    #[test]
    fn differences_name_the_column() {
        let before = shape(&[("id", "bigint"), ("phone", "text")]);
        assert!(shape_differences(&before, &before.clone()).is_empty());
        let added = shape(&[("id", "bigint"), ("phone", "text"), ("phone2", "text")]);
        assert_eq!(
            shape_differences(&before, &added),
            ["table t: column phone2 (text) was added"]
        );
        let changed = shape(&[("id", "bigint"), ("phone", "varchar(20)")]);
        assert_eq!(
            shape_differences(&before, &changed),
            ["table t: column phone changed from text NULL to varchar(20) NULL"]
        );
        let dropped = shape(&[("id", "bigint")]);
        assert_eq!(
            shape_differences(&before, &dropped),
            ["table t: column phone was dropped"]
        );
    }

    #[test]
    fn drift_is_a_percentage_and_never_rounds_up() {
        assert_eq!(parse_drift("10%"), Ok(10.0));
        assert_eq!(parse_drift("0"), Ok(0.0));
        assert!(parse_drift("-1%").is_err());
        assert!(parse_drift("lots").is_err());
        assert_eq!(ceiling(100, 0.0), 100);
        assert_eq!(ceiling(100, 10.0), 110);
        assert_eq!(ceiling(7, 10.0), 7);
        assert_eq!(ceiling(0, 50.0), 0);
    }
}
