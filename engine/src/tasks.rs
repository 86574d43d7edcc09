//! A shard's named background tasks, with shutdown tracking (after Iggy's
//! `core/server/src/shard/task_registry/`).
//!
//! ```text
//!  TaskRegistry (one per shard, lives on it)
//!    periodic("retention", 300 s, Background, || pass())   sleep ─┬─ interval ─▶ pass ─▶ sleep …
//!                                                                 └─ stop ──────▶ ends
//!    continuous("name", future)   runs once, watches StopSignal itself
//!    one_shot("name", future)     runs once to completion; shutdown waits for it
//!
//!  shutdown(wait_max): stop signal ─▶ every task ─▶ wait ≤ wait_max ─▶ log any still running
//! ```
//!
//! Tasks stop cooperatively: a periodic task's sleep ends at the stop signal and its work checks
//! [`StopSignal::is_stopping`] between units (partitions). The registry never cancels a task: a
//! task cut at an await point could leave a partition mid-operation (a compaction's flag that
//! `Partition::close` waits for would never clear). One that outlives the wait is named in the log
//! and ends with the shard's executor.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::limits::TASKS_PER_SHARD_MAX;
use crate::rt::{self, Notify};

/// Which task queue a task runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The shard's default queue, with produce and fetch.
    Normal,
    /// The low-share background queue ([`rt::spawn_background`]): yields to produce and fetch.
    Background,
}

/// How a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// One future for the shard's life that watches the [`StopSignal`] itself.
    Continuous,
    /// Its work every `interval` (first after one interval) until the stop signal.
    Periodic { interval: Duration },
    /// One future run to completion.
    OneShot,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Running,
    Finished,
}

/// Whether the shard's tasks have been told to stop. Clones share it; lives on one shard.
#[derive(Clone, Default)]
pub struct StopSignal {
    stopping: Rc<Cell<bool>>,
    stop: Rc<Notify>,
}

impl StopSignal {
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Completes once the stop is signalled (at once if it already was).
    pub async fn stopped(&self) {
        let notified = self.stop.notified();
        if self.is_stopping() {
            return;
        }
        notified.await
    }

    fn signal(&self) {
        self.stopping.set(true);
        self.stop.notify_all();
    }
}

struct Entry {
    name: &'static str,
    kind: TaskKind,
    state: Cell<TaskState>,
}

/// Marks its task finished when the task's future ends or is dropped with the executor.
struct Finishing {
    entry: Rc<Entry>,
    finished: Rc<Notify>,
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.entry.state.set(TaskState::Finished);
        self.finished.notify_all();
    }
}

/// One shard's named tasks. Lives on that shard; not Send.
pub struct TaskRegistry {
    shard_id: usize,
    signal: StopSignal,
    /// Every task registered, finished ones included (their names stay for diagnostics), except
    /// finished one-shot tasks, which make room for new ones.
    entries: RefCell<Vec<Rc<Entry>>>,
    /// Notified whenever a task finishes.
    finished: Rc<Notify>,
}

impl TaskRegistry {
    pub fn new(shard_id: usize) -> TaskRegistry {
        TaskRegistry {
            shard_id,
            signal: StopSignal::default(),
            entries: RefCell::new(Vec::new()),
            finished: Rc::new(Notify::default()),
        }
    }

    /// The stop signal the tasks watch.
    pub fn stop_signal(&self) -> StopSignal {
        self.signal.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.signal.is_stopping()
    }

    /// Runs `work` every `interval` until shutdown; the wait between runs ends at the stop signal,
    /// a run in progress is not cut (it watches [`TaskRegistry::stop_signal`] itself).
    pub fn periodic<W, Fut>(&self, name: &'static str, interval: Duration, priority: Priority, mut work: W)
    where
        W: FnMut() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(!interval.is_zero(), "periodic task {name} needs an interval");
        let signal = self.stop_signal();
        self.spawn(name, TaskKind::Periodic { interval }, priority, async move {
            while !signal.is_stopping() {
                if rt::timeout(interval, signal.stopped()).await.is_some() {
                    break;
                }
                work().await;
            }
        });
    }

    /// Runs `future` for the shard's life; it watches [`TaskRegistry::stop_signal`] to end.
    pub fn continuous(&self, name: &'static str, priority: Priority, future: impl Future<Output = ()> + 'static) {
        self.spawn(name, TaskKind::Continuous, priority, future);
    }

    /// Runs `future` once; shutdown waits for it like for any other task.
    pub fn one_shot(&self, name: &'static str, priority: Priority, future: impl Future<Output = ()> + 'static) {
        self.spawn(name, TaskKind::OneShot, priority, future);
    }

    fn spawn(&self, name: &'static str, kind: TaskKind, priority: Priority, future: impl Future<Output = ()> + 'static) {
        if self.is_stopping() {
            tracing::debug!(shard = self.shard_id, task = name, "task not started: the shard is stopping");
            return;
        }
        let entry = Rc::new(Entry { name, kind, state: Cell::new(TaskState::Running) });
        {
            let mut entries = self.entries.borrow_mut();
            entries.retain(|kept| kept.kind != TaskKind::OneShot || kept.state.get() == TaskState::Running);
            assert!(
                entries.len() < TASKS_PER_SHARD_MAX,
                "shard {} registers more than {TASKS_PER_SHARD_MAX} tasks (adding {name})",
                self.shard_id
            );
            entries.push(entry.clone());
        }
        let finishing = Finishing { entry, finished: self.finished.clone() };
        let task = async move {
            let _finishing = finishing;
            future.await;
        };
        match priority {
            Priority::Normal => rt::spawn_detached(task),
            Priority::Background => rt::spawn_background(task),
        }
    }

