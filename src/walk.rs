//! Where each batch's window ends. Windows follow the walk key, so no batch
//! re-reads what an earlier one passed, and they are sized to a time budget
//! (`batch_ms`), so no transaction holds its locks for long whatever the
//! table's rows cost.
//!
//! Along any key, a window can end at the key `n` rows on, found by an
//! index scan of those `n` entries. Along a single integer key, on a server
//! that estimates rows (PostgreSQL, MySQL/MariaDB), a window is a key range
//! instead: its size is checked against the planner's estimate of the rows
//! in it, which costs a plan rather than a scan, and a stretch of keys much
//! denser than the last never lands in one batch.
//!
//! A window is sized by the rows it holds, due or not; how many of them are
//! due is not known until the batch runs. So the rows one batch may change
//! are sized too, from batches that changed many: a window larger than that
//! is given it as a limit. A batch that reaches its limit leaves the rest
//! of its window for the next, smaller one (after the last row it took, or,
//! when one statement changed the rows and cannot say where it stopped, the
//! same window again), so a long run of rows that are not due, then a dense
//! block of due ones, never makes one long transaction.

use std::time::Duration;

use crate::step::Step;
use crate::store::{Column, ColumnKind, Key, KeyEnd, KeyValue, Store, StoreError, Window};

/// The smallest batch the sizing goes down to, in rows, unless the first
/// batch was set smaller.
const MIN_ROWS: u64 = 100;
/// The largest: the index scan that finds a window's end must stay short too.
const MAX_ROWS: u64 = 10_000_000;
/// How much the batch size may grow or shrink from one batch to the next.
const GROWTH: f64 = 2.0;
const SHRINK: f64 = 0.25;
/// A batch may change this share (numerator, denominator) of the rows one
/// batch should change before it stops at its limit.
const LIMIT_HEADROOM: (u64, u64) = (3, 2);
/// The most rows the first batch that changes rows may change, unless the
/// batch size is smaller; later batches are sized by their time.
const FIRST_CHANGES: u64 = 1_000;
/// Estimates taken to size one key range.
const MAX_PROBES: usize = 4;
/// The most rows (numerator, denominator of the batch size) a key range is
/// expected to hold when it is chosen. Close to one: a window expected to
/// hold twice the batch size is a transaction twice the budget, and after a
/// slow batch the next window must shrink as the sizing says.
const MAX_OVER: (u64, u64) = (5, 4);

/// Sizes batches, in rows, so that each takes about `target`.
#[derive(Debug, Clone)]
pub struct Sizer {
    rows: u64,
    min: u64,
    target: Option<Duration>,
}

impl Sizer {
    /// `first` is the first batch's rows; `batch_ms` = 0 keeps it fixed.
    pub fn new(first: u64, batch_ms: u64) -> Sizer {
        let rows = first.clamp(1, MAX_ROWS);
        Sizer {
            rows,
            min: MIN_ROWS.min(rows),
            target: (batch_ms > 0).then(|| Duration::from_millis(batch_ms)),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// At most `rows`, at least the floor.
    fn shrink_to(&mut self, rows: u64) {
        self.rows = self.rows.min(rows).max(self.min);
    }

    /// Learns from a committed batch of about `rows` rows that took
    /// `elapsed`. A batch well short of the size (the table's end, a
    /// sparse stretch) says nothing about how many rows fit the budget,
    /// unless it was too slow even so.
    pub fn record(&mut self, rows: u64, elapsed: Duration) {
        let Some(target) = self.target else {
            return;
        };
        let slow = elapsed > target;
        if !slow && rows < self.rows / 2 {
            return;
        }
        let fitting = rows as f64 * target.as_secs_f64() / elapsed.as_secs_f64().max(1e-4);
        let current = self.rows as f64;
        let next = fitting.clamp(current * SHRINK, current * GROWTH);
        let next = if slow { next.min(current) } else { next };
        self.rows = (next.round() as u64).clamp(self.min, MAX_ROWS);
    }
}

/// Finds the end of each window of one step's run.
pub struct Walk {
    sizer: Sizer,
    /// Sizes the rows one batch may change.
    changes: Sizer,
    range: Option<Range>,
    /// Where the due rows end, along a single integer key, until the walk
    /// has passed there.
    due_end: Option<DueEnd>,
    /// Just before the first due row, along a single integer key, until
    /// the walk has begun: the rows before it need nothing, and passing
    /// them in the first batch would make its transaction long.
    due_start: Option<i128>,
    /// The rows of the last window, when its batch stopped at its limit.
    limited_rows: Option<u64>,
    /// A window a batch stopped in without saying where (one limited
    /// statement): its end and rows, handed out again next.
    unfinished: Option<(Option<Key>, u64)>,
    /// The rows of the window handed out last, when it was an unfinished one.
    again_rows: Option<u64>,
}

/// Where the rows due when the walk began end, along a single integer key.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DueEnd {
    /// The last due key; `None`: no row was due.
    last_due: Option<i128>,
    /// The table's last key. Past the last due key the walk jumps here, and
    /// its last window, open-ended, judges the rows added since.
    last: i128,
}

impl DueEnd {
    /// Where a window must end at the latest: the last due key, when rows
    /// that were not due follow it.
    fn window_limit(&self) -> Option<i128> {
        self.last_due.filter(|&due| due < self.last)
    }
}

/// A walk along a single integer key by key ranges.
struct Range {
    /// The last key, as last read.
    last: i128,
    /// Key values in the next window, before it is checked.
    span: i128,
    /// The estimated rows of the window handed out last.
    estimate: u64,
}

impl Walk {
    /// Decides how windows are found: by key range where the batches are
    /// sized by time, the key is a single integer and the server estimates
    /// rows; by rows otherwise.
    pub async fn start(store: &mut dyn Store, step: &Step) -> Result<Walk, StoreError> {
        let mut walk = Walk::by_rows(step.batch_size, step.batch_ms);
        let integer_key = matches!(step.key.as_slice(), [c] if c.kind == ColumnKind::Integer);
        let last = if integer_key {
            store.last_key(step).await?.as_deref().and_then(integer)
        } else {
            None
        };
        if let Some(last) = last {
            walk.due_start = store
                .due_key(step, KeyEnd::First)
                .await?
                .as_deref()
                .and_then(integer)
                .map(|first| first - 1);
            walk.due_end = match store.due_key(step, KeyEnd::Last).await? {
                None => Some(DueEnd {
                    last_due: None,
                    last,
                }),
                // Not an integer after all (SQLite stores what it is given):
                // walk the whole table.
                Some(key) => integer(&key).map(|due| DueEnd {
                    last_due: Some(due),
                    last,
                }),
            };
        }
        if may_walk_by_range(step.batch_ms, &step.key)
            && let Some(last) = last
            && store
                .estimate_rows(step, &Window::default())
                .await?
                .is_some()
        {
            walk.range = Some(Range {
                last,
                span: i128::from(walk.sizer.rows()),
                estimate: 0,
            });
        }
        Ok(walk)
    }

