// SPDX-License-Identifier: MPL-2.0
//! One thread per clock that watches the stall deadlines of every
//! `stallfiller` on that clock.
//!
//! While data flows, a track's deadline moves on with every buffer and the
//! old one passes unmet about once per `threshold`. Waiting for each with its
//! own clock wait costs a thread switch per track each time (and
//! `gst_clock_id_wait_async` keeps its entries in a sorted list, which a few
//! thousand tracks turn into a linear walk per re-arm). Here the deadlines
//! sit in one heap, and one thread waits on the clock for the earliest only.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::Duration;

use callaudio::sync::{lock, wait_timeout};
use gst::prelude::*;

/// How long a watch with nothing to watch and nobody using it lingers.
const IDLE_EXIT: Duration = Duration::from_secs(1);

type Callback = Box<dyn FnOnce() + Send>;

/// Identifies an armed deadline, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

pub struct Watch {
    clock: gst::Clock,
    inner: Mutex<Inner>,
    cond: Condvar,
}

#[derive(Default)]
struct Inner {
    /// Earliest first; entries whose token is no longer in `armed` were
    /// cancelled and are skipped when they come up.
    heap: BinaryHeap<Reverse<(gst::ClockTime, Token)>>,
    armed: HashMap<Token, Callback>,
    next_token: u64,
    /// The clock wait the thread is in, and for when.
    waiting: Option<(gst::SingleShotClockId, gst::ClockTime)>,
    /// The thread sleeps on `cond` (nothing armed). Otherwise it is awake,
    /// or in a clock wait, and looks at the heap before it sleeps: a
    /// deadline re-armed from a callback (the common case: data moved the
    /// deadline on) then costs no wake-up system call.
    sleeping: bool,
}

/// Watches by clock: the clock's address, valid while its watch holds it.
static WATCHES: LazyLock<Mutex<HashMap<usize, Weak<Watch>>>> = LazyLock::new(Default::default);

impl Watch {
    /// The watch of `clock`, started if there is none.
    pub fn for_clock(clock: &gst::Clock) -> Result<Arc<Watch>, std::io::Error> {
        let key = clock.as_ptr() as usize;
        let mut watches = lock(&WATCHES);
        if let Some(watch) = watches.get(&key).and_then(Weak::upgrade) {
            return Ok(watch);
        }
        let watch = Arc::new(Watch {
            clock: clock.clone(),
            inner: Mutex::new(Inner::default()),
            cond: Condvar::new(),
        });
        let runner = watch.clone();
        std::thread::Builder::new()
            .name("stallfiller-watch".into())
            .spawn(move || runner.run())?;
        watches.insert(key, Arc::downgrade(&watch));
        Ok(watch)
    }

    pub fn is_for(&self, clock: &gst::Clock) -> bool {
        &self.clock == clock
    }

    /// Calls `callback` from the watch's thread once the clock reaches `at`,
    /// unless cancelled first.
    pub fn arm(&self, at: gst::ClockTime, callback: impl FnOnce() + Send + 'static) -> Token {
        let mut inner = lock(&self.inner);
        inner.next_token += 1;
        let token = Token(inner.next_token);
        inner.armed.insert(token, Box::new(callback));
        inner.heap.push(Reverse((at, token)));
        match &inner.waiting {
            // The thread sleeps on the clock until later than this: wake it.
            Some((id, until)) if at < *until => id.unschedule(),
            Some(_) => {}
            None if inner.sleeping => self.cond.notify_one(),
            None => {}
        }
        token
    }

    /// Drops an armed callback; it will not be called.
    pub fn cancel(&self, token: Token) {
        let callback = {
            let mut inner = lock(&self.inner);
            let callback = inner.armed.remove(&token);
            // Nothing left to watch: stop the clock wait too, so the thread
            // can retire even on a clock that no longer advances.
            if inner.armed.is_empty()
                && let Some((id, _)) = &inner.waiting
            {
                id.unschedule();
            }
            callback
        };
        // Outside the lock: the callback may hold the last reference to
        // whatever it would have called.
        drop(callback);
    }