    /// Every registered task's name, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.borrow().iter().map(|entry| entry.name).collect()
    }

    /// The names of the tasks still running.
    pub fn running(&self) -> Vec<&'static str> {
        (self.entries.borrow().iter()).filter(|entry| entry.state.get() == TaskState::Running).map(|entry| entry.name).collect()
    }

    /// Signals every task to stop and waits up to `wait_max` for them. Logs, by name, each task
    /// still running then and returns their names; those are left to end with the executor.
    pub async fn shutdown(&self, wait_max: Duration) -> Vec<&'static str> {
        self.signal.signal();
        let started = Instant::now();
        loop {
            let finished = self.finished.notified();
            let running = self.running();
            if running.is_empty() {
                tracing::debug!(shard = self.shard_id, tasks = self.entries.borrow().len(), "tasks stopped");
                return running;
            }
            let left = wait_max.saturating_sub(started.elapsed());
            if left.is_zero() || rt::timeout(left, finished).await.is_none() {
                let waited_ms = started.elapsed().as_millis() as u64;
                for name in &running {
                    tracing::warn!(shard = self.shard_id, task = name, waited_ms, "task did not stop at shutdown");
                }
                return running;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(5);
    const WAIT_MAX: Duration = Duration::from_secs(5);

    #[test]
    fn periodic_task_runs_every_interval_until_shutdown_stops_it() {
        let (runs_at_stop, runs_after, running, stragglers) = rt::run_local(|| async {
            let registry = TaskRegistry::new(0);
            let runs = Rc::new(Cell::new(0u32));
            let counted = runs.clone();
            registry.periodic("counter", TICK, Priority::Background, move || {
                counted.set(counted.get() + 1);
                async {}
            });
            while runs.get() < 3 {
                rt::sleep(TICK).await;
            }
            let stragglers = registry.shutdown(WAIT_MAX).await;
            let runs_at_stop = runs.get();
            rt::sleep(TICK * 4).await;
            (runs_at_stop, runs.get(), registry.running(), stragglers)
        });
        assert!(runs_at_stop >= 3, "the work ran repeatedly");
        assert_eq!(runs_after, runs_at_stop, "no run after shutdown returned");
        assert!(running.is_empty() && stragglers.is_empty(), "the task stopped: {running:?} {stragglers:?}");
    }

    #[test]
    fn periodic_task_with_a_long_interval_stops_at_the_signal_not_after_its_sleep() {
        let elapsed = rt::run_local(|| async {
            let registry = TaskRegistry::new(0);
            registry.periodic("slow", Duration::from_secs(3600), Priority::Normal, || async {});
            rt::sleep(TICK).await;
            let started = Instant::now();
            assert!(registry.shutdown(WAIT_MAX).await.is_empty());
            started.elapsed()
        });
        assert!(elapsed < WAIT_MAX, "the sleep was cut short by the stop signal");
    }

    #[test]
    fn shutdown_names_a_task_that_ignores_it_and_waits_no_longer_than_wait_max() {
        let (stragglers, running, stopping) = rt::run_local(|| async {
            let registry = TaskRegistry::new(0);
            let signal = registry.stop_signal();
            registry.continuous("obedient", Priority::Normal, async move { signal.stopped().await });
            registry.one_shot("stubborn", Priority::Background, rt::sleep(Duration::from_secs(3600)));
            rt::sleep(TICK).await;
            let stragglers = registry.shutdown(TICK * 4).await;
            (stragglers, registry.running(), registry.is_stopping())
        });
        assert_eq!(stragglers, vec!["stubborn"]);
        assert_eq!(running, vec!["stubborn"]);
        assert!(stopping);
    }

    #[test]
    fn names_are_kept_in_order_after_tasks_finish_and_no_task_starts_once_stopping() {
        let (names, running, after_stop) = rt::run_local(|| async {
            let registry = TaskRegistry::new(0);
            registry.periodic("retention", TICK, Priority::Background, || async {});
            registry.continuous("watcher", Priority::Normal, async {});
            registry.periodic("gauges", TICK, Priority::Background, || async {});
            rt::sleep(TICK).await;
            let names = registry.names();
            let running = registry.running();
            registry.shutdown(WAIT_MAX).await;
            registry.one_shot("late", Priority::Normal, async {});
            (names, running, registry.names())
        });
        assert_eq!(names, vec!["retention", "watcher", "gauges"]);
        assert_eq!(running, vec!["retention", "gauges"], "the continuous task finished on its own");
        assert_eq!(after_stop, names, "a task registered while stopping never starts");
    }

    #[test]
    fn finished_one_shot_tasks_make_room_within_the_limit() {
        let count = rt::run_local(|| async {
            let registry = TaskRegistry::new(0);
            for _ in 0..TASKS_PER_SHARD_MAX * 2 {
                registry.one_shot("snapshot", Priority::Normal, async {});
                rt::yield_if_needed().await;
                rt::sleep(Duration::from_millis(1)).await;
            }
            registry.names().len()
        });
        assert!(count <= TASKS_PER_SHARD_MAX);
    }
}