    /// A walk by rows, knowing nothing yet of where the due rows are.
    fn by_rows(batch_size: u64, batch_ms: u64) -> Walk {
        Walk {
            sizer: Sizer::new(batch_size, batch_ms),
            // Changing a row costs far more than passing it: the first
            // batch that meets a dense block of due rows must not be one
            // long transaction, so the changes start small and grow with
            // evidence.
            changes: Sizer::new(batch_size.min(FIRST_CHANGES), batch_ms),
            range: None,
            due_end: None,
            due_start: None,
            limited_rows: None,
            unfinished: None,
            again_rows: None,
        }
    }

    /// Where the walk goes on from `after`: at the start it skips to just
    /// before the first due row; past the last due row it skips
    /// the rest of the table as it was when the walk began (`Some`: the key
    /// to go on after), once, so the last window judges only rows added
    /// since. A row added meanwhile behind that point, or behind the walk,
    /// is judged by the next run.
    pub fn skip(&mut self, after: Option<&Key>) -> Option<Key> {
        let skipped = self.skip_to(after);
        if skipped.is_some() {
            self.unfinished = None;
        }
        skipped
    }

    fn skip_to(&mut self, after: Option<&Key>) -> Option<Key> {
        if let Some(start) = self.due_start.take()
            && after.is_none()
        {
            return Some(vec![key_value(start)]);
        }
        let end = self.due_end?;
        let position = match after {
            Some(key) => Some(integer(key)?),
            None => None,
        };
        let passed = match (end.last_due, position) {
            (None, _) => true,
            (Some(due), Some(position)) => position >= due,
            (Some(_), None) => false,
        };
        if !passed {
            return None;
        }
        self.due_end = None;
        position
            .is_none_or(|position| position < end.last)
            .then(|| vec![key_value(end.last)])
    }

    /// The end of the window after `after`; `None` for the last window,
    /// which is open-ended so rows added meanwhile are judged too.
    pub async fn window_end(
        &mut self,
        store: &mut dyn Store,
        step: &Step,
        after: Option<&Key>,
    ) -> Result<Option<Key>, StoreError> {
        if let Some(end) = self.again() {
            return Ok(end);
        }
        let limit = self.due_end.and_then(|end| end.window_limit());
        let end = self.range_end(store, step, after, limit).await?;
        let Some(limit) = limit else {
            return Ok(end);
        };
        // No window reaches past the last due row.
        Ok(match end.as_deref().map(integer) {
            Some(Some(end)) if end <= limit => Some(vec![key_value(end)]),
            Some(None) => end,
            _ => Some(vec![key_value(limit)]),
        })
    }

    /// The end of the window after `after`, by key range where the walk
    /// goes by ranges, with the walk ending at `limit` if given.
    async fn range_end(
        &mut self,
        store: &mut dyn Store,
        step: &Step,
        after: Option<&Key>,
        limit: Option<i128>,
    ) -> Result<Option<Key>, StoreError> {
        if self.range.is_none() {
            return store.window_end(step, after, self.sizer.rows()).await;
        }
        // The window starts at the next key there is, so a gap in the keys
        // (rows deleted long ago) costs one lookup.
        let Some(next) = store.window_end(step, after, 1).await? else {
            return Ok(None);
        };
        let Some(start) = integer(&next) else {
            // Not an integer after all (SQLite stores what it is given).
            self.range = None;
            return store.window_end(step, after, self.sizer.rows()).await;
        };
        let goal = self.sizer.rows();
        let range = self.range.as_mut().expect("checked above");
        if limit.is_none() && start + range.span > range.last {
            // Rows may have been added since the walk began.
            if let Some(newest) = store.last_key(step).await?.as_deref().and_then(integer) {
                range.last = newest;
            }
        }
        let mut search = match limit {
            Some(limit) => {
                RangeSearch::new(start, limit.min(range.last), range.span, goal).closed()
            }
            None => RangeSearch::new(start, range.last, range.span, goal),
        };
        while let Some(end) = search.next_look() {
            let window = Window {
                after: after.cloned(),
                through: end.map(|end| vec![key_value(end)]),
            };
            match store.estimate_rows(step, &window).await? {
                Some(rows) => search.observe(rows),
                None => break,
            }
        }
        let choice = search.finish();
        range.span = choice.span;
        range.estimate = choice.estimate;
        Ok(choice.end.map(|end| vec![key_value(end)]))
    }

