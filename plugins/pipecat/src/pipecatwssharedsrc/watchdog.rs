//! The shared thread's watchdog: a push that holds the thread every bot leg
//! shares for `CUT_OFF` ends that one call, so that the others go on.
//!
//! The WebSocket runtime runs one thread, so one push at a time is in
//! progress, and two atomics say which and since when (a lock and a
//! reference per message would cost more). A thread of its own looks at
//! them (the runtime's thread is the one that is stuck), and cuts the call
//! off with a FLUSH_START from its pad: that is what unblocks a sink waiting
//! on the clock or for PLAYING, a full queue, an aggregator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use callaudio::sync::lock;
use gst::prelude::*;

/// How long a push may hold the shared thread before its call is cut off.
pub const CUT_OFF: Duration = Duration::from_secs(1);
const LOOK_EVERY: Duration = Duration::from_millis(100);

static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
/// When the push in progress began (ns after `ORIGIN`, at least 1), or 0.
static PUSH_SINCE: AtomicU64 = AtomicU64::new(0);
/// The pad it is on, as a key of `PADS`.
static PUSH_PAD: AtomicUsize = AtomicUsize::new(0);
/// The pads of the started sources, by key.
static PADS: LazyLock<Mutex<HashMap<usize, gst::Pad>>> = LazyLock::new(Default::default);

/// What the watchdog calls, from its thread, for a push that passed
/// `CUT_OFF`: the pad it is stuck on.
type CutOff = fn(&gst::Pad);

fn key(pad: &gst::Pad) -> usize {
    pad.as_ptr() as usize
}

/// `at` in ns after `ORIGIN`, at least 1 (0 means no push).
fn ns_of(at: Instant) -> u64 {
    (at.saturating_duration_since(*ORIGIN).as_nanos() as u64).max(1)
}

/// Watches pushes on `pad` until `forget`; starts the watchdog thread, once
/// per process, with `cut_off` as what it does to a push stuck for
/// `CUT_OFF`.
pub fn watch(pad: &gst::Pad, cut_off: CutOff) -> Result<(), String> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = lock(&STARTED);
    if !*started {
        std::thread::Builder::new()
            .name("pipecat-watchdog".into())
            .spawn(move || run(cut_off))
            .map_err(|err| format!("could not start the shared thread's watchdog: {err}"))?;
        *started = true;
    }
    lock(&PADS).insert(key(pad), pad.clone());
    Ok(())
}

pub fn forget(pad: &gst::Pad) {
    lock(&PADS).remove(&key(pad));
}

fn run(cut_off: CutOff) {
    let mut last_cut = None;
    loop {
        std::thread::sleep(LOOK_EVERY);
        // Read as a pair: a push that ends and another that begins between
        // the two reads changes `PUSH_SINCE`, and the pair is not taken.
        let since = PUSH_SINCE.load(Ordering::Acquire);
        let pad = PUSH_PAD.load(Ordering::Acquire);
        if since == 0 || PUSH_SINCE.load(Ordering::Acquire) != since {
            continue;
        }
        let held = Duration::from_nanos(ns_of(Instant::now()).saturating_sub(since));
        if held < CUT_OFF || last_cut == Some((pad, since)) {
            continue;
        }
        last_cut = Some((pad, since));
        let stuck = lock(&PADS).get(&pad).cloned();
        if let Some(stuck) = stuck {
            cut_off(&stuck);
        }
    }
}

/// A push in progress on a pad, until dropped.
pub struct Watched(());

/// A push on `pad` begins, at `since`.
pub fn watch_push(pad: &gst::Pad, since: Instant) -> Watched {
    PUSH_PAD.store(key(pad), Ordering::Release);
    PUSH_SINCE.store(ns_of(since), Ordering::Release);
    Watched(())
}

impl Drop for Watched {
    fn drop(&mut self) {
        PUSH_SINCE.store(0, Ordering::Release);
    }
}
