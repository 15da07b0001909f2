// SPDX-License-Identifier: MPL-2.0
//! The threads that write every recording of the process: one ticker and a
//! few workers, however many recordings there are.
//!
//! A thread per recording costs a thread per call and a thread wake-up per
//! header rewrite (each a system call on both sides); a thousand calls made
//! that a fifth of the recorder's CPU. Here the ticker (which never touches
//! a disk) looks at every recording once per tick and queues those with
//! audio or a header due; workers write them. A recording is in the queue
//! or in a worker at most once at a time, so its writes stay in order.
//!
//! A disk that hangs holds the worker that writes to it, and only that
//! recording: work that finds no worker free starts another (at most one
//! per tick, up to `MAX_WORKERS`; `callaudio::workers`), so the other calls
//! go on; the stuck recording fails on its own `disk_timeout` (`writing/mod.rs`).
//!
//! Lock order: a job's own locks (`mod.rs`), then `Pool::inner` or the
//! workers' queue; never both of those. No lock is held while a job runs.

use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::Duration;

use callaudio::sync::{lock, wait};
use callaudio::workers::Workers;

/// How often the ticker looks; a header is rewritten at most this late.
pub const TICK: Duration = Duration::from_millis(100);
/// Each hung disk holds a worker until the kernel gives up on it; past this
/// many, work waits (and its recordings fail on their own timeouts).
const MAX_WORKERS: usize = 64;

static WRITERS: Workers = Workers::new("callrec-writer", MAX_WORKERS);

/// A recording the pool writes.
pub trait Job: Send + Sync {
    /// Marks it queued if it has audio or a header due and is not queued
    /// already; whether it did.
    fn claim_if_due(&self) -> bool;
    /// Marks it queued unless it is already (or is over); whether it did.
    fn claim(&self) -> bool;
    /// Writes what it has, in a worker; releases the claim when done.
    fn run(&self);
    /// Over: the pool forgets it.
    fn is_over(&self) -> bool;
}

pub struct Pool {
    inner: Mutex<Inner>,
    /// Wakes the ticker: the first job arrived.
    jobs_arrived: Condvar,
}

#[derive(Default)]
struct Inner {
    jobs: Vec<Weak<dyn Job>>,
    ticker: bool,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    inner: Mutex::new(Inner::default()),
    jobs_arrived: Condvar::new(),
});

pub fn pool() -> &'static Pool {
    &POOL
}

fn run_on_a_worker(job: Arc<dyn Job>) -> Box<dyn FnOnce() + Send> {
    Box::new(move || job.run())
}

impl Pool {
    /// Starts watching `job`.
    pub fn add(&'static self, job: Weak<dyn Job>) -> std::io::Result<()> {
        let mut inner = lock(&self.inner);
        if !inner.ticker {
            std::thread::Builder::new()
                .name("callrec-ticker".into())
                .spawn(move || self.tick_loop())?;
            inner.ticker = true;
        }
        inner.jobs.push(job);
        if inner.jobs.len() == 1 {
            self.jobs_arrived.notify_one();
        }
        Ok(())
    }

    /// Queues `job` now (a command or a full block), if not queued already.
    pub fn queue_now(&'static self, job: Arc<dyn Job>) {
        if job.claim() {
            // With every worker busy (maybe on a hung disk) this starts
            // another: a finish must not wait behind a hung disk.
            WRITERS.submit_all([run_on_a_worker(job)]);
        }
    }

    fn tick_loop(&'static self) {
        loop {
            std::thread::sleep(TICK);
            let jobs: Vec<Arc<dyn Job>> = {
                let mut inner = lock(&self.inner);
                while inner.jobs.is_empty() {
                    inner = wait(&self.jobs_arrived, inner);
                }
                inner
                    .jobs
                    .retain(|j| j.upgrade().is_some_and(|j| !j.is_over()));
                inner.jobs.iter().filter_map(Weak::upgrade).collect()
            };
            // Claimed outside the pool's lock: a job's lock comes first.
            // A tick's work starts at most one more worker, and only when
            // none is free (one may be stuck on a hung disk).
            let due: Vec<_> = jobs
                .into_iter()
                .filter(|j| j.claim_if_due())
                .map(run_on_a_worker)
                .collect();
            WRITERS.submit_all(due);
        }
    }
}
