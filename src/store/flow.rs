//! The statement sequences every SQL store runs the same way: compiling a
//! step's statements, the counts of a dry run, batch windows, and one batch
//! (a single statement; or capture, cascades, then the rows themselves; or
//! read, tokens and IP prefixes computed here, write back). Stores supply
//! how a statement is compiled, executed and its results read
//! ([`Statements`]); the order of statements is decided only here, and
//! [`super::Store`]'s default methods run these sequences.

use async_trait::async_trait;

use super::sql::{self, BatchStatements, Dialect, Query, TokenRow};
use super::{Changed, Column, Counts, Key, KeyEnd, KeyValue, StoreError, Window};
use crate::pseudonym::HmacKey;
use crate::step::{Moment, Step};

/// One engine's [`Statements`], as [`super::Store::sql`] hands them to the
/// store's default methods; opaque outside the store module.
pub struct Sql<'a>(pub(crate) &'a mut dyn Statements);

/// What the shared sequences need of one engine's connection.
#[async_trait]
pub(crate) trait Statements: Send {
    fn dialect(&self) -> &'static dyn Dialect;

    /// Compiles `q` without running it.
    async fn compile(&mut self, context: &str, q: &Query<'_>) -> Result<(), StoreError>;

    /// Executes `q`; the number of rows it changed.
    async fn affected(&mut self, context: &str, q: &Query<'_>) -> Result<u64, StoreError>;

    /// The first row of `q`'s result, each value a count.
    async fn numbers(&mut self, context: &str, q: &Query<'_>) -> Result<Vec<u64>, StoreError>;

    /// Every row of `q`'s result, each value read as `columns` type it
    /// (keys selected as [`Dialect::key_select`] gives them); NULL is `None`.
    async fn values(
        &mut self,
        context: &str,
        q: &Query<'_>,
        columns: &[Column],
    ) -> Result<Vec<Vec<Option<KeyValue>>>, StoreError>;

    /// Every row of `q`'s result as a key of `columns`.
    async fn keys(
        &mut self,
        context: &str,
        q: &Query<'_>,
        columns: &[Column],
    ) -> Result<Vec<Key>, StoreError> {
        let rows = self.values(context, q, columns).await?;
        rows.into_iter()
            .map(|row| row.into_iter().collect::<Option<Key>>())
            .collect::<Option<Vec<Key>>>()
            .ok_or_else(|| {
                StoreError::invalid(self.store_name(), context, "a key value is NULL".into())
            })
    }

    fn store_name(&self) -> &str;

    /// Starts (`true`) or ends (`false`, rolling back) a read-only
    /// transaction, in which no statement can write, whatever it calls.
    async fn read_only(&mut self, on: bool) -> Result<(), StoreError>;
}

/// Compiles every statement the step can run, so a bad `where` or hold is
/// reported by `check`, not halfway through a run.
pub(crate) async fn prepare(store: &mut dyn Statements, step: &Step) -> Result<(), StoreError> {
    for (context, q) in sql::statements_to_prepare(store.dialect(), step) {
        store.compile(context, &q).await?;
    }
    Ok(())
}

/// The dry-run counts: one statement for the step's table, one per cascade,
/// in a read-only transaction: a rule's `where` or `open` cannot write
/// during a dry run, whatever function it calls.
pub(crate) async fn count(store: &mut dyn Statements, step: &Step) -> Result<Counts, StoreError> {
    store.read_only(true).await?;
    let counted = count_statements(store, step).await;
    let ended = store.read_only(false).await;
    let counts = counted?;
    ended?;
    Ok(counts)
}

/// The forecast's counts, one per bound, read-only as the counts are.
pub(crate) async fn forecast(
    store: &mut dyn Statements,
    step: &Step,
    bounds: &[Moment],
) -> Result<Vec<u64>, StoreError> {
    if bounds.is_empty() {
        return Ok(Vec::new());
    }
    store.read_only(true).await?;
    let q = sql::forecast(store.dialect(), step, bounds);
    let counted = store.numbers("forecast", &q).await;
    let ended = store.read_only(false).await;
    let counts = counted?;
    ended?;
    Ok(counts)
}

async fn count_statements(store: &mut dyn Statements, step: &Step) -> Result<Counts, StoreError> {
    let statements = sql::count(store.dialect(), step);
    let main = store.numbers("count", &statements.main).await?;
    let mut cascaded = Vec::new();
    for query in &statements.cascades {
        let numbers = store.numbers("cascade count", query).await?;
        cascaded.push(numbers.first().copied().unwrap_or_default());
    }
    Ok(Counts::assemble(step, &main, &cascaded))
}

/// The key `rows` rows after `after`, or `None` when fewer remain.
pub(crate) async fn window_end(
    store: &mut dyn Statements,
    step: &Step,
    after: Option<&Key>,
    rows: u64,
) -> Result<Option<Key>, StoreError> {
    let q = sql::window_end(store.dialect(), step, after, rows);
    first_key(store, step, &q).await
}

/// The largest key in the table.
pub(crate) async fn last_key(
    store: &mut dyn Statements,
    step: &Step,
) -> Result<Option<Key>, StoreError> {
    let q = sql::last_key(store.dialect(), step);
    first_key(store, step, &q).await
}

/// The smallest or largest key among the rows a batch would change.
pub(crate) async fn due_key(
    store: &mut dyn Statements,
    step: &Step,
    end: KeyEnd,
) -> Result<Option<Key>, StoreError> {
    let q = sql::due_key(store.dialect(), step, end);
    first_key(store, step, &q).await
}

async fn first_key(
    store: &mut dyn Statements,
    step: &Step,
    q: &Query<'_>,
) -> Result<Option<Key>, StoreError> {
    Ok(store.keys("window", q, &step.key).await?.into_iter().next())
}

/// One batch, inside the transaction the caller opened.
pub(crate) async fn mutate(
    store: &mut dyn Statements,
    step: &Step,
    window: &Window,
    key: Option<&HmacKey>,
    limit: Option<u64>,
) -> Result<Changed, StoreError> {
    let mut changed = Changed::none(step);
    let reached = |rows: usize| limit.is_some_and(|limit| rows as u64 >= limit);
    match sql::batch(store.dialect(), step, window, limit) {
        BatchStatements::Single(q) => {
            changed.rows = store.affected("batch", &q).await?;
            changed.limited = reached(changed.rows as usize);
        }
        BatchStatements::Counted(q) => {
            let counts = store.numbers("batch", &q).await?;
            let [picked, rows] = counts[..] else {
                return Err(StoreError::invalid(
                    store.store_name(),
                    "batch",
                    format!("{} counts where two were expected", counts.len()),
                ));
            };
            changed.rows = rows;
            changed.limited = reached(picked as usize);
        }
        BatchStatements::Captured { capture, columns } => {
            let captured = store.keys("capture", &capture, &columns).await?;
            changed.limited = reached(captured.len());
            if changed.limited {
                changed.resume_after = captured.last().map(|row| row[..step.key.len()].to_vec());
            }
            for (target, q) in sql::captured_deletes(store.dialect(), step, &captured) {
                changed.add(target, store.affected("cascade", &q).await?);
            }
        }
        BatchStatements::Tokens { read, columns } => {
            let changes = sql::worker_changes(step).expect("a step with worker values");
            if key.is_none() && changes.iter().any(|c| c.token.is_some()) {
                return Err(StoreError::Config {
                    store: step.store.clone(),
                    message: format!(
                        "rule {} pseudonymises but no HMAC key is loaded",
                        step.rule_id
                    ),
                });
            }
            let started = std::time::Instant::now();
            let read = store.values("read", &read, &columns).await?;
            let read_ms = started.elapsed().as_millis() as u64;
            changed.limited = reached(read.len());
            let rows = worker_values(step, key, read).ok_or_else(|| {
                StoreError::invalid(store.store_name(), "read", "a key value is NULL".into())
            })?;
            if rows.is_empty() {
                return Ok(changed);
            }
            if changed.limited {
                changed.resume_after = rows.last().map(|row| row.key.clone());
            }
            let computed = std::time::Instant::now();
            let writes = sql::token_writes(store.dialect(), step, window, &rows);
            let statements = writes.len();
            for q in writes {
                changed.rows += store.affected("batch", &q).await?;
            }
            // Where a batch's time goes; counts and times only, no values.
            tracing::debug!(
                rule = %step.rule_id,
                read = rows.len(),
                read_ms,
                compute_ms = ((computed - started).as_millis() as u64).saturating_sub(read_ms),
                write_ms = computed.elapsed().as_millis() as u64,
                statements,
                "pseudonymise batch"
            );
        }
    }
    Ok(changed)
}

/// The new values for rows read as key then the columns the worker
/// computes: a value that is NULL, already a token or already an IP prefix
/// stays (`None`). `None` when a key value is NULL.
fn worker_values(
    step: &Step,
    key: Option<&HmacKey>,
    read: Vec<Vec<Option<KeyValue>>>,
) -> Option<Vec<TokenRow>> {
    let changes = sql::worker_changes(step).expect("a step with worker values");
    let key_len = step.key.len();
    read.into_iter()
        .map(|mut row| {
            let values = row.split_off(key_len);
            let tokens = values
                .into_iter()
                .zip(&changes)
                .map(|(value, change)| change.worker_value(key, &value?.to_string()))
                .collect();
            Some(TokenRow {
                key: row.into_iter().collect::<Option<Key>>()?,
                tokens,
            })
        })
        .collect()
}