    /// A batch stopped at its limit in the window ending at `end` and did not
    /// say where (one limited statement: a delete, or a change made in SQL).
    /// The rows it changed are no longer due, so the same window is handed
    /// out again, limited again, rather than a narrower one that holds only
    /// the rows just changed: an empty batch, and a walk over them twice.
    pub fn unfinished(&mut self, end: Option<Key>) {
        if let Some(rows) = self.limited_rows {
            self.unfinished = Some((end, rows));
        }
    }

    /// The unfinished window's end, once, if a batch left one.
    fn again(&mut self) -> Option<Option<Key>> {
        let (end, rows) = self.unfinished.take().unzip();
        self.again_rows = rows;
        end
    }

    /// The rows the window handed out last holds, as far as known.
    fn window_rows(&self) -> u64 {
        if let Some(rows) = self.again_rows {
            return rows;
        }
        match &self.range {
            Some(range) => range.estimate,
            None => self.sizer.rows(),
        }
    }

    /// The most rows the next batch may change, when its window could hold
    /// more than that; `None` for fixed-size batches, whose window already
    /// bounds them. It is above the rows a batch should change, so that a
    /// window sized to hold about that many due rows is not cut short by
    /// chance, and below what would make a long transaction.
    pub fn limit(&self) -> Option<u64> {
        self.sizer.target?;
        let cap = self.changes.rows() * LIMIT_HEADROOM.0 / LIMIT_HEADROOM.1;
        (self.window_rows() > cap).then_some(cap)
    }

    /// Learns from a committed batch how large the next one should be:
    /// `changed` rows in `elapsed`, and whether it stopped at its limit.
    pub fn record(&mut self, elapsed: Duration, changed: u64, limited: bool) {
        if changed > 0 {
            self.changes.record(changed, elapsed);
        }
        let window = self.window_rows();
        self.limited_rows = limited.then_some(window);
        if !limited {
            self.sizer.record(window, elapsed);
            return;
        }
        // The batch stopped at its limit somewhere in its window, so its
        // time says nothing about the window's rows. The window held more
        // due rows than a batch should change: the next ones hold fewer
        // rows, in proportion, so they hold about as many due rows as a
        // batch should change.
        let rows = (u128::from(window) * u128::from(self.changes.rows())
            / u128::from(changed.max(1))) as u64;
        if let Some(range) = &mut self.range
            && range.estimate > rows
        {
            range.span = (range.span * i128::from(rows) / i128::from(range.estimate)).max(1);
        }
        self.sizer.shrink_to(rows);
    }
}

/// Whether windows may be key ranges (if the server also estimates rows):
/// batches sized by time along a single integer key. Fixed-size batches keep
/// exactly their size, which only an index scan of that many rows gives.
fn may_walk_by_range(batch_ms: u64, key: &[Column]) -> bool {
    batch_ms > 0 && matches!(key, [c] if c.kind == ColumnKind::Integer)
}

/// The key range a window covers.
#[derive(Debug, Clone, PartialEq)]
struct RangeChoice {
    /// The window's last key; `None`: open-ended, to the table's end.
    end: Option<i128>,
    /// The span to start from next time.
    span: i128,
    /// The rows the planner expects in it.
    estimate: u64,
}

/// Picks the window from key `start` on (the table's last key is `last`)
/// that the planner expects to hold between half and [`MAX_OVER`] `goal` rows:
/// starting from `span` keys, narrowed or widened in proportion to each
/// estimate, a few looks at most. A window expected to hold too many rows
/// is never chosen, unless it is a single key.
struct RangeSearch {
    start: i128,
    last: i128,
    /// The walk ends at `last` rather than the table: a window reaching it
    /// is estimated up to it, not to the table's end.
    closed: bool,
    span: i128,
    goal: u64,
    looks: usize,
    done: bool,
    chosen: Option<RangeChoice>,
}

impl RangeSearch {
    fn new(start: i128, last: i128, span: i128, goal: u64) -> RangeSearch {
        RangeSearch {
            start,
            last,
            closed: false,
            span: span.max(1),
            goal,
            looks: 0,
            done: false,
            chosen: None,
        }
    }

    fn closed(self) -> RangeSearch {
        RangeSearch {
            closed: true,
            ..self
        }
    }

    fn end(&self) -> i128 {
        self.start + self.span - 1
    }

    /// The window to estimate next (`Some(None)`: open-ended), or `None`
    /// when the search is over.
    fn next_look(&self) -> Option<Option<i128>> {
        if self.done || self.looks == MAX_PROBES {
            return None;
        }
        let end = self.end();
        if self.closed {
            return Some(Some(end.min(self.last)));
        }
        Some((end < self.last).then_some(end))
    }

