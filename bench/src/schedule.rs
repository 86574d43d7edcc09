//! The open-loop schedule. With a target rate, batch `k` of a producer is due at
//! `start + k / batches_per_second`, whether or not earlier batches were acknowledged, and its
//! latency counts from that due time, not from when the producer got round to sending it. A broker
//! that stalls therefore shows its stall in every batch that was due during it (no coordinated
//! omission). Without a rate (closed loop) the due time is the moment of sending.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest single sleep while waiting for a due time, so a stop request is seen promptly.
const SLEEP_SLICE_MAX: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    /// 0 for a closed loop.
    batches_per_second: f64,
}

impl Schedule {
    pub fn open_loop(start: Instant, rate_records_per_second: f64, batch_records: u32) -> Schedule {
        assert!(batch_records > 0);
        Schedule { start, batches_per_second: rate_records_per_second.max(0.0) / batch_records as f64 }
    }

    pub fn closed_loop(start: Instant) -> Schedule {
        Schedule { start, batches_per_second: 0.0 }
    }

    pub fn is_open_loop(&self) -> bool {
        self.batches_per_second > 0.0
    }

    /// When batch `index` is due; `None` in a closed loop (due when sent).
    pub fn due_at(&self, index: u64) -> Option<Instant> {
        if !self.is_open_loop() {
            return None;
        }
        let offset_ns = (index as f64 * 1e9 / self.batches_per_second).round() as u64;
        Some(self.start + Duration::from_nanos(offset_ns))
    }

    /// How far the sender is behind: batches due by `now` that have not been sent yet.
    pub fn backlog(&self, sent: u64, now: Instant) -> u64 {
        if !self.is_open_loop() {
            return 0;
        }
        let due = (now.saturating_duration_since(self.start).as_secs_f64() * self.batches_per_second).floor() as u64 + 1;
        due.saturating_sub(sent)
    }
}

/// Latency of a request, counted from when it was due.
pub fn latency_ns(due: Instant, completed: Instant) -> u64 {
    completed.saturating_duration_since(due).as_nanos().min(u64::MAX as u128) as u64
}

/// Sleeps until `until` unless `stop` is raised first. Returns false if stopped.
pub fn sleep_until(until: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(SLEEP_SLICE_MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_due_times_follow_the_rate() {
        let start = Instant::now();
        // 1000 records/s in batches of 10 = 100 batches/s, one every 10 ms.
        let schedule = Schedule::open_loop(start, 1000.0, 10);
        assert!(schedule.is_open_loop());
        assert_eq!(schedule.due_at(0), Some(start));
        assert_eq!(schedule.due_at(5), Some(start + Duration::from_millis(50)));
        assert_eq!(schedule.due_at(100), Some(start + Duration::from_secs(1)));
        // Far into a long run the schedule does not drift.
        assert_eq!(schedule.due_at(360_000), Some(start + Duration::from_secs(3600)));
    }

    #[test]
    fn latency_counts_from_the_due_time_not_the_send_time() {
        let start = Instant::now();
        let schedule = Schedule::open_loop(start, 1000.0, 10);
        let due = schedule.due_at(5).unwrap(); // 50 ms
                                               // The producer was held up and sent at 75 ms; the ack came at 80 ms.
        let _sent = start + Duration::from_millis(75);
        let acked = start + Duration::from_millis(80);
        assert_eq!(latency_ns(due, acked), 30_000_000);
        // At 80 ms, batches 0..=8 are due; with 6 sent, 3 are behind.
        assert_eq!(schedule.backlog(6, acked), 3);
        // A completion before the due time (clock skew between threads) is zero, not negative.
        assert_eq!(latency_ns(due, start), 0);
    }

    #[test]
    fn closed_loop_has_no_due_times() {
        let schedule = Schedule::closed_loop(Instant::now());
        assert!(!schedule.is_open_loop());
        assert_eq!(schedule.due_at(3), None);
        assert_eq!(schedule.backlog(0, Instant::now()), 0);
    }

    #[test]
    fn sleep_until_returns_early_on_stop() {
        let stop = AtomicBool::new(true);
        assert!(!sleep_until(Instant::now() + Duration::from_secs(60), &stop));
        let go = AtomicBool::new(false);
        assert!(sleep_until(Instant::now() + Duration::from_millis(1), &go));
    }
}
