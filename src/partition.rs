//! Expired partitions dropped whole. For a table partitioned by range on a
//! delete rule's event column, a partition whose whole range is due (its
//! bounds prove every value it can hold is before the due bound, and none
//! is a NULL or a date that means "no date") goes in one short step:
//! counted, dropped, and audited with its row count like a batch. The
//! partition that straddles the bound, a DEFAULT or MAXVALUE partition and
//! the first MariaDB partition (which holds NULL events) are left to the
//! batches, row by row, as is every table whose rule looks at more than
//! the event (holds, `where`, joins, cascades) or that foreign keys
//! reference.

use crate::audit::{self, AuditEntry};
use crate::pseudonym::HmacKey;
use crate::step::{Moment, Step};
use crate::store::{Partitioning, RangePartition, Store, StoreError};

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
            }));
        }
        Partitioning::Range(partitions) => partitions,
    };
    let row_by_row = match &step.rows_only {
        Some(reason) => Some(reason.clone()),
        None if !store.may_drop_partitions(&step.table).await? => Some(
            "this role may not drop its partitions (PostgreSQL: it must own the table and its partitions; MariaDB: it needs ALTER and DROP on the table)"
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
    }))
}

/// Drops one partition with its audit row (made by `entry` from the rows
/// counted): in one transaction where DDL is transactional (PostgreSQL);
/// on MariaDB, whose DDL commits by itself, the audit row follows at once.
/// The rows dropped, or `None` when the partition changed or went since it
/// was judged (then nothing changed).
pub async fn drop_with_audit(
    store: &mut dyn Store,
    step: &Step,
    partition: &RangePartition,
    entry: impl FnOnce(u64) -> AuditEntry,
    audit_key: Option<&HmacKey>,
) -> Result<Option<u64>, StoreError> {
    let alone = store.partition_ddl_commits();
    if !alone {
        store.begin().await?;
    }
    let dropped = match store.drop_partition(&step.table, partition).await {
        Ok(Some(rows)) => {
            if alone {
                store.begin().await?;
            }
            audit::append(store, entry(rows), audit_key)
                .await
                .map(|_| Some(rows))
        }
        other => other,
    };
    match dropped {
        Ok(Some(rows)) => {
            store.commit().await?;
            Ok(Some(rows))
        }
        Ok(None) if alone => Ok(None),
        result => {
            if let Err(err) = store.rollback().await {
                tracing::warn!(error = %err, "rollback failed; the connection will be dropped");
            }
            result
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