    /// The planner expects `rows` rows in the window [`Self::next_look`] gave.
    fn observe(&mut self, rows: u64) {
        self.looks += 1;
        let end = self.end();
        let open = end >= self.last;
        let keys = end.min(self.last) - self.start + 1;
        let goal = i128::from(self.goal);
        if rows > self.goal.saturating_mul(MAX_OVER.0) / MAX_OVER.1 && keys > 1 {
            // Too many rows: narrow it in proportion, and look again.
            self.span = (keys * goal / i128::from(rows)).max(1);
            return;
        }
        self.chosen = Some(RangeChoice {
            end: (!open).then_some(end),
            span: self.span,
            estimate: rows,
        });
        if open || rows >= self.goal / 2 {
            self.done = true;
            return;
        }
        // Too few: widen in proportion (at most eightfold), and look again.
        self.span = keys * (goal / i128::from(rows.max(1))).clamp(2, 8);
    }

    fn finish(self) -> RangeChoice {
        self.chosen.unwrap_or(RangeChoice {
            // Every look found too many rows: the narrowest window, one key.
            end: Some(self.start),
            span: 1,
            estimate: self.goal,
        })
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
        let mut sizer = Sizer::new(10_000, 100);
        // Fast batches double at most.
        sizer.record(10_000, ms(1));
        assert_eq!(sizer.rows(), 20_000);
        // Half the budget: double.
        sizer.record(20_000, ms(50));
        assert_eq!(sizer.rows(), 40_000);
        // On budget: stay.
        sizer.record(40_000, ms(100));
        assert_eq!(sizer.rows(), 40_000);
        // Twice the budget: halve.
        sizer.record(40_000, ms(200));
        assert_eq!(sizer.rows(), 20_000);
        // Far over: a quarter at most per batch.
        sizer.record(20_000, ms(10_000));
        assert_eq!(sizer.rows(), 5_000);
    }

    /// The edges of "slow" and "short": a batch that took exactly the
    /// budget is not slow (a larger window than the size may grow it), and
    /// one of exactly half the size still teaches the sizing.
    #[test]
    fn on_budget_is_not_slow_and_half_a_batch_teaches() {
        let mut sizer = Sizer::new(10_000, 100);
        sizer.record(15_000, ms(100));
        assert_eq!(sizer.rows(), 15_000);
        let mut sizer = Sizer::new(10_000, 100);
        sizer.record(5_000, ms(25));
        assert_eq!(sizer.rows(), 20_000);
    }

    /// Past the last due key no window reaches on, unless the table ends there.
    #[test]
    fn the_due_rows_end_limits_windows_only_before_the_table_end() {
        let end = |last_due, last| DueEnd { last_due, last };
        assert_eq!(end(Some(5), 10).window_limit(), Some(5));
        assert_eq!(end(Some(10), 10).window_limit(), None);
        assert_eq!(end(None, 10).window_limit(), None);
    }

    #[test]
    fn short_batches_teach_nothing_unless_they_were_slow() {
        let mut sizer = Sizer::new(10_000, 100);
        // A few rows at the end of the table, quickly: no reason to shrink.
        sizer.record(300, ms(2));
        assert_eq!(sizer.rows(), 10_000);
        // A few rows, slowly (say, a lock wait): shrink all the same.
        sizer.record(300, ms(400));
        assert_eq!(sizer.rows(), 2_500);
    }

    #[test]
    fn sizes_stay_within_bounds() {
        let mut sizer = Sizer::new(200, 100);
        for _ in 0..10 {
            let rows = sizer.rows();
            sizer.record(rows, ms(10_000));
        }
        assert_eq!(sizer.rows(), MIN_ROWS);
        for _ in 0..40 {
            let rows = sizer.rows();
            sizer.record(rows, ms(0));
        }
        assert_eq!(sizer.rows(), MAX_ROWS);
    }

    #[test]
    fn a_small_first_batch_is_never_made_larger_by_slowness() {
        let mut sizer = Sizer::new(10, 100);
        sizer.record(10, ms(1_000));
        assert_eq!(sizer.rows(), 10);
    }

    #[test]
    fn without_a_budget_every_batch_has_the_same_size() {
        let mut sizer = Sizer::new(500, 0);
        sizer.record(500, ms(1));
        sizer.record(500, ms(10_000));
        assert_eq!(sizer.rows(), 500);
    }

    /// Runs a search against exact row counts of a key layout.
    fn search(
        start: i128,
        last: i128,
        span: i128,
        goal: u64,
        rows_in: impl Fn(i128, i128) -> u64,
    ) -> RangeChoice {
        let mut search = RangeSearch::new(start, last, span, goal);
        while let Some(end) = search.next_look() {
            search.observe(rows_in(start, end.unwrap_or(last)));
        }
        search.finish()
    }

    /// 300 keys a million apart, then 100,000 consecutive keys.
    fn sparse_then_dense(from: i128, to: i128) -> u64 {
        let dense_start = 301_000_000;
        let sparse = (1..=300_i128)
            .map(|k| k * 1_000_000)
            .filter(|k| (from..=to).contains(k))
            .count() as u64;
        let dense = (to.min(dense_start + 99_999) - from.max(dense_start) + 1).max(0) as u64;
        sparse + dense
    }

    #[test]
    fn a_dense_stretch_after_a_sparse_one_is_not_swallowed() {
        // The span that fit the sparse stretch reaches far into the dense one.
        let choice = search(
            250_000_000,
            301_099_999,
            1_000_000_000,
            1_000,
            sparse_then_dense,
        );
        let end = choice.end.expect("not the last window");
        assert!(end >= 250_000_000, "{choice:?}");
        assert!(sparse_then_dense(250_000_000, end) <= 2_000, "{choice:?}");
    }

