//! A shard's memory budget for requests in flight: Kafka's `queued.max.request.bytes`, Redpanda's
//! request memory semaphore.
//!
//! A connection reserves a frame's size before it reads (and allocates) the body. While the
//! shard's budget is spent, readers wait and their sockets are not read: the kernel's receive
//! window pushes back on the client. So however many connections send large or stalled frames,
//! the frames being read or handled on a shard never take more than its budget. Responses are
//! charged too (see `connection`), but never wait: a charge may take the budget past its limit,
//! which holds new reads back until the responses are written.
//!
//! Waiters are served smallest first: a client stalling large frames to fill the budget cannot
//! keep smaller requests (metadata, fetches, typical produce batches) waiting behind its own; to
//! hold back requests of some size it must stall frames no larger, budget / size of them. So that
//! a large frame is not passed forever, one that smaller frames have passed by a whole budget's
//! worth of bytes is served next, before anyone else (first come, first served among those).
//!
//! ```text
//!   limit  ├──────────────────────────────────────────┤
//!   in flight  [frame 4M][frame 1M][response 2M]······   waiting: 8M (passed by 3M) ─ 1M ─ 64K
//!              └ released when the frame's memory is freed (its last   next granted: the 64K
//!                slice dropped) or its response is produced, whichever comes first
//! ```
//!
//! Lives on one shard (`ShardContext::request_budget`); a reservation may be released on any
//! shard, because a produced batch's bytes are slices of the frame and are dropped by the shard
//! that appended them. So the state is behind a mutex and waiters are woken by their wakers.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use fjord_engine::metrics::Metrics;

/// A frame that could never be read: larger than the whole budget.
#[derive(Debug, thiserror::Error)]
#[error(
    "frame of {size_bytes} bytes exceeds the shard's request memory budget of {budget_bytes} bytes (queued.max.request.bytes / shards)"
)]
pub struct OverBudget {
    pub size_bytes: usize,
    pub budget_bytes: usize,
}

/// One shard's budget (see the module comment). Lives on its shard, in `ShardContext`; its
/// reservations may be released on any shard.
pub struct RequestBudget {
    limit_bytes: usize,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    shard_id: usize,
}

#[derive(Default)]
struct State {
    /// Bytes reserved and not yet released; above `limit_bytes` only through [`RequestBudget::charge`].
    in_flight_bytes: usize,
    /// Readers waiting, oldest first. Every one is larger than the free budget (else it would
    /// have been granted), unless one that was passed too much blocks the others.
    waiting: VecDeque<Waiting>,
    /// Tickets granted to waiting readers that have not yet taken their reservation.
    granted: Vec<u64>,
    next_ticket: u64,
}

struct Waiting {
    ticket: u64,
    size_bytes: usize,
    waker: Waker,
    /// Bytes granted to readers that came later while this one waited.
    passed_bytes: usize,
}

