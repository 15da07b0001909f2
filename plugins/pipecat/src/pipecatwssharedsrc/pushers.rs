// SPDX-License-Identifier: MPL-2.0
//! The threads that push every shared source's audio downstream, and the
//! watchdog that keeps one blocked call from holding the others.
//!
//! The WebSocket runtime's thread only reads: a source with something to
//! push is queued here (`schedule`), once however much arrived, and one
//! pusher thread pushes for every source of the process. Under load it
//! finds the next source queued as it finishes one, so it is woken about
//! once per batch the reader took, not per message.
//!
//! A downstream that blocks holds only the pusher inside it: when a push
//! has lasted `RESCUE_AFTER`, the watchdog starts another pusher, which
//! takes the queue (the writer pool's rule, `callrecsink`'s `writing/pool.rs`), and
//! the held one ends once its push returns. So the other calls wait at
//! most `RESCUE_AFTER` plus one look of the watchdog. A push held for
//! `CUT_OFF` ends its own call (`imp.rs`'s `cut_off`: an ERROR and a
//! FLUSH_START, which frees a sink that honours flushes). At most
//! `MAX_PUSHERS` pushers run: past that many calls blocked at once, the
//! rest wait for a cut-off.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use callaudio::sync::lock;
use gst::prelude::*;

/// How long a push may hold a pusher before another takes over the queue.
pub const RESCUE_AFTER: Duration = Duration::from_millis(20);
/// How long a push may hold a pusher before its call is cut off.
pub const CUT_OFF: Duration = Duration::from_secs(1);
const LOOK_EVERY: Duration = Duration::from_millis(10);
const MAX_PUSHERS: usize = 32;

/// What a pusher does for a queued pad, and what the watchdog does to a
/// push that passed `CUT_OFF`.
#[derive(Clone, Copy)]
pub struct Handlers {
    pub push: fn(&gst::Pad),
    pub cut_off: fn(&gst::Pad),
}

static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One pusher thread, as the watchdog sees it.
#[derive(Default)]
struct Pusher {
    /// When its push in progress began (ns after `ORIGIN`, at least 1), or 0.
    since: AtomicU64,
    /// The pad it pushes on, as a key of `Pool::pads`.
    pad: AtomicUsize,
    /// Another pusher took its place: it ends after its push.
    replaced: AtomicBool,
}

#[derive(Default)]
struct Queue {
    pads: VecDeque<gst::Pad>,
    /// Pushers waiting for a pad: `schedule` signals only then.
    waiting: usize,
}

struct Pool {
    handlers: Handlers,
    queue: Mutex<Queue>,
    ready: Condvar,
    pushers: Mutex<Vec<Arc<Pusher>>>,
    /// The pads of the started sources, by key, for the watchdog's cut-off.
    pads: Mutex<HashMap<usize, gst::Pad>>,
}

static POOL: std::sync::OnceLock<Arc<Pool>> = std::sync::OnceLock::new();
/// Held while the pool starts, so two first sources start one pool.
static STARTING: Mutex<()> = Mutex::new(());

thread_local! {
    /// The pusher this thread is, if it is one.
    static ME: std::cell::RefCell<Option<Arc<Pusher>>> = const { std::cell::RefCell::new(None) };
}

fn key(pad: &gst::Pad) -> usize {
    pad.as_ptr() as usize
}

/// `at` in ns after `ORIGIN`, at least 1 (0 means no push).
fn ns_of(at: Instant) -> u64 {
    (at.saturating_duration_since(*ORIGIN).as_nanos() as u64).max(1)
}

fn pool() -> Option<&'static Arc<Pool>> {
    POOL.get()
}

/// Starts the pool (a pusher and the watchdog) once per process, and
/// watches `pad` until `forget`.
pub fn watch(pad: &gst::Pad, handlers: Handlers) -> Result<(), String> {
    let pool = {
        let _starting = lock(&STARTING);
        match POOL.get() {
            Some(pool) => pool.clone(),
            None => {
                let pool = Arc::new(Pool {
                    handlers,
                    queue: Mutex::new(Queue::default()),
                    ready: Condvar::new(),
                    pushers: Mutex::new(Vec::new()),
                    pads: Mutex::new(HashMap::new()),
                });
                start_pusher(&pool)?;
                let watched = pool.clone();
                std::thread::Builder::new()
                    .name("pipecat-watchdog".into())
                    .spawn(move || watchdog(&watched))
                    .map_err(|err| {
                        format!("could not start the shared source's watchdog: {err}")
                    })?;
                let _ = POOL.set(pool.clone());
                pool
            }
        }
    };
    lock(&pool.pads).insert(key(pad), pad.clone());
    Ok(())
}

