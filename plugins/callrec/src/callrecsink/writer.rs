//! The recording's files, written by a thread of their own.
//!
//! A streaming thread must never block on the disk: one stuck in `write(2)`
//! holds its pad's stream lock, and then even stopping the pipeline waits
//! for the disk. So audio is handed over in blocks through a bounded queue;
//! every wait for the writer (queue space, the final fsync, removing the
//! `.part`) is bounded by `disk_timeout`, after which the recording fails
//! with an error that says so, and a writer still stuck in the kernel is
//! left behind without ever publishing.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use callaudio::sync::{lock, wait, wait_timeout_while};
use std::time::Duration;

use super::files::{FileError, RecordingFiles};

/// Audio is handed to the writer in blocks of this size...
const BLOCK_BYTES: usize = 64 * 1024;
/// ...and at most this much may wait for it.
const QUEUE_LIMIT_BYTES: usize = 1 << 20;

enum Command {
    /// The rate of each file.
    SetRates(Vec<u32>),
    SetOrigination(std::time::SystemTime),
    /// Audio for one lane (file), then (if set) a header rewrite.
    Write(usize, Vec<u8>, bool),
    Finish,
    Discard,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Command>,
    queued_bytes: usize,
    /// The writer's first failure, until the streaming side reports it.
    failed: Option<FileError>,
    /// The answer to `Finish` or `Discard`.
    finished: Option<Result<Vec<PathBuf>, FileError>>,
    /// Set by the streaming side when it stops waiting for `Finish`.
    abandoned: bool,
    /// Set by the writer once it is past the abandon check, publishing.
    publishing: bool,
    /// Who sleeps on a condvar now: a wake-up is only signalled to a sleeper
    /// (each signal is a system call, and a thousand recordings add up).
    writer_sleeps: bool,
    callers_waiting: usize,
}

struct Channel {
    shared: Mutex<Shared>,
    /// Wakes the writer: a command is queued.
    to_writer: Condvar,
    /// Wakes the streaming side: queue space, a failure, or an answer.
    to_caller: Condvar,
    /// Mirrors `shared.failed`, so the per-buffer path takes no lock.
    failed: AtomicBool,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// Waits on the streaming side while `busy` holds, at most `timeout`;
    /// returns the guard and whether it timed out.
    fn wait_caller<'a>(
        &'a self,
        mut shared: MutexGuard<'a, Shared>,
        timeout: Duration,
        mut busy: impl FnMut(&Shared) -> bool,
    ) -> (MutexGuard<'a, Shared>, bool) {
        if !busy(&shared) {
            return (shared, false);
        }
        shared.callers_waiting += 1;
        let (mut shared, result) =
            wait_timeout_while(&self.to_caller, shared, timeout, |s| busy(s));
        shared.callers_waiting -= 1;
        (shared, result.timed_out())
    }

    fn wake_callers(&self, shared: &Shared) {
        if shared.callers_waiting > 0 {
            self.to_caller.notify_all();
        }
    }
}

/// What is handed over for one file.
struct Lane {
    pending: Vec<u8>,
    bytes: u64,
}

pub struct FileWriter {
    channel: Arc<Channel>,
    /// One per file (`separate`), or one for the single file.
    lanes: Vec<Lane>,
    bytes_per_frame: u64,
    part: PathBuf,
    disk_timeout: Duration,
}

