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
//! recording: the ticker starts another worker whenever work has waited a
//! whole tick with no worker free (up to `MAX_WORKERS`), so the other calls
//! go on; the stuck recording fails on its own `disk_timeout` (`writer.rs`).
//!
//! Lock order: a job's own locks (`writer.rs`), then `Pool::inner`. No lock
//! is held while a job runs.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::Duration;

use callaudio::sync::{lock, wait, wait_timeout};

/// How often the ticker looks; a header is rewritten at most this late.
pub const TICK: Duration = Duration::from_millis(100);
/// Workers beyond the first that find no work for this long end.
const WORKER_IDLE_EXIT: Duration = Duration::from_secs(10);
/// Each hung disk holds a worker until the kernel gives up on it; past this
/// many, work waits (and its recordings fail on their own timeouts).
const MAX_WORKERS: usize = 64;

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
    /// Wakes a worker: work was queued.
    work: Condvar,
    /// Wakes the ticker: the first job arrived.
    jobs_arrived: Condvar,
}

#[derive(Default)]
struct Inner {
    jobs: Vec<Weak<dyn Job>>,
    queue: VecDeque<Arc<dyn Job>>,
    workers: usize,
    idle: usize,
    ticker: bool,
    /// The queue was not empty at the last tick: work is waiting.
    waited: bool,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    inner: Mutex::new(Inner::default()),
    work: Condvar::new(),
    jobs_arrived: Condvar::new(),
});

pub fn pool() -> &'static Pool {
    &POOL
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
        if inner.workers == 0 {
            self.spawn_worker(&mut inner)?;
        }
        inner.jobs.push(job);
        if inner.jobs.len() == 1 {
            self.jobs_arrived.notify_one();
        }
        Ok(())
    }

    /// Queues `job` now (a command or a full block), if not queued already.
    pub fn queue_now(&'static self, job: Arc<dyn Job>) {
        if !job.claim() {
            return;
        }
        let mut inner = lock(&self.inner);
        inner.queue.push_back(job);
        if inner.idle > 0 {
            self.work.notify_one();
        } else if inner.workers < MAX_WORKERS {
            // Every worker is busy, maybe on a hung disk: a finish must not
            // wait behind it.
            let _ = self.spawn_worker(&mut inner);
        }
    }

    fn spawn_worker(&'static self, inner: &mut Inner) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("callrec-writer".into())
            .spawn(move || self.work_loop())?;
        inner.workers += 1;
        Ok(())
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
            let due: Vec<Arc<dyn Job>> = jobs.into_iter().filter(|j| j.claim_if_due()).collect();
            let mut inner = lock(&self.inner);
            if inner.waited
                && !inner.queue.is_empty()
                && inner.idle == 0
                && inner.workers < MAX_WORKERS
            {
                // Work waited a whole tick with every worker busy.
                let _ = self.spawn_worker(&mut inner);
            }
            let queued = !due.is_empty();
            inner.queue.extend(due);
            inner.waited = !inner.queue.is_empty();
            if queued && inner.idle > 0 {
                self.work.notify_all();
            }
        }
    }

    fn work_loop(&'static self) {
        loop {
            let job = {
                let mut inner = lock(&self.inner);
                loop {
                    if let Some(job) = inner.queue.pop_front() {
                        break job;
                    }
                    inner.idle += 1;
                    let (guard, timeout) = wait_timeout(&self.work, inner, WORKER_IDLE_EXIT);
                    inner = guard;
                    inner.idle -= 1;
                    if timeout.timed_out() && inner.queue.is_empty() && inner.workers > 1 {
                        inner.workers -= 1;
                        return;
                    }
                }
            };
            // A job catches its own panics; one that escapes must not end
            // the writing of every other recording.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
        }
    }
}