pub fn forget(pad: &gst::Pad) {
    if let Some(pool) = pool() {
        lock(&pool.pads).remove(&key(pad));
    }
}

/// Queues `pad` for a pusher. The caller queues a pad once until its
/// push begins (`imp.rs`'s `queued`), however much arrives meanwhile.
pub fn schedule(pad: &gst::Pad) {
    let Some(pool) = pool() else { return };
    let signal = {
        let mut queue = lock(&pool.queue);
        queue.pads.push_back(pad.clone());
        queue.waiting > 0
    };
    // After the lock: a pusher woken under it would only block on it.
    if signal {
        pool.ready.notify_one();
    }
}

fn start_pusher(pool: &Arc<Pool>) -> Result<(), String> {
    let me = Arc::new(Pusher::default());
    lock(&pool.pushers).push(me.clone());
    let pool_of_thread = pool.clone();
    let mine = me.clone();
    std::thread::Builder::new()
        .name("pipecat-push".into())
        .spawn(move || run(&pool_of_thread, mine))
        .map(|_| ())
        .map_err(|err| {
            lock(&pool.pushers).retain(|p| !Arc::ptr_eq(p, &me));
            format!("could not start a pushing thread: {err}")
        })
}

fn run(pool: &Pool, me: Arc<Pusher>) {
    ME.with(|slot| *slot.borrow_mut() = Some(me.clone()));
    while !me.replaced.load(Ordering::Acquire) {
        let pad = {
            let mut queue = lock(&pool.queue);
            loop {
                if let Some(pad) = queue.pads.pop_front() {
                    break pad;
                }
                // Under load, what arrives during a short nap is taken in
                // one wake-up (`nap.rs`, as the reader does).
                drop(queue);
                let napped = crate::nap::nap_if_busy();
                queue = lock(&pool.queue);
                if napped && !queue.pads.is_empty() {
                    crate::nap::slept(Duration::ZERO);
                    continue;
                }
                queue.waiting += 1;
                let asleep = Instant::now();
                queue = pool.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                crate::nap::slept(asleep.elapsed());
                queue.waiting -= 1;
            }
        };
        (pool.handlers.push)(&pad);
    }
    lock(&pool.pushers).retain(|p| !Arc::ptr_eq(p, &me));
}

/// A push in progress on this pusher, until dropped.
pub struct Watched(Option<Arc<Pusher>>);

/// A push on `pad` begins, at `since`. On a thread that is not a pusher
/// (none pushes there today) it is not watched.
pub fn watch_push(pad: &gst::Pad, since: Instant) -> Watched {
    let me = ME.with(|slot| slot.borrow().clone());
    if let Some(me) = &me {
        me.pad.store(key(pad), Ordering::Release);
        me.since.store(ns_of(since), Ordering::Release);
    }
    Watched(me)
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(me) = &self.0 {
            me.since.store(0, Ordering::Release);
        }
    }
}

fn watchdog(pool: &Arc<Pool>) {
    let mut cut = Vec::<(usize, u64)>::new();
    loop {
        std::thread::sleep(LOOK_EVERY);
        let pushers = lock(&pool.pushers).clone();
        let now = ns_of(Instant::now());
        let mut stuck = Vec::new();
        for pusher in &pushers {
            // Read as a pair: a push that ends and another that begins
            // between the two reads changes `since`, and the pair is not taken.
            let since = pusher.since.load(Ordering::Acquire);
            let pad = pusher.pad.load(Ordering::Acquire);
            if since == 0 || pusher.since.load(Ordering::Acquire) != since {
                continue;
            }
            let held = Duration::from_nanos(now.saturating_sub(since));
            if held >= RESCUE_AFTER
                && lock(&pool.pushers).len() < MAX_PUSHERS
                && !pusher.replaced.swap(true, Ordering::AcqRel)
                && start_pusher(pool).is_err()
            {
                // No free pusher for the queue: the held one stays its pusher.
                pusher.replaced.store(false, Ordering::Release);
            }
            if held >= CUT_OFF {
                stuck.push((pad, since));
            }
        }
        cut.retain(|c| stuck.contains(c));
        for (pad, since) in stuck {
            if cut.contains(&(pad, since)) {
                continue;
            }
            cut.push((pad, since));
            let pad = lock(&pool.pads).get(&pad).cloned();
            if let Some(pad) = pad {
                (pool.handlers.cut_off)(&pad);
            }
        }
    }
}
