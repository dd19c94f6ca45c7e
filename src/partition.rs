//! Expired partitions dropped whole. For a table partitioned by range on a
//! delete rule's event column, a partition whose whole range is due (its
//! bounds prove every value it can hold is before the due bound, and none
//! is a NULL or a date that means "no date") is taken out of the table in
//! one short step (no scan under the table's lock), then counted where no
//! insert reaches it, dropped, and audited with its row count like a
//! batch; a run interrupted in between leaves it held, and the next run
//! finishes it. The
//! partition that straddles the bound, a DEFAULT or MAXVALUE partition and
//! the first MariaDB partition (which holds NULL events) are left to the
//! batches, row by row, as is every table whose rule looks at more than
//! the event (holds, `where`, joins, cascades) or that foreign keys
//! reference.

use std::time::Instant;

use crate::audit::{self, AuditEntry};
use crate::pseudonym::HmacKey;
use crate::step::{Moment, Step};
use crate::store::{HeldPartition, Partitioning, RangePartition, Store, StoreError};

/// One partition and what a run does with it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub partition: RangePartition,
    /// Its whole range is due: the run drops it.
    pub drop: bool,
    /// Why it is purged row by row instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
    /// Its rows, counted for the dry run (only partitions to drop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// What a run does with a partitioned table's partitions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Survey {
    /// Why no partition is dropped whole, if so: the rule looks at more
    /// than the event, the table is partitioned another way, or the role
    /// may not drop partitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_by_row: Option<String>,
    pub partitions: Vec<Verdict>,
    /// Partitions an interrupted run took out of the table and did not
    /// drop: a run finishes them first (unless it purges row by row).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldPartition>,
}

impl Survey {
    /// The partitions a run drops whole, in order.
    pub fn to_drop(&self) -> impl Iterator<Item = &Verdict> {
        self.partitions.iter().filter(|v| v.drop)
    }
}

/// `a <= b`, when both are of one kind (the event column's).
fn at_or_before(a: &Moment, b: &Moment) -> Option<bool> {
    match (a, b) {
        (Moment::Date(a), Moment::Date(b)) => Some(a <= b),
        (Moment::Timestamp(a), Moment::Timestamp(b)) => Some(a <= b),
        (Moment::Instant(a), Moment::Instant(b)) => Some(a <= b),
        _ => None,
    }
}

/// Whether every value `partition` can hold is due under `step`'s
/// condition; else why not.
pub fn judge(step: &Step, partition: &RangePartition) -> Result<(), String> {
    if partition.default {
        return Err("the DEFAULT partition, which also holds NULL events".into());
    }
    if partition.nested {
        return Err("it is partitioned further".into());
    }
    let Some(to) = &partition.to else {
        return Err("it has no upper bound that could be read".into());
    };
    let Some(from) = &partition.from else {
        return Err(
            "it has no lower bound, so it may hold NULL events or dates that mean no date".into(),
        );
    };
    let due = &step.due;
    let unproven = || "its bounds cannot be compared with the due bound".to_string();
    if !at_or_before(to, &due.bound).ok_or_else(unproven)? {
        return Err(if at_or_before(&due.bound, from).ok_or_else(unproven)? {
            "none of its range is due yet".into()
        } else {
            "it straddles the due bound".into()
        });
    }
    if !at_or_before(&due.floor, from).ok_or_else(unproven)? {
        return Err(format!(
            "it may hold dates before {}, which mean no date",
            due.floor
        ));
    }
    for (empty_from, empty_to) in &due.empty_ranges {
        // [from, to) and [empty_from, empty_to) are disjoint.
        let disjoint = at_or_before(to, empty_from).ok_or_else(unproven)?
            || at_or_before(empty_to, from).ok_or_else(unproven)?;
        if !disjoint {
            return Err(format!(
                "it may hold {empty_from}, a date that means no date"
            ));
        }
    }
    Ok(())
}

