//! Where each batch's window ends. Windows follow the walk key, so no batch
//! re-reads what an earlier one passed, and they are sized to a time budget
//! (`batch_ms`), so no transaction holds its locks for long whatever the
//! table's rows cost.
//!
//! Along a single integer key, a window is a key range: its end is
//! arithmetic, and finding it reads nothing. Along any other key, the end
//! is the key `size` rows on, found by an index scan.

use std::time::Duration;

use crate::plan::Step;
use crate::store::{ColumnKind, Key, KeyValue, Store, StoreError};

/// The smallest batch the sizing goes down to (rows, or key values).
const MIN_SIZE: u64 = 100;
/// The largest batch counted in rows: the index scan that finds its end
/// must stay short too.
const MAX_ROWS: u64 = 10_000_000;
/// The widest key range: any key space, however sparse, is crossed in a
/// few dozen windows.
const MAX_SPAN: u64 = 1 << 60;
/// How much a batch may grow or shrink from one to the next.
const GROWTH: f64 = 2.0;
const SHRINK: f64 = 0.25;

/// Sizes each batch so that it takes about `target`: after a batch that
/// took `elapsed`, the next is scaled by `target / elapsed`, within bounds.
#[derive(Debug, Clone)]
pub struct Sizer {
    size: u64,
    target: Option<Duration>,
    max: u64,
}

impl Sizer {
    /// `first` is the first batch's size; `batch_ms` = 0 keeps it fixed.
    pub fn new(first: u64, batch_ms: u64, max: u64) -> Sizer {
        Sizer {
            size: first.clamp(1, max),
            target: (batch_ms > 0).then(|| Duration::from_millis(batch_ms)),
            max,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Learns from a committed batch how large the next one should be.
    pub fn record(&mut self, elapsed: Duration) {
        let Some(target) = self.target else {
            return;
        };
        let ratio = target.as_secs_f64() / elapsed.as_secs_f64().max(1e-4);
        let scaled = self.size as f64 * ratio.clamp(SHRINK, GROWTH);
        self.size = (scaled.round() as u64).clamp(MIN_SIZE.min(self.max), self.max);
    }
}

/// Finds the end of each window of one step's run.
pub struct Walk {
    sizer: Sizer,
    /// The last key along an integer walk key; `None` walks by rows.
    last: Option<i128>,
}

impl Walk {
    /// Decides how windows are found. A walk sized by time along a single
    /// integer key goes by key ranges; everything else by rows.
    pub async fn start(store: &mut dyn Store, step: &Step) -> Result<Walk, StoreError> {
        let by_range = step.batch_ms > 0
            && matches!(step.key.as_slice(), [c] if c.kind == ColumnKind::Integer);
        let last = if by_range {
            store.last_key(step).await?.as_deref().and_then(integer)
        } else {
            None
        };
        let max = if last.is_some() { MAX_SPAN } else { MAX_ROWS };
        Ok(Walk {
            sizer: Sizer::new(step.batch_size, step.batch_ms, max),
            last,
        })
    }

    /// The end of the window after `after`; `None` for the last window,
    /// which is open-ended so rows added meanwhile are judged too.
    pub async fn window_end(
        &mut self,
        store: &mut dyn Store,
        step: &Step,
        after: Option<&Key>,
    ) -> Result<Option<Key>, StoreError> {
        let Some(last) = self.last else {
            return store.window_end(step, after, self.sizer.size()).await;
        };
        // The window starts at the next key there is, so a gap in the keys
        // (deleted rows) costs one lookup rather than windows of nothing.
        let Some(next) = store.window_end(step, after, 1).await? else {
            return Ok(None);
        };
        let Some(start) = integer(&next) else {
            return store.window_end(step, after, self.sizer.size()).await;
        };
        let end = start + i128::from(self.sizer.size()) - 1;
        if end < last {
            return Ok(Some(vec![key_value(end)]));
        }
        // Rows may have been added since the walk began: go on to them.
        match store.last_key(step).await?.as_deref().and_then(integer) {
            Some(newest) if end < newest => {
                self.last = Some(newest);
                Ok(Some(vec![key_value(end)]))
            }
            _ => Ok(None),
        }
    }

    /// Learns from a committed batch how large the next one should be.
    pub fn record(&mut self, elapsed: Duration) {
        self.sizer.record(elapsed);
    }
}

fn integer(key: &[KeyValue]) -> Option<i128> {
    match key {
        [KeyValue::Int(i)] => Some(i128::from(*i)),
        [KeyValue::UInt(u)] => Some(i128::from(*u)),
        _ => None,
    }
}

/// A key value between two keys of the table, so within the column's type.
fn key_value(value: i128) -> KeyValue {
    match i64::try_from(value) {
        Ok(i) => KeyValue::Int(i),
        Err(_) => KeyValue::UInt(u64::try_from(value).expect("between two keys of the table")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn batches_grow_to_the_budget_and_shrink_from_it() {
        let mut sizer = Sizer::new(10_000, 100, MAX_ROWS);
        // Fast batches double at most.
        sizer.record(ms(1));
        assert_eq!(sizer.size(), 20_000);
        // Half the budget: double.
        sizer.record(ms(50));
        assert_eq!(sizer.size(), 40_000);
        // On budget: stay.
        sizer.record(ms(100));
        assert_eq!(sizer.size(), 40_000);
        // Twice the budget: halve.
        sizer.record(ms(200));
        assert_eq!(sizer.size(), 20_000);
        // Far over: a quarter at most per batch.
        sizer.record(ms(10_000));
        assert_eq!(sizer.size(), 5_000);
    }

    #[test]
    fn sizes_stay_within_bounds() {
        let mut sizer = Sizer::new(200, 100, 1_000);
        for _ in 0..10 {
            sizer.record(ms(10_000));
        }
        assert_eq!(sizer.size(), MIN_SIZE);
        for _ in 0..10 {
            sizer.record(ms(0));
        }
        assert_eq!(sizer.size(), 1_000);
    }

    #[test]
    fn without_a_budget_every_batch_has_the_same_size() {
        let mut sizer = Sizer::new(500, 0, MAX_ROWS);
        sizer.record(ms(1));
        sizer.record(ms(10_000));
        assert_eq!(sizer.size(), 500);
    }

    #[test]
    fn range_ends_fit_the_key_type() {
        assert_eq!(key_value(5), KeyValue::Int(5));
        assert_eq!(key_value(i128::from(u64::MAX)), KeyValue::UInt(u64::MAX));
    }
}
