// SPDX-License-Identifier: MPL-2.0
//! Wake-ups of the WebSocket runtime's thread and of the shared source's
//! pushers, taken together under load.
//!
//! A thousand bots send a message every 20 µs on average. Woken for each
//! (a thread switch each time), the thread spends a sixth of what the
//! process spends on waking. So when its sleeps have been short lately, it
//! naps `COALESCE` before it sleeps, and what arrives meanwhile is taken in
//! one wake-up: a message then waits at most that long more (and the
//! timer's slack, 50 µs by default). With a hundred bots (a message every
//! 200 µs) its sleeps are long, it never naps, and no message waits: a nap
//! there would only add a wake-up of its own.

use std::cell::Cell;
use std::time::{Duration, Instant};

const COALESCE: Duration = Duration::from_micros(150);
/// Sleeps shorter than this on average (after any nap) mean "under load".
const BUSY_SLEEP: Duration = Duration::from_micros(30);

/// How long the thread's sleeps last, on average over the last eight or so.
#[derive(Debug, Clone, Copy)]
struct Sleeps {
    average_us: f64,
}

impl Sleeps {
    const fn new() -> Self {
        // Not under load until shown otherwise (thirty short sleeps or so).
        Sleeps { average_us: 1000.0 }
    }

    /// Whether to nap before the next sleep.
    fn busy(&self) -> bool {
        self.average_us < BUSY_SLEEP.as_secs_f64() * 1e6
    }

    fn slept(&mut self, slept: Duration) {
        self.average_us = self.average_us * 0.875 + slept.as_secs_f64() * 1e6 * 0.125;
    }
}

thread_local! {
    static SLEEPS: Cell<Sleeps> = const { Cell::new(Sleeps::new()) };
    static ASLEEP_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The runtime's `on_thread_park`.
pub fn before_sleep() {
    nap_if_busy();
    ASLEEP_SINCE.set(Some(Instant::now()));
}

/// The runtime's `on_thread_unpark`.
pub fn after_sleep() {
    if let Some(since) = ASLEEP_SINCE.take() {
        slept(since.elapsed());
    }
}

/// Naps `COALESCE` if this thread's sleeps have been short lately; says
/// whether it did.
pub fn nap_if_busy() -> bool {
    let busy = SLEEPS.get().busy();
    if busy {
        std::thread::sleep(COALESCE);
    }
    busy
}

/// This thread slept this long (zero: it found work without sleeping).
pub fn slept(slept: Duration) {
    let mut sleeps = SLEEPS.get();
    sleeps.slept(slept);
    SLEEPS.set(sleeps);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(sleeps: &[u64]) -> Sleeps {
        let mut s = Sleeps::new();
        for &us in sleeps {
            s.slept(Duration::from_micros(us));
        }
        s
    }

    #[test]
    fn a_thread_woken_seldom_never_naps() {
        // A hundred bots: a message every 200 µs, now and then two at once.
        let mut pattern = vec![200; 1000];
        for i in (0..1000).step_by(7) {
            pattern[i] = 5;
        }
        let mut s = Sleeps::new();
        for us in pattern {
            s.slept(Duration::from_micros(us));
            assert!(!s.busy(), "{s:?}");
        }
    }

    #[test]
    fn a_thread_woken_at_once_again_and_again_naps_and_stops_when_load_goes() {
        // A thousand bots: sleeps of a few µs until it naps...
        assert!(!after(&[10; 10]).busy());
        let mut s = after(&[10; 40]);
        assert!(s.busy());
        // ...then none, since the nap gathered what came.
        for _ in 0..1000 {
            s.slept(Duration::ZERO);
            assert!(s.busy());
        }
        // The load goes: a couple of long sleeps end the naps.
        let mut long = 0;
        while s.busy() {
            s.slept(Duration::from_micros(200));
            long += 1;
        }
        assert!(long <= 2, "{long} long sleeps before it stopped napping");
    }
}