    /// A slow batch halves the goal: the span that fit the old goal must
    /// not be taken as it is, or the next transaction is as long again.
    #[test]
    fn after_a_slow_batch_the_next_key_range_shrinks_too() {
        let dense = |from: i128, to: i128| (to - from + 1) as u64;
        let choice = search(1, 1_000_000, 40_000, 20_000, dense);
        assert!((10_000..=25_000).contains(&choice.estimate), "{choice:?}");
    }

    #[test]
    fn a_narrow_start_widens_to_the_goal() {
        let dense = |from: i128, to: i128| (to - from + 1) as u64;
        let choice = search(1, 1_000_000, 100, 10_000, dense);
        let end = choice.end.unwrap();
        assert!((5_000..=20_000).contains(&end), "{choice:?}");
    }

    #[test]
    fn the_last_window_is_open_ended_when_the_rest_fits() {
        let dense = |from: i128, to: i128| (to - from + 1) as u64;
        let choice = search(990_001, 1_000_000, 20_000, 10_000, dense);
        assert_eq!(choice.end, None, "{choice:?}");
        // More than twice the goal left: not yet.
        let choice = search(900_001, 1_000_000, 500_000, 10_000, dense);
        assert!(choice.end.is_some(), "{choice:?}");
    }

    /// A table whose rows cost `scan_us` each to read, and `change_us`
    /// more each if due, a share `due` of them, give or take `jitter` (a
    /// share of that, one batch more, the next less); a batch costs
    /// `fixed_ms` besides (its commit).
    #[derive(Clone, Copy)]
    struct Model {
        scan_us: f64,
        change_us: f64,
        fixed_ms: f64,
        due: f64,
        jitter: f64,
    }

    /// One batch of `walk` over `model` (plus `extra_ms`, a hiccup), as the
    /// run would see it: (window rows, rows changed, ms, limited).
    fn batch(walk: &mut Walk, model: Model, extra_ms: f64) -> (u64, u64, f64, bool) {
        let window = walk.window_rows();
        let jitter = if window.is_multiple_of(2) {
            model.jitter
        } else {
            -model.jitter
        };
        let due = (window as f64 * model.due * (1.0 + jitter)).round() as u64;
        let limit = walk.limit();
        let limited = limit.is_some_and(|limit| due >= limit);
        let changed = limit.map_or(due, |limit| due.min(limit));
        let read = if limited {
            changed as f64 / model.due / (1.0 + jitter)
        } else {
            window as f64
        };
        let ms = model.fixed_ms
            + (read * model.scan_us + changed as f64 * model.change_us) / 1000.0
            + extra_ms;
        walk.record(Duration::from_secs_f64(ms / 1000.0), changed, limited);
        (window, changed, ms, limited)
    }

    fn timed_walk(first: u64) -> Walk {
        Walk::by_rows(first, 100)
    }

    /// Half the rows due, tokens computed in the worker: a few µs a row.
    const PSEUDONYMISE: Model = Model {
        scan_us: 0.5,
        change_us: 6.0,
        fixed_ms: 2.0,
        due: 0.5,
        jitter: 0.05,
    };

    #[test]
    fn batches_of_evenly_spread_due_rows_settle_on_the_budget() {
        let mut walk = timed_walk(10_000);
        for _ in 0..10 {
            batch(&mut walk, PSEUDONYMISE, 0.0);
        }
        // Every batch near the budget, none cut short by its limit (which
        // made every other batch half as long).
        for _ in 0..20 {
            let (window, changed, ms, limited) = batch(&mut walk, PSEUDONYMISE, 0.0);
            assert!(
                (70.0..=130.0).contains(&ms) && !limited,
                "{window} rows, {changed} changed, {ms:.0} ms, limited: {limited}"
            );
        }
    }

    #[test]
    fn batches_grow_back_after_one_slow_batch() {
        let model = Model {
            scan_us: 0.3,
            change_us: 5.0,
            fixed_ms: 4.0,
            due: 0.5,
            jitter: 0.05,
        };
        let mut walk = timed_walk(10_000);
        for _ in 0..15 {
            batch(&mut walk, model, 0.0);
        }
        let settled = walk.window_rows();
        // A hiccup (a checkpoint, a purge) doubles one batch's time.
        batch(&mut walk, model, 100.0);
        assert!(walk.window_rows() < settled * 3 / 4);
        for _ in 0..4 {
            batch(&mut walk, model, 0.0);
        }
        let rows = walk.window_rows();
        assert!(
            rows * 10 >= settled * 9,
            "{settled} rows before the slow batch, {rows} after"
        );
    }

    #[test]
    fn a_dense_stretch_after_a_sparse_one_stays_within_the_bound() {
        let sparse = Model {
            due: 0.01,
            ..PSEUDONYMISE
        };
        let dense = Model {
            due: 1.0,
            ..PSEUDONYMISE
        };
        let mut walk = timed_walk(10_000);
        for _ in 0..20 {
            batch(&mut walk, sparse, 0.0);
        }
        for _ in 0..10 {
            let (window, changed, ms, limited) = batch(&mut walk, dense, 0.0);
            assert!(
                ms <= 200.0,
                "{window} rows, {changed} changed, {ms:.0} ms, limited: {limited}"
            );
        }
    }

    fn walk_with(due_end: Option<DueEnd>) -> Walk {
        Walk {
            sizer: Sizer::new(100, 100),
            changes: Sizer::new(100, 100),
            range: None,
            due_end,
            due_start: None,
            limited_rows: None,
            unfinished: None,
            again_rows: None,
        }
    }