impl FileWriter {
    /// Starts the writer thread for `files`, whose frames (in every file)
    /// are `bytes_per_frame` bytes.
    pub fn spawn(
        files: RecordingFiles,
        bytes_per_frame: u64,
        disk_timeout: Duration,
    ) -> Result<Self, FileError> {
        let lanes = (0..files.len())
            .map(|_| Lane {
                pending: Vec::with_capacity(BLOCK_BYTES),
                bytes: 0,
            })
            .collect();
        let part = files.first_part();
        let channel = Arc::new(Channel {
            shared: Mutex::new(Shared::default()),
            to_writer: Condvar::new(),
            to_caller: Condvar::new(),
            failed: AtomicBool::new(false),
        });
        let writer = channel.clone();
        std::thread::Builder::new()
            .name("callrec-writer".into())
            .spawn(move || {
                let part = files.first_part();
                let ran =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(files, &writer)));
                if let Err(panic) = ran {
                    // Whoever waits learns at once, not after disk_timeout.
                    let text = callaudio::sync::panic_text(&*panic);
                    let failure = || FileError {
                        what: "writing",
                        path: part.clone(),
                        err: io::Error::other(format!("the writer thread panicked: {text}")),
                    };
                    let mut shared = writer.lock();
                    shared.failed = Some(failure());
                    shared.finished = Some(Err(failure()));
                    writer.failed.store(true, Ordering::Release);
                    writer.wake_callers(&shared);
                }
            })
            .map_err(|err| FileError {
                what: "starting the writer for",
                path: part.clone(),
                err,
            })?;
        Ok(FileWriter {
            channel,
            lanes,
            bytes_per_frame,
            part,
            disk_timeout,
        })
    }

    /// When the first sample was recorded (WAV's `bext`).
    pub fn set_origination(&mut self, at: std::time::SystemTime) {
        let _ = self.send(Command::SetOrigination(at), 0);
    }

    /// The rate of each file, in file order.
    pub fn set_rates(&mut self, rates: Vec<u32>) {
        let _ = self.send(Command::SetRates(rates), 0);
    }

    /// Frames handed over so far for file `lane`.
    pub fn frames(&self, lane: usize) -> u64 {
        self.lanes[lane].bytes / self.bytes_per_frame
    }

    pub fn write(&mut self, lane: usize, frames: &[u8]) -> Result<(), FileError> {
        self.check()?;
        let l = &mut self.lanes[lane];
        l.pending.extend_from_slice(frames);
        l.bytes += frames.len() as u64;
        if l.pending.len() >= BLOCK_BYTES {
            self.flush_lane(lane, false)?;
        }
        Ok(())
    }

    /// Makes what was handed over so far playable on disk, once the writer
    /// gets to it.
    pub fn update_header(&mut self) -> Result<(), FileError> {
        self.check()?;
        self.flush(true)
    }

    /// Writes the rest, syncs and publishes, waiting at most `disk_timeout`.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, FileError> {
        self.flush(false)?;
        self.send(Command::Finish, 0)?;
        let channel = self.channel.clone();
        let (mut shared, timed_out) =
            channel.wait_caller(channel.lock(), self.disk_timeout, |s| s.finished.is_none());
        if timed_out && !shared.publishing {
            // Nothing may be published after we have said it failed.
            shared.abandoned = true;
            return Err(self.disk_stuck("finishing"));
        }
        if shared.finished.is_none() {
            // Publishing began just in time: a rename is brief, unless the
            // disk hangs there too.
            shared = channel
                .wait_caller(shared, self.disk_timeout, |s| s.finished.is_none())
                .0;
        }
        shared
            .finished
            .take()
            .unwrap_or_else(|| Err(self.disk_stuck("publishing")))
    }

    /// Ends the recording without publishing: what was handed over is
    /// written and made playable under the partial name, waiting at most
    /// `disk_timeout`.
    pub fn keep(mut self) {
        if self.check().is_ok() {
            let _ = self.flush(true);
        }
        let channel = self.channel.clone();
        {
            let mut shared = channel.lock();
            shared.abandoned = true;
            shared.queue.push_back(Command::Discard);
            if shared.writer_sleeps {
                channel.to_writer.notify_one();
            }
        }
        let _ = channel.wait_caller(channel.lock(), self.disk_timeout, |s| s.finished.is_none());
    }

    /// Removes every `.part`, waiting at most `disk_timeout`.
    pub fn discard(self) {
        if self.send(Command::Discard, 0).is_err() {
            return;
        }
        let channel = self.channel.clone();
        let _ = channel.wait_caller(channel.lock(), self.disk_timeout, |s| s.finished.is_none());
    }

    /// Reports the writer's failure, once.
    fn check(&mut self) -> Result<(), FileError> {
        if !self.channel.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.channel.lock().failed.take() {
            Some(err) => Err(err),
            None => Err(FileError {
                what: "writing",
                path: self.part.clone(),
                err: io::Error::other("the writer failed earlier"),
            }),
        }
    }

    /// Hands over what every lane has pending; `header`: then rewrite the
    /// headers.
    fn flush(&mut self, header: bool) -> Result<(), FileError> {
        let last = self.lanes.len() - 1;
        for lane in 0..=last {
            self.flush_lane(lane, header && lane == last)?;
        }
        Ok(())
    }

    fn flush_lane(&mut self, lane: usize, header: bool) -> Result<(), FileError> {
        let pending = &mut self.lanes[lane].pending;
        if pending.is_empty() && !header {
            return Ok(());
        }
        let block = std::mem::replace(pending, Vec::with_capacity(BLOCK_BYTES));
        let len = block.len();
        self.send(Command::Write(lane, block, header), len)
    }

    /// Queues a command, waiting at most `disk_timeout` for space.
    fn send(&self, command: Command, len: usize) -> Result<(), FileError> {
        let channel = &self.channel;
        let (mut shared, timed_out) = channel.wait_caller(channel.lock(), self.disk_timeout, |s| {
            s.queued_bytes + len > QUEUE_LIMIT_BYTES && s.failed.is_none()
        });
        if timed_out {
            return Err(self.disk_stuck("writing"));
        }
        shared.queued_bytes += len;
        shared.queue.push_back(command);
        if shared.writer_sleeps {
            channel.to_writer.notify_one();
        }
        Ok(())
    }

    fn disk_stuck(&self, what: &'static str) -> FileError {
        FileError {
            what,
            path: self.part.clone(),
            err: io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the disk did not respond within {:?}", self.disk_timeout),
            ),
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // The writer ends once it has nothing left; a recording dropped
        // without finish or discard keeps its `.part`.
        let mut shared = self.channel.lock();
        shared.abandoned = true;
        shared.queue.push_back(Command::Discard);
        if shared.writer_sleeps {
            self.channel.to_writer.notify_one();
        }
    }
}

