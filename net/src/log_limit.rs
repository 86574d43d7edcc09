//! Rate limits a warning that repeats once per connection (a hostile client opening hundreds of
//! connections must not write hundreds of log lines): per kind, the first event of a window is
//! logged at once, the rest of the window only counted, and the count goes out in one summary line
//! when the window ends. At most about one line per kind per [`LOG_WINDOW`]; nothing is lost.
//!
//! ```text
//!   events   x  x x xx x        x          x x
//!   lines    L ──────────── S   L ──────── S        L: logged at once  S: "N more" summary
//!            |<- LOG_WINDOW ->| |<- window ->|
//! ```
//!
//! Pure bookkeeping (the caller passes the time and schedules the summary). Lives on one shard.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// How often each kind of repeated warning may be logged, per shard.
pub const LOG_WINDOW: Duration = Duration::from_secs(5);

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it now; `suppressed` events before it were counted and not yet reported.
    Log { suppressed: u64 },
    /// Counted. `summary_at` is set for the first event counted in a window: the caller then asks
    /// [`LogLimiter::summary`] at that time.
    Counted { summary_at: Option<Instant> },
}

/// Events counted in a window, and the last one's description.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub suppressed: u64,
    pub last: String,
}

#[derive(Debug, Default)]
struct Kind {
    /// When the current window started (the time of the last line logged).
    window_start: Option<Instant>,
    suppressed: u64,
    last: String,
    summary_pending: bool,
}

/// Per-kind windows for one shard's repeated warnings. Lives on that shard (`ShardContext`).
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    kinds: RefCell<Vec<Kind>>,
}

impl LogLimiter {
    pub fn new(kind_count: usize, window: Duration) -> LogLimiter {
        LogLimiter { window, kinds: RefCell::new((0..kind_count).map(|_| Kind::default()).collect()) }
    }

    /// One event of `kind` at `now`; `describe` is called only for an event that is counted.
    pub fn admit(&self, kind: usize, now: Instant, describe: impl FnOnce() -> String) -> Admit {
        let mut kinds = self.kinds.borrow_mut();
        let state = &mut kinds[kind];
        let window_over = state.window_start.is_none_or(|start| now >= start + self.window);
        if window_over {
            state.window_start = Some(now);
            return Admit::Log { suppressed: std::mem::take(&mut state.suppressed) };
        }
        state.suppressed += 1;
        state.last = describe();
        if state.summary_pending {
            return Admit::Counted { summary_at: None };
        }
        state.summary_pending = true;
        Admit::Counted { summary_at: state.window_start.map(|start| start + self.window) }
    }

    /// The events counted since the last line, if any; the summary line starts a new window.
    pub fn summary(&self, kind: usize, now: Instant) -> Option<Summary> {
        let mut kinds = self.kinds.borrow_mut();
        let state = &mut kinds[kind];
        state.summary_pending = false;
        if state.suppressed == 0 {
            return None;
        }
        state.window_start = Some(now);
        Some(Summary { suppressed: std::mem::take(&mut state.suppressed), last: std::mem::take(&mut state.last) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(5);

    #[test]
    fn a_burst_is_one_line_and_one_summary_with_every_event_counted() {
        let limiter = LogLimiter::new(2, WINDOW);
        let start = Instant::now();
        assert_eq!(limiter.admit(0, start, || unreachable!()), Admit::Log { suppressed: 0 });
        let summary_at = start + WINDOW;
        assert_eq!(limiter.admit(0, start, || "peer 1".into()), Admit::Counted { summary_at: Some(summary_at) });
        for index in 2..500 {
            let at = start + Duration::from_millis(index);
            assert_eq!(limiter.admit(0, at, || format!("peer {index}")), Admit::Counted { summary_at: None });
        }
        // Another kind has its own window.
        assert_eq!(limiter.admit(1, start, || unreachable!()), Admit::Log { suppressed: 0 });
        assert_eq!(limiter.summary(0, summary_at), Some(Summary { suppressed: 499, last: "peer 499".into() }));
        // The summary started a window: the next event in it is counted, and reported later.
        let later = summary_at + Duration::from_secs(1);
        assert_eq!(limiter.admit(0, later, || "peer 500".into()), Admit::Counted { summary_at: Some(summary_at + WINDOW) });
        assert_eq!(limiter.admit(0, summary_at + WINDOW, || unreachable!()), Admit::Log { suppressed: 1 });
        assert_eq!(limiter.summary(0, summary_at + WINDOW), None, "the line above reported it");
    }

    #[test]
    fn events_a_window_apart_are_each_logged() {
        let limiter = LogLimiter::new(1, WINDOW);
        let start = Instant::now();
        for index in 0..5 {
            assert_eq!(limiter.admit(0, start + WINDOW * index, || unreachable!()), Admit::Log { suppressed: 0 });
        }
        assert_eq!(limiter.summary(0, start + WINDOW * 5), None);
    }
}
