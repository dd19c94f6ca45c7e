//! The statement sequences every SQL store runs the same way: the counts of
//! a dry run, and one batch (a single statement, or capture, cascades, then
//! the rows themselves). Stores supply how a statement is executed and how
//! its results are read; the order of statements is decided only here.

use async_trait::async_trait;

use super::sql::{self, BatchStatements, Dialect, Query};
use super::{Changed, Column, Counts, Key, StoreError, Window};
use crate::plan::Step;
use crate::pseudonym::PadBlocks;

/// What the shared sequences need of one engine's connection.
#[async_trait]
pub(crate) trait Statements: Send {
    fn dialect(&self) -> &'static dyn Dialect;

    /// Executes `q`; the number of rows it changed.
    async fn affected(&mut self, context: &str, q: &Query<'_>) -> Result<u64, StoreError>;

    /// The first row of `q`'s result, each value a count.
    async fn numbers(&mut self, context: &str, q: &Query<'_>) -> Result<Vec<u64>, StoreError>;

    /// Every row of `q`'s result as a key of `columns` (selected as
    /// [`Dialect::key_select`] gives them).
    async fn keys(
        &mut self,
        context: &str,
        q: &Query<'_>,
        columns: &[Column],
    ) -> Result<Vec<Key>, StoreError>;
}

/// The dry-run counts: one statement for the step's table, one per cascade.
pub(crate) async fn count(store: &mut impl Statements, step: &Step) -> Result<Counts, StoreError> {
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
    store: &mut impl Statements,
    step: &Step,
    after: Option<&Key>,
    rows: u64,
) -> Result<Option<Key>, StoreError> {
    let q = sql::window_end(store.dialect(), step, after, rows);
    first_key(store, step, &q).await
}

/// The largest key in the table.
pub(crate) async fn last_key(
    store: &mut impl Statements,
    step: &Step,
) -> Result<Option<Key>, StoreError> {
    let q = sql::last_key(store.dialect(), step);
    first_key(store, step, &q).await
}

async fn first_key(
    store: &mut impl Statements,
    step: &Step,
    q: &Query<'_>,
) -> Result<Option<Key>, StoreError> {
    Ok(store.keys("window", q, &step.key).await?.into_iter().next())
}

/// One batch, inside the transaction the caller opened.
pub(crate) async fn mutate(
    store: &mut impl Statements,
    step: &Step,
    window: &Window,
    blocks: Option<&PadBlocks>,
) -> Result<Changed, StoreError> {
    let mut changed = Changed::none(step);
    match sql::batch(store.dialect(), step, window, blocks) {
        BatchStatements::Single(q) => changed.rows = store.affected("batch", &q).await?,
        BatchStatements::Captured { capture, columns } => {
            let captured = store.keys("capture", &capture, &columns).await?;
            for (target, q) in sql::captured_deletes(store.dialect(), step, &captured) {
                changed.add(target, store.affected("cascade", &q).await?);
            }
        }
    }
    Ok(changed)
}