    fn key(value: i64) -> Key {
        vec![KeyValue::Int(value)]
    }

    #[test]
    fn past_the_last_due_row_the_walk_skips_to_the_tables_end_once() {
        let end = DueEnd {
            last_due: Some(300),
            last: 3000,
        };
        let mut walk = walk_with(Some(end));
        assert_eq!(walk.skip(None), None);
        assert_eq!(walk.skip(Some(&key(299))), None);
        assert_eq!(walk.skip(Some(&key(300))), Some(key(3000)));
        // Once: the rows added past the old end are walked as usual.
        assert_eq!(walk.skip(Some(&key(3000))), None);
        assert_eq!(walk.skip(Some(&key(5000))), None);
    }

    #[test]
    fn the_walk_starts_just_before_the_first_due_row_once() {
        let mut walk = walk_with(Some(DueEnd {
            last_due: Some(3000),
            last: 5000,
        }));
        walk.due_start = Some(1999);
        assert_eq!(walk.skip(None), Some(key(1999)));
        assert_eq!(walk.skip(Some(&key(1999))), None);
        // Once: a walk that begins again (none does) would not skip.
        assert_eq!(walk.skip(None), None);
        assert_eq!(walk.skip(Some(&key(3000))), Some(key(5000)));
    }

    /// The first batch that changes rows may change few, whatever the
    /// window's size; later ones as many as fit the budget.
    #[test]
    fn the_first_changes_are_few_and_grow_with_fast_batches() {
        let mut walk = Walk::by_rows(10_000, 100);
        assert_eq!(walk.sizer.rows(), 10_000);
        assert_eq!(walk.changes.rows(), FIRST_CHANGES);
        assert_eq!(walk.limit(), Some(with_headroom(FIRST_CHANGES)));
        walk.record(ms(10), with_headroom(FIRST_CHANGES), true);
        assert_eq!(walk.changes.rows(), 2 * FIRST_CHANGES);
        // A smaller batch size is the bound itself.
        assert_eq!(Walk::by_rows(300, 100).changes.rows(), 300);
        assert_eq!(Walk::by_rows(300, 100).limit(), None);
    }

    #[test]
    fn with_nothing_due_the_walk_starts_at_the_tables_end() {
        let mut walk = walk_with(Some(DueEnd {
            last_due: None,
            last: 3000,
        }));
        assert_eq!(walk.skip(None), Some(key(3000)));
        // Due rows to the table's end: nothing to skip, the last window is
        // open-ended as before.
        let mut walk = walk_with(Some(DueEnd {
            last_due: Some(3000),
            last: 3000,
        }));
        assert_eq!(walk.skip(Some(&key(3000))), None);
        assert_eq!(
            DueEnd {
                last_due: Some(3000),
                last: 3000
            }
            .window_limit(),
            None
        );
    }

    #[test]
    fn a_window_that_reaches_the_last_due_row_is_estimated_up_to_it() {
        let dense = |from: i128, to: i128| (to - from + 1) as u64;
        let mut search = RangeSearch::new(1, 5_000, 2_000, 10_000).closed();
        let mut looks = Vec::new();
        while let Some(end) = search.next_look() {
            let end = end.expect("a closed search never looks open-ended");
            looks.push(end);
            search.observe(dense(1, end));
        }
        assert_eq!(looks.last(), Some(&5_000), "{looks:?}");
        assert_eq!(search.finish().end, None);
    }

    #[test]
    fn range_ends_fit_the_key_type() {
        assert_eq!(key_value(5), KeyValue::Int(5));
        assert_eq!(key_value(i128::from(u64::MAX)), KeyValue::UInt(u64::MAX));
        assert_eq!(key_value(-3), KeyValue::Int(-3));
        assert_eq!(integer(&[KeyValue::Int(-3)]), Some(-3));
        assert_eq!(
            integer(&[KeyValue::UInt(u64::MAX)]),
            Some(i128::from(u64::MAX))
        );
        assert_eq!(integer(&[KeyValue::Int(1), KeyValue::Int(2)]), None);
    }

    fn column(name: &str, kind: ColumnKind) -> Column {
        Column {
            name: name.to_string(),
            data_type: String::new(),
            kind,
            nullable: false,
            max_chars: None,
        }
    }

    /// Key ranges only where batches are sized by time along one integer
    /// key; SQLite gives no estimates, so this choice is tested here.
    #[test]
    fn key_ranges_only_for_timed_batches_on_one_integer_key() {
        let id = column("id", ColumnKind::Integer);
        let code = column("code", ColumnKind::Text);
        assert!(may_walk_by_range(250, std::slice::from_ref(&id)));
        assert!(may_walk_by_range(1, std::slice::from_ref(&id)));
        assert!(!may_walk_by_range(0, std::slice::from_ref(&id)));
        assert!(!may_walk_by_range(250, std::slice::from_ref(&code)));
        assert!(!may_walk_by_range(250, &[id.clone(), id.clone()]));
        assert!(!may_walk_by_range(250, &[]));
    }

    /// A walk by rows (no estimates) or by key range with an estimate.
    fn walk(first: u64, batch_ms: u64, estimate: Option<u64>) -> Walk {
        let sizer = Sizer::new(first, batch_ms);
        Walk {
            changes: sizer.clone(),
            sizer,
            range: estimate.map(|estimate| Range {
                last: 1_000_000,
                span: 10_000,
                estimate,
            }),
            due_end: None,
            due_start: None,
            limited_rows: None,
            unfinished: None,
            again_rows: None,
        }
    }