/// The writer thread: applies commands in order until `Finish` or `Discard`.
fn run(mut files: RecordingFiles, channel: &Channel) {
    loop {
        let command = {
            let mut shared = channel.lock();
            while shared.queue.is_empty() {
                shared.writer_sleeps = true;
                shared = wait(&channel.to_writer, shared);
                shared.writer_sleeps = false;
            }
            let command = shared.queue.pop_front().unwrap();
            if let Command::Write(_, block, _) = &command {
                shared.queued_bytes -= block.len();
            }
            channel.wake_callers(&shared);
            command
        };
        match command {
            Command::SetRates(rates) => files.set_rates(&rates),
            Command::SetOrigination(at) => files.set_origination(at),
            Command::Write(lane, block, header) => {
                if channel.failed.load(Ordering::Acquire) {
                    continue;
                }
                let result = files.write(lane, &block).and_then(|_| {
                    if header {
                        files.update_header()
                    } else {
                        Ok(())
                    }
                });
                if let Err(err) = result {
                    // Keep what is on disk playable under the partial name.
                    let _ = files.update_header();
                    let mut shared = channel.lock();
                    shared.failed = Some(err);
                    channel.failed.store(true, Ordering::Release);
                    channel.wake_callers(&shared);
                }
            }
            Command::Finish => {
                let failed = channel.lock().failed.take();
                let result = match failed {
                    Some(err) => Err(err),
                    None => files.finish(|| {
                        let mut shared = channel.lock();
                        shared.publishing = !shared.abandoned;
                        shared.publishing
                    }),
                };
                let mut shared = channel.lock();
                shared.finished = Some(result);
                channel.wake_callers(&shared);
                return;
            }
            Command::Discard => {
                let abandoned = channel.lock().abandoned;
                if !abandoned {
                    files.discard();
                }
                let mut shared = channel.lock();
                shared.finished = Some(Ok(Vec::new()));
                channel.wake_callers(&shared);
                return;
            }
        }
    }
}