/// How a delete step's run would treat its table: `None` when it is not
/// partitioned (or the step keeps its rows: nothing to drop). With
/// `count`, the partitions to drop are counted (the dry run shows their
/// rows).
pub async fn survey(
    store: &mut dyn Store,
    step: &Step,
    count: bool,
) -> Result<Option<Survey>, StoreError> {
    let (true, Some(event)) = (step.action.is_delete(), step.due.event.single()) else {
        return Ok(None);
    };
    let partitions = match store.range_partitions(&step.table, event).await? {
        Partitioning::None => return Ok(None),
        Partitioning::Other(how) => {
            return Ok(Some(Survey {
                row_by_row: Some(format!(
                    "it is partitioned by {how}, not by range on {}",
                    event.name
                )),
                partitions: Vec::new(),
                held: Vec::new(),
            }));
        }
        Partitioning::Range(partitions) => partitions,
    };
    let held = store
        .held_partitions(&step.table, &step.table.to_string())
        .await?;
    let row_by_row = match &step.rows_only {
        Some(reason) => Some(reason.clone()),
        None if !store.may_drop_partitions(&step.table).await? => Some(
            "this role may not drop its partitions (PostgreSQL: it must own the table and its partitions; MariaDB: it needs ALTER and DROP on the table, CREATE, INSERT, SELECT and DROP on its database for the table that holds a partition's rows until they are dropped, and MariaDB 10.7 or later)"
                .into(),
        ),
        None => None,
    };
    let mut verdicts = Vec::new();
    for partition in partitions {
        let judged = match &row_by_row {
            Some(_) => Err(String::new()),
            None => judge(step, &partition),
        };
        let rows = match (&judged, count) {
            (Ok(()), true) => Some(store.count_partition(&step.table, &partition).await?),
            _ => None,
        };
        verdicts.push(Verdict {
            partition,
            drop: judged.is_ok(),
            kept_because: judged.err().filter(|why| !why.is_empty()),
            rows,
        });
    }
    Ok(Some(Survey {
        row_by_row,
        partitions: verdicts,
        held,
    }))
}

/// What an audit row about a partition dropped whole says.
pub struct Record<'a> {
    /// Its rows: 0 in an intent row.
    pub rows: u64,
    pub held: &'a HeldPartition,
    pub stage: Stage,
}

/// Which audit row of a partition dropped whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before it is taken out, where that commits by itself (MariaDB): a
    /// crash after it leaves the held table, which the next run finds by
    /// this row.
    Intent,
    /// Its rows counted, in the transaction that drops it (PostgreSQL) or
    /// just before the drop (MariaDB).
    Dropped,
    /// As `Dropped`, by a run finishing what an interrupted one began.
    Recovered,
}