    /// What must hold for any adaptation: slow batches shrink the next,
    /// fast ones grow it, and no size leaves its bounds.
    #[test]
    fn walks_shrink_when_slow_and_grow_when_fast() {
        for estimate in [None, Some(10_000)] {
            let mut slow = walk(10_000, 100, estimate);
            slow.record(ms(1_000), 10_000, false);
            assert!(slow.sizer.rows() < 10_000, "{estimate:?}");
            assert!(slow.changes.rows() < 10_000, "{estimate:?}");

            let mut fast = walk(10_000, 100, estimate);
            fast.record(ms(5), 10_000, false);
            assert!(fast.sizer.rows() > 10_000, "{estimate:?}");
            assert!(fast.changes.rows() > 10_000, "{estimate:?}");

            let mut walk = walk(10_000, 100, estimate);
            for _ in 0..60 {
                walk.record(ms(100_000), 10_000, false);
                assert!(walk.sizer.rows() >= MIN_ROWS && walk.changes.rows() >= MIN_ROWS);
            }
            assert_eq!(walk.sizer.rows(), MIN_ROWS, "{estimate:?}");
            for _ in 0..60 {
                walk.record(ms(0), 10_000_000, false);
                assert!(walk.sizer.rows() <= MAX_ROWS && walk.changes.rows() <= MAX_ROWS);
            }
            assert!(walk.sizer.rows() > MIN_ROWS, "{estimate:?}");
        }
    }

    /// A batch that changed nothing says nothing about how many changes fit.
    #[test]
    fn batches_that_change_nothing_leave_the_change_limit() {
        let mut walk = walk(10_000, 100, None);
        walk.record(ms(1_000), 0, false);
        assert!(walk.sizer.rows() < 10_000);
        assert_eq!(walk.changes.rows(), 10_000);
    }

    #[test]
    fn a_limited_batch_narrows_the_windows_to_the_change_limit() {
        // The window held 40,000 rows; the change limit has come down to
        // a quarter of the first 10,000 after slow batches of changes.
        let mut walk = walk(10_000, 100, Some(40_000));
        walk.changes.record(10_000, ms(1_000));
        let cap = walk.changes.rows();
        assert!(cap < 10_000);
        let limit = with_headroom(cap);
        assert_eq!(walk.limit(), Some(limit));
        // A slow batch: the next ones should change fewer rows.
        walk.record(ms(200), limit, true);
        // The window held at least `limit` due rows in 40,000: the next
        // windows hold as many rows as hold a batch's worth of them.
        let rows = 40_000 * walk.changes.rows() / limit;
        assert!(rows < 40_000);
        assert!(walk.sizer.rows() <= rows, "{} > {rows}", walk.sizer.rows());
        let range = walk.range.as_ref().unwrap();
        assert_eq!(range.span, (10_000 * i128::from(rows) / 40_000).max(1));

        // By rows: the next window holds no more than the limit.
        let mut walk = walk_by_rows_limited();
        let limit = walk.limit().unwrap();
        walk.record(ms(200), limit, true);
        let rows = 10_000 * walk.changes.rows() / limit;
        assert!(rows < 10_000);
        assert!(walk.sizer.rows() <= rows.max(MIN_ROWS));
    }

    /// A limited batch that does not say where it stopped leaves its window
    /// to be run again, with a limit, however far its rows shrank the next
    /// windows; once.
    #[test]
    fn a_window_a_limited_statement_left_is_run_again_limited() {
        for estimate in [None, Some(40_000)] {
            let mut walk = walk(10_000, 100, estimate);
            walk.changes.record(10_000, ms(1_000));
            let window = walk.window_rows();
            let limit = walk.limit().expect("a window larger than the limit");
            walk.record(ms(200), limit, true);
            assert!(walk.sizer.rows() < window, "{estimate:?}");
            walk.unfinished(Some(key(5_000)));
            assert_eq!(walk.again(), Some(Some(key(5_000))), "{estimate:?}");
            assert_eq!(walk.window_rows(), window, "{estimate:?}");
            assert_eq!(
                walk.limit(),
                Some(with_headroom(walk.changes.rows())),
                "{estimate:?}"
            );
            assert_eq!(walk.again(), None, "{estimate:?}");
            // A batch that was not limited leaves nothing to run again.
            walk.record(ms(50), 10, false);
            walk.unfinished(Some(key(6_000)));
            assert_eq!(walk.again(), None, "{estimate:?}");
        }
        // Skipping ahead (past the last due row) drops it.
        let mut walk = walk_by_rows_limited();
        let limit = walk.limit().unwrap();
        walk.record(ms(200), limit, true);
        walk.unfinished(Some(key(300)));
        walk.due_end = Some(DueEnd {
            last_due: Some(300),
            last: 3_000,
        });
        assert_eq!(walk.skip(Some(&key(300))), Some(key(3_000)));
        assert_eq!(walk.again(), None);
    }

    fn walk_by_rows_limited() -> Walk {
        let mut walk = walk(10_000, 100, None);
        walk.changes.record(10_000, ms(1_000));
        walk
    }

