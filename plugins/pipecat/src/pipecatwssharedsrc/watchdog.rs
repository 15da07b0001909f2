//! The shared thread's watchdog: a push that holds the thread every bot leg
//! shares for `CUT_OFF` ends that one call, so that the others go on.
//!
//! The WebSocket runtime runs one thread, so one push at a time is in
//! progress, and one slot says which. A thread of its own looks at the slot
//! (the runtime's thread is the one that is stuck), and cuts the call off
//! with a FLUSH_START from its pad: that is what unblocks a sink waiting on
//! the clock or for PLAYING, a full queue, an aggregator.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use callaudio::sync::lock;
use gst::prelude::*;

/// How long a push may hold the shared thread before its call is cut off.
pub const CUT_OFF: Duration = Duration::from_secs(1);
const LOOK_EVERY: Duration = Duration::from_millis(100);

struct Push {
    since: Instant,
    pad: gst::Pad,
    cut: bool,
}

static SLOT: Mutex<Option<Push>> = Mutex::new(None);

/// What the watchdog calls, from its thread, for a push that passed
/// `CUT_OFF`: the pad it is stuck on.
type CutOff = fn(&gst::Pad);

/// Starts the watchdog thread, once per process; `cut_off` is what it does
/// to a push stuck for `CUT_OFF`.
pub fn start(cut_off: CutOff) -> Result<(), String> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = lock(&STARTED);
    if !*started {
        std::thread::Builder::new()
            .name("pipecat-watchdog".into())
            .spawn(move || watch(cut_off))
            .map_err(|err| format!("could not start the shared thread's watchdog: {err}"))?;
        *started = true;
    }
    Ok(())
}

fn watch(cut_off: CutOff) {
    loop {
        std::thread::sleep(LOOK_EVERY);
        let stuck = {
            let mut slot = lock(&SLOT);
            match slot.as_mut() {
                Some(push) if !push.cut && push.since.elapsed() >= CUT_OFF => {
                    push.cut = true;
                    push.pad.clone()
                }
                _ => continue,
            }
        };
        cut_off(&stuck);
    }
}

/// A push in progress on a pad, until dropped.
pub struct Watched {
    pad: usize,
}

pub fn watch_push(pad: &gst::Pad) -> Watched {
    *lock(&SLOT) = Some(Push {
        since: Instant::now(),
        pad: pad.clone(),
        cut: false,
    });
    Watched {
        pad: pad.as_ptr() as usize,
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut slot = lock(&SLOT);
        if slot
            .as_ref()
            .is_some_and(|push| push.pad.as_ptr() as usize == self.pad)
        {
            *slot = None;
        }
    }
}