/// Drops one partition with its audit rows (made by `entry`): takes it out
/// of the table (a short lock on the table, no scan), then counts the
/// held rows, which no insert reaches any more, and drops them with the
/// count audited. Where DDL is transactional (PostgreSQL) the take-out and
/// the drop are a transaction each; on MariaDB, whose DDL commits by
/// itself, an intent row goes first and the count's row before the drop,
/// so a crash at any point leaves evidence and the next run finishes the
/// held table ([`finish_held`]); a try again after a lock timeout says
/// `intent_written`. The rows dropped, or `None` when the partition
/// changed or went since it was judged (then nothing changed).
pub async fn drop_with_audit(
    store: &mut dyn Store,
    step: &Step,
    partition: &RangePartition,
    entry: &(dyn Fn(Record<'_>) -> AuditEntry + Sync),
    audit_key: Option<&HmacKey>,
    intent_written: bool,
) -> Result<Option<u64>, StoreError> {
    let alone = store.partition_ddl_commits();
    let held = HeldPartition {
        held: store.held_table(&step.table, partition),
        partition: partition.name.to_string(),
        bounds: partition.bounds.clone(),
        audited: false,
    };
    if alone && !intent_written {
        append_alone(store, entry, &held, 0, Stage::Intent, audit_key).await?;
    } else if !alone {
        store.begin().await?;
    }
    let started = Instant::now();
    let taken = store
        .take_out_partition(&step.table, partition, &held.held)
        .await;
    if !alone {
        match &taken {
            // Not taken out unless committed.
            Ok(Some(_)) => store.commit().await?,
            _ => {
                if let Err(err) = store.rollback().await {
                    tracing::warn!(error = %err, "rollback failed; the connection will be dropped");
                }
            }
        }
    }
    let Some(held) = taken? else {
        return Ok(None);
    };
    tracing::debug!(partition = %held.partition, ms = started.elapsed().as_millis() as u64, "partition taken out of its table");
    finish_held(store, &held, entry, Stage::Dropped, audit_key)
        .await
        .map(Some)
}

/// Counts a held partition, audits the count and drops it: in one
/// transaction where DDL is transactional; else the audit row first, so
/// that no crash drops rows its audit row does not count (a held table
/// whose row is written is dropped by the next run). The rows counted
/// now: 0 when an earlier run audited them.
pub async fn finish_held(
    store: &mut dyn Store,
    held: &HeldPartition,
    entry: &(dyn Fn(Record<'_>) -> AuditEntry + Sync),
    stage: Stage,
    audit_key: Option<&HmacKey>,
) -> Result<u64, StoreError> {
    let started = Instant::now();
    if held.audited {
        store.drop_held(&held.held).await?;
        return Ok(0);
    }
    if store.partition_ddl_commits() {
        let rows = store.count_held(&held.held).await?;
        tracing::debug!(partition = %held.partition, rows, ms = started.elapsed().as_millis() as u64, "held partition counted");
        append_alone(store, entry, held, rows, stage, audit_key).await?;
        store.drop_held(&held.held).await?;
        return Ok(rows);
    }
    store.begin().await?;
    let dropped = async {
        let rows = store.count_held(&held.held).await?;
        tracing::debug!(partition = %held.partition, rows, ms = started.elapsed().as_millis() as u64, "held partition counted");
        audit::append(store, entry(Record { rows, held, stage }), audit_key).await?;
        store.drop_held(&held.held).await?;
        Ok(rows)
    }
    .await;
    match dropped {
        Ok(rows) => {
            store.commit().await?;
            Ok(rows)
        }
        Err(err) => {
            if let Err(rollback) = store.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection will be dropped");
            }
            Err(err)
        }
    }
}

/// Appends one audit row in a transaction of its own.
async fn append_alone(
    store: &mut dyn Store,
    entry: &(dyn Fn(Record<'_>) -> AuditEntry + Sync),
    held: &HeldPartition,
    rows: u64,
    stage: Stage,
    audit_key: Option<&HmacKey>,
) -> Result<(), StoreError> {
    store.begin().await?;
    match audit::append(store, entry(Record { rows, held, stage }), audit_key).await {
        Ok(_) => store.commit().await,
        Err(err) => {
            if let Err(rollback) = store.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection will be dropped");
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Combine, TableRef};
    use crate::schema::{Column, ColumnKind};
    use crate::step::{DueCondition, Event, EventSource, StepAction};
    use chrono::NaiveDate;

    fn day(y: i32, m: u32, d: u32) -> Moment {
        Moment::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    fn due(bound: Moment, empty: Vec<(Moment, Moment)>) -> DueCondition {
        let column = Column {
            name: "logged_on".into(),
            data_type: "date".into(),
            kind: ColumnKind::Date,
            nullable: true,
            max_chars: None,
        };
        DueCondition {
            event: Event {
                sources: vec![EventSource::Own(column)],
                combine: Combine::Latest,
                kind: ColumnKind::Date,
            },
            bound,
            empty_ranges: empty,
            floor: day(1900, 1, 1),
        }
    }

    fn partition(from: Option<Moment>, to: Option<Moment>) -> RangePartition {
        RangePartition {
            name: TableRef::new(None, "p"),
            bounds: String::new(),
            from,
            to,
            default: false,
            nested: false,
        }
    }

    fn judged(due: &DueCondition, p: &RangePartition) -> Result<(), String> {
        let mut step = crate::store::sql::tests::step(StepAction::Delete);
        step.due = due.clone();
        judge(&step, p)
    }

    #[test]
    fn only_partitions_wholly_before_the_bound_go() {
        let due = due(day(2026, 5, 15), vec![]);
        let month = |m| partition(Some(day(2026, m, 1)), Some(day(2026, m + 1, 1)));
        assert_eq!(judged(&due, &month(3)), Ok(()));
        // Ends exactly at the bound: every value is before it.
        assert_eq!(
            judged(
                &due,
                &partition(Some(day(2026, 4, 15)), Some(day(2026, 5, 15)))
            ),
            Ok(())
        );
        assert_eq!(
            judged(&due, &month(5)),
            Err("it straddles the due bound".into())
        );
        assert_eq!(
            judged(&due, &month(6)),
            Err("none of its range is due yet".into())
        );
        assert!(judged(&due, &partition(None, Some(day(2026, 2, 1)))).is_err());
        assert!(judged(&due, &partition(Some(day(2026, 1, 1)), None)).is_err());
        let mut default = month(3);
        default.default = true;
        assert!(judged(&due, &default).is_err());
        let mut nested = month(3);
        nested.nested = true;
        assert!(judged(&due, &nested).is_err());
    }

    #[test]
    fn placeholder_dates_keep_a_partition() {
        let empty = vec![(day(1999, 12, 31), day(2000, 1, 1))];
        let due = due(day(2026, 5, 15), empty);
        let year = |y| partition(Some(day(y, 1, 1)), Some(day(y + 1, 1, 1)));
        assert!(judged(&due, &year(1999)).is_err());
        assert_eq!(judged(&due, &year(2000)), Ok(()));
        assert!(
            judged(
                &due,
                &partition(Some(day(1800, 1, 1)), Some(day(1950, 1, 1)))
            )
            .is_err()
        );
        // A bound of another kind proves nothing.
        let ts = Moment::Timestamp(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().into());
        assert!(judged(&due, &partition(Some(ts), Some(ts))).is_err());
    }
}
