//! State shared between the reporting thread and the worker threads of one run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stats::{Counters, LatencyRecorder};

/// Failures kept for the report; later ones are only counted.
const FAILURES_KEPT_MAX: usize = 16;

pub struct Shared {
    /// Producers stop sending.
    pub stop_producers: AtomicBool,
    /// Consumers stop fetching.
    pub stop_consumers: AtomicBool,
    /// A worker hit an error it cannot continue after; the run ends.
    pub fatal: AtomicBool,
    pub produced: Counters,
    pub consumed: Counters,
    pub produce_latency: LatencyRecorder,
    pub e2e_latency: LatencyRecorder,
    pub workers_running: AtomicUsize,
    /// Consumers that reached their stop offsets (catch-up).
    pub consumers_caught_up: AtomicUsize,
    /// When the last consumer reached its stop offsets.
    caught_up_at: Mutex<Option<Instant>>,
    failures: Mutex<Vec<String>>,
    /// Broker error codes seen in responses, with counts.
    broker_errors: Mutex<Vec<(i16, u64)>>,
    /// A common origin for both clocks: `realtime_ns_at(instant)` converts a due time into the
    /// wall-clock stamp consumers compare against.
    pub origin: Instant,
    pub origin_realtime_ns: u64,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            stop_producers: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
            produced: Counters::default(),
            consumed: Counters::default(),
            produce_latency: LatencyRecorder::default(),
            e2e_latency: LatencyRecorder::default(),
            workers_running: AtomicUsize::new(0),
            consumers_caught_up: AtomicUsize::new(0),
            caught_up_at: Mutex::new(None),
            failures: Mutex::new(Vec::new()),
            broker_errors: Mutex::new(Vec::new()),
            origin: Instant::now(),
            origin_realtime_ns: crate::batch::realtime_ns(),
        }
    }

    pub fn realtime_ns_at(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.origin).as_nanos() as u64;
        self.origin_realtime_ns + since
    }

    pub fn fail(&self, what: String) {
        self.fatal.store(true, Ordering::SeqCst);
        self.stop_producers.store(true, Ordering::SeqCst);
        self.stop_consumers.store(true, Ordering::SeqCst);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() < FAILURES_KEPT_MAX {
            failures.push(what);
        }
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn note_broker_error(&self, code: i16) {
        let mut errors = self.broker_errors.lock().unwrap_or_else(|p| p.into_inner());
        match errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, count)) => *count += 1,
            None => errors.push((code, 1)),
        }
    }

    pub fn broker_errors(&self) -> Vec<(i16, u64)> {
        self.broker_errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn note_caught_up(&self) {
        let now = Instant::now();
        let mut at = self.caught_up_at.lock().unwrap_or_else(|p| p.into_inner());
        *at = Some(at.map_or(now, |earlier| earlier.max(now)));
        self.consumers_caught_up.fetch_add(1, Ordering::SeqCst);
    }

    pub fn caught_up_at(&self) -> Option<Instant> {
        *self.caught_up_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::Relaxed)
    }

    /// Waits until every worker has returned, or `deadline`.
    pub fn wait_workers(&self, deadline: Instant) -> bool {
        while self.workers_running.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Default for Shared {
    fn default() -> Shared {
        Shared::new()
    }
}

/// Spawns a worker thread that counts itself in `workers_running` and turns its error into a
/// run failure.
pub fn spawn_worker<F>(
    shared: &std::sync::Arc<Shared>,
    name: String,
    core: Option<core_affinity::CoreId>,
    work: F,
) -> crate::error::Result<()>
where
    F: FnOnce() -> crate::error::Result<()> + Send + 'static,
{
    shared.workers_running.fetch_add(1, Ordering::SeqCst);
    let shared_for_thread = std::sync::Arc::clone(shared);
    let thread_name = name.clone();
    let spawned = std::thread::Builder::new().name(thread_name).spawn(move || {
        if let Some(core) = core {
            core_affinity::set_for_current(core);
        }
        if let Err(e) = work() {
            shared_for_thread.fail(format!("{name}: {e}"));
        }
        shared_for_thread.workers_running.fetch_sub(1, Ordering::SeqCst);
    });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => {
            shared.workers_running.fetch_sub(1, Ordering::SeqCst);
            Err(crate::error::BenchError::io("spawning a worker thread", e))
        }
    }
}