    fn run(self: Arc<Self>) {
        let mut inner = lock(&self.inner);
        loop {
            while let Some(&Reverse((_, token))) = inner.heap.peek() {
                if inner.armed.contains_key(&token) {
                    break;
                }
                inner.heap.pop();
            }
            let Some(&Reverse((at, token))) = inner.heap.peek() else {
                drop(inner);
                if self.retire_if_unused() {
                    return;
                }
                inner = lock(&self.inner);
                if inner.heap.is_empty() {
                    inner.sleeping = true;
                    inner = wait_timeout(&self.cond, inner, IDLE_EXIT).0;
                    inner.sleeping = false;
                }
                continue;
            };
            if self.clock.time() >= at {
                inner.heap.pop();
                let callback = inner.armed.remove(&token);
                drop(inner);
                if let Some(callback) = callback {
                    // Every stallfiller on this clock depends on this thread:
                    // one element's panic must not end it for all of them.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback));
                }
                inner = lock(&self.inner);
                continue;
            }
            let id = self.clock.new_single_shot_id(at);
            inner.waiting = Some((id.clone(), at));
            drop(inner);
            let _ = id.wait();
            inner = lock(&self.inner);
            inner.waiting = None;
        }
    }

    /// With nothing armed and no element holding it, the watch ends (the
    /// decision is taken under the registry lock, so `for_clock` never hands
    /// out a watch whose thread is gone).
    fn retire_if_unused(self: &Arc<Self>) -> bool {
        let mut watches = lock(&WATCHES);
        if Arc::strong_count(self) > 1 || !lock(&self.inner).heap.is_empty() {
            return false;
        }
        watches.remove(&(self.clock.as_ptr() as usize));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn test_clock() -> gst_check::TestClock {
        gst::init().unwrap();
        gst_check::TestClock::new()
    }

    #[test]
    fn fires_in_deadline_order_and_skips_cancelled() {
        let clock = test_clock();
        let watch = Watch::for_clock(clock.upcast_ref()).unwrap();
        let (tx, rx) = mpsc::channel();
        for (at, name) in [(30, "c"), (10, "a"), (20, "b")] {
            let tx = tx.clone();
            watch.arm(gst::ClockTime::from_mseconds(at), move || {
                tx.send(name).unwrap()
            });
        }
        let tx2 = tx.clone();
        let cancelled = watch.arm(gst::ClockTime::from_mseconds(15), move || {
            tx2.send("cancelled").unwrap()
        });
        watch.cancel(cancelled);
        let mut fired = Vec::new();
        while fired.len() < 3 {
            let id = clock.wait_for_next_pending_id();
            clock.set_time(id.time());
            clock.process_next_clock_id();
            while let Ok(name) = rx.recv_timeout(Duration::from_millis(200)) {
                fired.push(name);
            }
        }
        assert_eq!(fired, ["a", "b", "c"]);
    }

    #[test]
    fn an_unused_watch_retires_its_thread() {
        let clock = test_clock();
        let watch = Watch::for_clock(clock.upcast_ref()).unwrap();
        let token = watch.arm(gst::ClockTime::from_seconds(10), || {});
        clock.wait_for_next_pending_id();
        watch.cancel(token);
        drop(watch);
        let key = clock.as_ptr() as usize;
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while WATCHES
            .lock()
            .unwrap()
            .get(&key)
            .is_some_and(|w| w.strong_count() > 0)
        {
            assert!(
                std::time::Instant::now() < give_up,
                "the watch thread never ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_earlier_deadline_wakes_a_waiting_watch() {
        let clock = test_clock();
        let watch = Watch::for_clock(clock.upcast_ref()).unwrap();
        let (tx, rx) = mpsc::channel();
        let late = tx.clone();
        watch.arm(gst::ClockTime::from_seconds(10), move || {
            late.send(10).unwrap()
        });
        assert_eq!(
            clock.wait_for_next_pending_id().time(),
            gst::ClockTime::from_seconds(10)
        );
        watch.arm(gst::ClockTime::from_seconds(1), move || tx.send(1).unwrap());
        // The 10 s wait is unscheduled and the watch now waits for 1 s.
        let id = loop {
            let id = clock.wait_for_next_pending_id();
            if id.time() == gst::ClockTime::from_seconds(1) {
                break id;
            }
        };
        clock.set_time(id.time());
        clock.process_next_clock_id();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
