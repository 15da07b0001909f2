// SPDX-License-Identifier: MPL-2.0
//! A few threads that run short jobs for every element of a kind in the
//! process, so that thousands of calls do not cost a thread each.
//!
//! Jobs may block (a disk that hangs, a downstream that waits): a job
//! submitted while no worker is idle starts another worker, up to a bound,
//! so one blocked job never holds up the others. Workers beyond the first
//! end after a while with nothing to do.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::sync::{lock, wait_timeout};

/// Workers beyond the first that find no work for this long end.
const IDLE_EXIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

pub struct Workers {
    name: &'static str,
    max: usize,
    inner: Mutex<Inner>,
    work: Condvar,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

impl Workers {
    /// Workers whose threads are named `name`, at most `max` of them.
    pub const fn new(name: &'static str, max: usize) -> Workers {
        Workers {
            name,
            max,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
            }),
            work: Condvar::new(),
        }
    }

    /// Runs `job` on a worker soon.
    pub fn submit(&'static self, job: impl FnOnce() + Send + 'static) {
        self.submit_all(std::iter::once(Box::new(job) as Job));
    }

    /// Runs every job of `jobs` on the workers soon. At most one worker is
    /// started for them: a batch is work for the workers there are, unless
    /// none is free.
    pub fn submit_all(&'static self, jobs: impl IntoIterator<Item = Job>) {
        let mut inner = lock(&self.inner);
        let before = inner.queue.len();
        inner.queue.extend(jobs);
        let added = inner.queue.len() - before;
        if added == 0 {
            return;
        }
        if inner.idle == 0 && inner.workers < self.max {
            // Never run here instead: the caller may hold locks a job takes.
            // Without a new thread the jobs wait for a worker, or for the
            // next submission to start one.
            let _ = self.spawn(&mut inner);
        } else if added == 1 {
            self.work.notify_one();
        } else {
            self.work.notify_all();
        }
    }

    /// (workers, idle workers) now.
    pub fn counts(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.workers, inner.idle)
    }

    fn spawn(&'static self, inner: &mut Inner) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || self.work_loop())?;
        inner.workers += 1;
        Ok(())
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
                    let (guard, timeout) = wait_timeout(&self.work, inner, IDLE_EXIT);
                    inner = guard;
                    inner.idle -= 1;
                    if timeout.timed_out() && inner.queue.is_empty() && inner.workers > 1 {
                        inner.workers -= 1;
                        return;
                    }
                }
            };
            run(job);
        }
    }
}

/// A job's panic must not end the worker that every other job needs.
fn run(job: Job) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_blocked_job_does_not_hold_up_the_next() {
        static WORKERS: Workers = Workers::new("test-worker", 4);
        let (release, blocked) = mpsc::channel::<()>();
        WORKERS.submit(move || {
            let _ = blocked.recv();
        });
        let (tx, rx) = mpsc::channel();
        WORKERS.submit(move || tx.send("ran").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("ran"));
        assert!(WORKERS.counts().0 >= 2);
        release.send(()).unwrap();
    }

    #[test]
    fn a_panicking_job_leaves_the_workers_working() {
        static WORKERS: Workers = Workers::new("test-worker", 1);
        WORKERS.submit(|| panic!("test: a job panics"));
        let (tx, rx) = mpsc::channel();
        WORKERS.submit(move || tx.send(1).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        assert_eq!(WORKERS.counts().0, 1);
    }
}