impl RequestBudget {
    pub fn new(limit_bytes: usize, metrics: Arc<Metrics>, shard_id: usize) -> RequestBudget {
        assert!(limit_bytes > 0, "a request memory budget of zero bytes would never read a request");
        let shard = metrics.shard(shard_id);
        shard.request_memory_budget_bytes.set(limit_bytes as u64);
        shard.request_memory_bytes.set(0);
        RequestBudget { limit_bytes, state: Mutex::new(State::default()), metrics, shard_id }
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    pub fn in_flight_bytes(&self) -> usize {
        self.lock().in_flight_bytes
    }

    /// Readers waiting for memory.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Reserves `size_bytes` for a frame about to be read; the future completes once they fit and
    /// it is this frame's turn (see the module comment). A frame larger than the whole budget is
    /// refused.
    pub fn reserve(self: &Arc<Self>, size_bytes: usize) -> Result<Reserve, OverBudget> {
        if size_bytes > self.limit_bytes {
            return Err(OverBudget { size_bytes, budget_bytes: self.limit_bytes });
        }
        Ok(Reserve { budget: self.clone(), size_bytes, ticket: None, taken: false })
    }

    /// Charges `size_bytes` at once, even past the limit (a response that is already built): the
    /// readers waiting then wait until enough of it is released.
    pub fn charge(self: &Arc<Self>, size_bytes: usize) -> Reservation {
        if size_bytes > 0 {
            let mut state = self.lock();
            state.in_flight_bytes += size_bytes;
            self.publish(&state);
        }
        Reservation::new(self.clone(), size_bytes)
    }

    fn release(&self, size_bytes: usize) {
        if size_bytes == 0 {
            return;
        }
        let wakers = {
            let mut state = self.lock();
            assert!(state.in_flight_bytes >= size_bytes, "released {size_bytes} bytes of {} in flight", state.in_flight_bytes);
            state.in_flight_bytes -= size_bytes;
            self.grant_waiting(&mut state)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Grants waiters while the next one fits; returns their wakers, to be woken once the lock is
    /// released.
    fn grant_waiting(&self, state: &mut State) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while let Some(index) = self.next_turn(state) {
            if state.in_flight_bytes + state.waiting[index].size_bytes > self.limit_bytes {
                break;
            }
            let granted = state.waiting.remove(index).expect("index from next_turn");
            for older in state.waiting.iter_mut().take(index) {
                older.passed_bytes += granted.size_bytes;
            }
            state.in_flight_bytes += granted.size_bytes;
            state.granted.push(granted.ticket);
            wakers.push(granted.waker);
        }
        self.publish(state);
        wakers
    }

    /// Whose turn it is: the oldest waiter passed by a whole budget, else the smallest (the oldest
    /// of equals).
    fn next_turn(&self, state: &State) -> Option<usize> {
        self.overdue(state).or_else(|| (0..state.waiting.len()).min_by_key(|&index| (state.waiting[index].size_bytes, index)))
    }

    /// The oldest waiter that nobody may pass any more.
    fn overdue(&self, state: &State) -> Option<usize> {
        state.waiting.iter().position(|waiting| waiting.passed_bytes >= self.limit_bytes)
    }

    fn publish(&self, state: &State) {
        self.metrics.shard(self.shard_id).request_memory_bytes.set(state.in_flight_bytes as u64);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock (no code that can panic runs while it is
        // half-updated), so a poisoned lock is still a correct one.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A wait for memory ([`RequestBudget::reserve`]). Dropped before it completes, it gives up its
/// place (or the memory it was just granted).
pub struct Reserve {
    budget: Arc<RequestBudget>,
    size_bytes: usize,
    ticket: Option<u64>,
    taken: bool,
}

impl Future for Reserve {
    type Output = Reservation;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reservation> {
        let this = self.get_mut();
        assert!(!this.taken, "Reserve polled after it completed");
        let budget = &this.budget;
        let mut state = budget.lock();
        let granted = match this.ticket {
            // Fitting means being smaller than every waiter (they do not fit), so it is this
            // frame's turn unless one of them is overdue.
            None if budget.overdue(&state).is_none() && state.in_flight_bytes + this.size_bytes <= budget.limit_bytes => {
                state.in_flight_bytes += this.size_bytes;
                for waiting in state.waiting.iter_mut() {
                    waiting.passed_bytes += this.size_bytes;
                }
                budget.publish(&state);
                true
            }
            None => {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                let waker = cx.waker().clone();
                state.waiting.push_back(Waiting { ticket, size_bytes: this.size_bytes, waker, passed_bytes: 0 });
                this.ticket = Some(ticket);
                budget.metrics.shard(budget.shard_id).request_reads_throttled.add(1);
                false
            }
            Some(ticket) => match state.granted.iter().position(|&granted| granted == ticket) {
                Some(index) => {
                    state.granted.swap_remove(index);
                    true
                }
                None => {
                    if let Some(waiting) = state.waiting.iter_mut().find(|waiting| waiting.ticket == ticket) {
                        waiting.waker.clone_from(cx.waker());
                    }
                    false
                }
            },
        };
        drop(state);
        if !granted {
            return Poll::Pending;
        }
        this.taken = true;
        Poll::Ready(Reservation::new(this.budget.clone(), this.size_bytes))
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.filter(|_| !self.taken) else { return };
        let wakers = {
            let mut state = self.budget.lock();
            if let Some(index) = state.waiting.iter().position(|waiting| waiting.ticket == ticket) {
                state.waiting.remove(index);
            } else if let Some(index) = state.granted.iter().position(|&granted| granted == ticket) {
                state.granted.swap_remove(index);
                state.in_flight_bytes -= self.size_bytes;
            }
            // Whoever waited behind this one may fit now.
            self.budget.grant_waiting(&mut state)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Bytes held against a shard's budget. Every handle made by [`Reservation::share`] stands for the
/// same bytes, and the first one dropped returns them: a frame's buffer holds one handle (freed
/// with its last slice) and the connection another (dropped once the response is produced).
pub struct Reservation(Arc<Held>);

struct Held {
    budget: Arc<RequestBudget>,
    size_bytes: AtomicUsize,
}

impl Reservation {
    fn new(budget: Arc<RequestBudget>, size_bytes: usize) -> Reservation {
        Reservation(Arc::new(Held { budget, size_bytes: AtomicUsize::new(size_bytes) }))
    }

    /// Bytes still held (0 once released through any handle).
    pub fn size_bytes(&self) -> usize {
        self.0.size_bytes.load(Ordering::Acquire)
    }

    /// Another handle to the same bytes.
    pub fn share(&self) -> Reservation {
        Reservation(self.0.clone())
    }

    /// Returns the bytes now; later releases (by any handle) do nothing.
    pub fn release(&self) {
        let size_bytes = self.0.size_bytes.swap(0, Ordering::AcqRel);
        self.0.budget.release(size_bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({} bytes)", self.size_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    const SHARD: usize = 0;

    fn budget(limit_bytes: usize) -> (Arc<RequestBudget>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(1));
        (Arc::new(RequestBudget::new(limit_bytes, metrics.clone(), SHARD)), metrics)
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        (counter.clone(), Waker::from(counter))
    }

    fn poll(reserve: &mut Reserve, waker: &Waker) -> Poll<Reservation> {
        Pin::new(reserve).poll(&mut Context::from_waker(waker))
    }

    fn ready(reserve: &mut Reserve, waker: &Waker) -> Reservation {
        match poll(reserve, waker) {
            Poll::Ready(reservation) => reservation,
            Poll::Pending => panic!("reservation not granted"),
        }
    }

    #[test]
    fn reserve_then_release_returns_the_bytes_and_publishes_them() {
        let (budget, metrics) = budget(100);
        let (_, waker) = counting_waker();
        let first = ready(&mut budget.reserve(60).unwrap(), &waker);
        let second = ready(&mut budget.reserve(40).unwrap(), &waker);
        assert_eq!(budget.in_flight_bytes(), 100);
        assert_eq!(metrics.shard(SHARD).request_memory_bytes.get(), 100);
        assert_eq!(metrics.shard(SHARD).request_memory_budget_bytes.get(), 100);
        drop(first);
        assert_eq!(budget.in_flight_bytes(), 40);
        drop(second);
        assert_eq!(budget.in_flight_bytes(), 0);
        assert_eq!(metrics.shard(SHARD).request_memory_bytes.get(), 0);
        assert_eq!(metrics.shard(SHARD).request_reads_throttled.get(), 0, "nothing had to wait");
    }

    #[test]
    fn a_frame_larger_than_the_budget_is_refused() {
        let (budget, _) = budget(100);
        let refused = budget.reserve(101).err().expect("101 bytes of a 100-byte budget");
        assert_eq!((refused.size_bytes, refused.budget_bytes), (101, 100));
        assert!(refused.to_string().contains("queued.max.request.bytes"), "{refused}");
        assert!(budget.reserve(100).is_ok(), "the whole budget is one frame's worth");
    }

    #[test]
    fn a_waiting_reader_wakes_when_memory_is_released() {
        let (budget, metrics) = budget(100);
        let (_, waker) = counting_waker();
        let held = ready(&mut budget.reserve(80).unwrap(), &waker);
        let (woken, waiter_waker) = counting_waker();
        let mut waiting = budget.reserve(30).unwrap();
        assert!(poll(&mut waiting, &waiter_waker).is_pending(), "80 + 30 is past 100");
        assert_eq!(metrics.shard(SHARD).request_reads_throttled.get(), 1);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        drop(held);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the release wakes the waiter");
        assert_eq!(budget.in_flight_bytes(), 30, "granted at the release, before the waiter runs");
        let granted = ready(&mut waiting, &waiter_waker);
        assert_eq!(granted.size_bytes(), 30);
        drop(granted);
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn smaller_waiters_go_first_and_equal_ones_in_order() {
        let (budget, _) = budget(100);
        let (_, waker) = counting_waker();
        let held = ready(&mut budget.reserve(100).unwrap(), &waker);
        let mut large = budget.reserve(90).unwrap();
        let mut small_first = budget.reserve(10).unwrap();
        let mut small_second = budget.reserve(10).unwrap();
        for waiting in [&mut large, &mut small_first, &mut small_second] {
            assert!(poll(waiting, &waker).is_pending());
        }
        drop(held);
        // 10 + 10 fit first; 90 more would not.
        let first = ready(&mut small_first, &waker);
        let second = ready(&mut small_second, &waker);
        assert!(poll(&mut large, &waker).is_pending());
        assert_eq!(budget.in_flight_bytes(), 20);
        drop((first, second));
        let large = ready(&mut large, &waker);
        assert_eq!(budget.in_flight_bytes(), 90);
        drop(large);
        // Equal sizes go in arrival order.
        let held = ready(&mut budget.reserve(100).unwrap(), &waker);
        let mut older = budget.reserve(60).unwrap();
        let mut newer = budget.reserve(60).unwrap();
        assert!(poll(&mut older, &waker).is_pending());
        assert!(poll(&mut newer, &waker).is_pending());
        drop(held);
        let older = ready(&mut older, &waker);
        assert!(poll(&mut newer, &waker).is_pending(), "only one 60 fits: the older");
        drop(older);
        drop(ready(&mut newer, &waker));
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn a_large_waiter_is_passed_by_at_most_one_budget_of_smaller_frames() {
        let (budget, _) = budget(100);
        let (_, waker) = counting_waker();
        // A stream of small frames keeps the budget from ever having 90 bytes free.
        let mut in_flight: VecDeque<Reservation> = (0..5).map(|_| ready(&mut budget.reserve(20).unwrap(), &waker)).collect();
        let mut large = budget.reserve(90).unwrap();
        assert!(poll(&mut large, &waker).is_pending());
        let mut passed = 0;
        loop {
            drop(in_flight.pop_front());
            let mut next = budget.reserve(20).unwrap();
            match poll(&mut next, &waker) {
                Poll::Ready(reservation) => {
                    passed += 20;
                    in_flight.push_back(reservation);
                }
                Poll::Pending => break,
            }
            assert!(passed <= 100, "passed by {passed} bytes");
        }
        assert_eq!(passed, 100, "small frames pass it until a whole budget went by");
        in_flight.clear();
        assert_eq!(ready(&mut large, &waker).size_bytes(), 90, "then it goes before anyone else");
    }

    #[test]
    fn a_reader_that_gives_up_frees_its_place_and_its_grant() {
        let (budget, _) = budget(100);
        let (_, waker) = counting_waker();
        let held = ready(&mut budget.reserve(100).unwrap(), &waker);
        let mut first = budget.reserve(60).unwrap();
        let mut second = budget.reserve(60).unwrap();
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut second, &waker).is_pending());
        assert_eq!(budget.waiting(), 2);
        // Granted at the release but never collected (the connection closed meanwhile).
        drop(held);
        assert_eq!(budget.in_flight_bytes(), 60);
        drop(first);
        assert_eq!(budget.in_flight_bytes(), 60, "the first's grant went back and the second got it");
        let second = ready(&mut second, &waker);
        drop(second);
        // A waiter dropped while still queued leaves nothing behind.
        let held = ready(&mut budget.reserve(100).unwrap(), &waker);
        let mut queued = budget.reserve(10).unwrap();
        assert!(poll(&mut queued, &waker).is_pending());
        drop(queued);
        assert_eq!(budget.waiting(), 0);
        drop(held);
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn shared_handles_release_once_at_the_first_drop() {
        let (budget, _) = budget(100);
        let (_, waker) = counting_waker();
        let reservation = ready(&mut budget.reserve(70).unwrap(), &waker);
        let frame_handle = reservation.share();
        drop(frame_handle);
        assert_eq!(budget.in_flight_bytes(), 0, "the frame's memory was freed first");
        assert_eq!(reservation.size_bytes(), 0);
        drop(reservation);
        assert_eq!(budget.in_flight_bytes(), 0, "released once, not twice");
    }

    #[test]
    fn a_charge_goes_past_the_limit_and_holds_readers_back_until_released() {
        let (budget, _) = budget(100);
        let (woken, waker) = counting_waker();
        let response = budget.charge(150);
        assert_eq!(budget.in_flight_bytes(), 150);
        let mut reader = budget.reserve(1).unwrap();
        assert!(poll(&mut reader, &waker).is_pending());
        drop(response);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        drop(ready(&mut reader, &waker));
        assert_eq!(budget.in_flight_bytes(), 0);
        drop(budget.charge(0));
    }

    #[test]
    fn a_release_on_another_thread_wakes_the_reader() {
        let (budget, _) = budget(100);
        let (_, waker) = counting_waker();
        let held = ready(&mut budget.reserve(100).unwrap(), &waker);
        let mut waiting = budget.reserve(100).unwrap();
        let (woken, waiter_waker) = counting_waker();
        assert!(poll(&mut waiting, &waiter_waker).is_pending());
        std::thread::spawn(move || drop(held)).join().unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(ready(&mut waiting, &waiter_waker).size_bytes(), 100);
    }
}