    #[test]
    fn the_change_limit_applies_only_to_windows_larger_than_it() {
        // Fixed-size batches: the window is the bound.
        assert_eq!(walk(10_000, 0, None).limit(), None);
        assert_eq!(walk(10_000, 0, Some(1_000_000)).limit(), None);
        // Equal: no limit needed; larger: the limit.
        let limit = with_headroom(10_000);
        assert!(limit > 10_000);
        assert_eq!(walk(10_000, 100, None).limit(), None);
        assert_eq!(walk(10_000, 100, Some(limit)).limit(), None);
        assert_eq!(walk(10_000, 100, Some(limit + 1)).limit(), Some(limit));
        assert_eq!(walk(10_000, 100, Some(limit - 1)).limit(), None);
        // A walk by rows hands out windows of the sizer's size.
        let mut by_rows = walk(10_000, 100, None);
        by_rows.changes.record(10_000, ms(1_000));
        assert_eq!(by_rows.limit(), Some(with_headroom(by_rows.changes.rows())));
    }

    /// The change limit a batch gets when it should change `rows`.
    fn with_headroom(rows: u64) -> u64 {
        rows * LIMIT_HEADROOM.0 / LIMIT_HEADROOM.1
    }

    /// The search step by step, each estimate exact: the arithmetic of
    /// narrowing and widening.
    #[test]
    fn range_search_narrows_and_widens_in_proportion() {
        let dense = |from: i128, to: i128| (to - from + 1) as u64;
        // Too few (1,000 of 10,000): widened eightfold at most, then taken.
        let mut search = RangeSearch::new(1, 1_000_000, 1_000, 10_000);
        assert_eq!(search.next_look(), Some(Some(1_000)));
        search.observe(dense(1, 1_000));
        assert_eq!(search.next_look(), Some(Some(8_000)));
        search.observe(dense(1, 8_000));
        assert_eq!(search.next_look(), None);
        assert_eq!(
            search.finish(),
            RangeChoice {
                end: Some(8_000),
                span: 8_000,
                estimate: 8_000
            }
        );
        // Widened by the shortfall when it is less than eightfold.
        let mut search = RangeSearch::new(101, 1_000_000, 1_000, 4_000);
        search.observe(1_000);
        assert_eq!(search.next_look(), Some(Some(100 + 4_000)));
        // At least doubled.
        let mut search = RangeSearch::new(1, 1_000_000, 1_000, 3_000);
        search.observe(1_400);
        assert_eq!(search.next_look(), Some(Some(2_000)));
        // Too many (100,000 of 1,000): narrowed in proportion.
        let mut search = RangeSearch::new(11, 1_000_000, 100_000, 1_000);
        search.observe(dense(11, 100_010));
        assert_eq!(search.next_look(), Some(Some(1_010)));
        search.observe(dense(11, 1_010));
        assert_eq!(search.next_look(), None);
        assert_eq!(
            search.finish(),
            RangeChoice {
                end: Some(1_010),
                span: 1_000,
                estimate: 1_000
            }
        );
        // A quarter more than the goal is taken, no more; half the goal
        // is enough.
        let mut search = RangeSearch::new(1, 1_000_000, 1_250, 1_000);
        search.observe(1_250);
        assert_eq!(search.next_look(), None);
        assert_eq!(search.finish().estimate, 1_250);
        let mut search = RangeSearch::new(1, 1_000_000, 1_251, 1_000);
        search.observe(1_251);
        assert_eq!(search.next_look(), Some(Some(1_000)));
        let mut search = RangeSearch::new(1, 1_000_000, 500, 1_000);
        search.observe(500);
        assert_eq!(search.next_look(), None);
        assert_eq!(search.finish().end, Some(500));
        let mut search = RangeSearch::new(1, 1_000_000, 499, 1_000);
        search.observe(499);
        assert!(search.next_look().is_some());
    }

    #[test]
    fn range_search_ends_at_the_table_end_and_after_a_few_looks() {
        // The rest of the table, fewer rows than the goal: open-ended.
        let mut search = RangeSearch::new(999_001, 1_000_000, 5_000, 10_000);
        assert_eq!(search.next_look(), Some(None));
        search.observe(1_000);
        assert_eq!(search.next_look(), None);
        assert_eq!(
            search.finish(),
            RangeChoice {
                end: None,
                span: 5_000,
                estimate: 1_000
            }
        );
        // The window through the last key is open-ended too.
        let search = RangeSearch::new(999_001, 1_000_000, 1_000, 10_000);
        assert_eq!(search.next_look(), Some(None));
        let search = RangeSearch::new(999_001, 1_000_000, 999, 10_000);
        assert_eq!(search.next_look(), Some(Some(999_999)));
        // Every look too many: a hundredfold narrower each time, four looks,
        // then the narrowest window, the start key alone.
        let mut search = RangeSearch::new(7, i128::from(u32::MAX), 100_000_000, 100);
        let mut looks = 0;
        while search.next_look().is_some() {
            search.observe(10_000);
            looks += 1;
        }
        assert_eq!(looks, MAX_PROBES);
        assert_eq!(
            search.finish(),
            RangeChoice {
                end: Some(7),
                span: 1,
                estimate: 100
            }
        );
        // One key with many rows is taken all the same: it cannot be split.
        let mut search = RangeSearch::new(7, 1_000, 1, 100);
        search.observe(1_000_000);
        assert_eq!(search.next_look(), None);
        assert_eq!(search.finish().end, Some(7));
        // A span below one key is one key.
        assert_eq!(
            RangeSearch::new(7, 1_000, 0, 100).next_look(),
            Some(Some(7))
        );
    }
}
