// SPDX-License-Identifier: MPL-2.0
//! The recording's files, written by the process's writer pool
//! (`pool.rs`), never by a streaming thread.
//!
//! A streaming thread must never block on the disk: one stuck in `write(2)`
//! holds its pad's stream lock, and then even stopping the pipeline waits
//! for the disk. So audio is only gathered here (up to `STAGE_BYTES`, lock
//! free), then appended to a bounded buffer under a lock a worker holds
//! just to take it; the pool writes it when a header is due (every
//! `header-interval`), when a lane holds a full block, or for a command
//! (finish, discard). Every wait for the disk (buffer space, the
//! final fsync, removing the `.part`) is bounded by `disk_timeout`, after
//! which the recording fails with an error that says so, and a worker still
//! stuck in the kernel is left behind without ever publishing.
//!
//! Lock order: `Channel::files`, then `Channel::shared`. Only the worker
//! running the job takes `files`, and holds it across the I/O; `shared` is
//! only ever held briefly (to hand audio over, to take it, to count it),
//! so a worker stuck in the kernel never blocks the streaming side or the
//! pool's ticker, which take `shared` alone.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callaudio::sync::{lock, wait_timeout_while};

pub mod pool;

use self::pool::Job;
use super::crash_budget::{stage_limit, write_due};
use crate::callrecsink::files::{FileError, RecordingFiles};

/// A lane holding this much is written at once rather than at its next
/// header...
const BLOCK_BYTES: usize = 64 * 1024;
/// ...and at most this much may wait for the disk.
const QUEUE_LIMIT_BYTES: usize = 1 << 20;
/// The streaming side gathers up to this much of one lane (and for at most
/// `header_interval`) before it hands it over, so most buffers touch
/// nothing the pool touches: at a thousand calls the shared state is out of
/// the cache by the next buffer, and reaching it was a sixth of the
/// recorder's cost. 128 ms of 8 kHz stereo.
const STAGE_BYTES: usize = 4096;

/// What happens to the files after the last audio.
enum End {
    Finish,
    /// Remove the `.part` files, unless the recording was abandoned (then
    /// they are kept, playable).
    Discard,
}

struct Shared {
    /// Per lane (file): audio handed over and not yet taken by a worker.
    pending: Vec<Vec<u8>>,
    /// Bytes handed over and not yet written (pending or being written).
    unwritten: usize,
    rates: Option<Vec<u32>>,
    origination: Option<std::time::SystemTime>,
    end: Option<End>,
    /// Rewrite the headers at the next run, due or not.
    header_asked: bool,
    /// Audio was written since the last header rewrite.
    dirty: bool,
    last_header: Instant,
    /// In the pool's queue or in a worker.
    claimed: bool,
    /// The writer's first failure, until the streaming side reports it.
    failed: Option<FileError>,
    /// The answer to the end.
    finished: Option<Result<Vec<PathBuf>, FileError>>,
    /// Set by the streaming side when it stops waiting for `Finish`.
    abandoned: bool,
    /// Set by the worker once it is past the abandon check, publishing.
    publishing: bool,
    callers_waiting: usize,
}

impl Shared {
    /// Work a worker should do now, rather than at a later tick.
    fn urgent(&self) -> bool {
        self.end.is_some()
            || self.header_asked
            || self.pending.iter().any(|p| p.len() >= BLOCK_BYTES)
    }

    fn has_work(&self, interval: Duration) -> bool {
        self.urgent()
            || self.rates.is_some()
            || self.origination.is_some()
            || ((self.dirty || self.unwritten > 0) && self.last_header.elapsed() >= interval)
    }
}

struct Channel {
    shared: Mutex<Shared>,
    /// Wakes the streaming side: buffer space, a failure, or the answer.
    to_caller: Condvar,
    /// Mirrors `shared.failed`, so the per-buffer path skips a check.
    failed: AtomicBool,
    /// Only the worker running this job touches them.
    files: Mutex<Option<RecordingFiles>>,
    /// How long audio handed over may wait (`write_due`).
    write_due: Duration,
    /// What one write hands a file at most: whole frames.
    chunk_bytes: usize,
    /// Set once the end is done: the pool forgets the job.
    over: AtomicBool,
    part: PathBuf,
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

    fn fail(&self, shared: &mut Shared, err: FileError) {
        shared.failed.get_or_insert(err);
        self.failed.store(true, Ordering::Release);
        self.wake_callers(shared);
    }

    /// One run in a worker: everything the job has now, in order: the
    /// files' settings, the audio, the headers, the end. Whether it has
    /// more to do at once (it stays claimed then).
    fn write_out(&self) -> bool {
        let (rates, origination, blocks, end, header_asked, header_due, dirty) = {
            let mut shared = self.lock();
            let blocks: Vec<(usize, Vec<u8>)> = shared
                .pending
                .iter_mut()
                .enumerate()
                .filter(|(_, p)| !p.is_empty())
                // Not kept at its size: a thousand idle-ish calls would each
                // hold a second of audio's worth of capacity.
                .map(|(lane, p)| (lane, std::mem::take(p)))
                .collect();
            let header_asked = std::mem::take(&mut shared.header_asked);
            let header_due = shared.last_header.elapsed() >= self.write_due;
            (
                shared.rates.take(),
                shared.origination.take(),
                blocks,
                shared.end.take(),
                header_asked,
                header_due,
                shared.dirty,
            )
        };
        let mut files_slot = lock(&self.files);
        let Some(files) = files_slot.as_mut() else {
            return self.release();
        };
        if let Some(rates) = rates {
            files.set_rates(&rates);
        }
        if let Some(at) = origination {
            files.set_origination(at);
        }
        let failed = self.failed.load(Ordering::Acquire);
        let mut written = 0;
        let mut result = Ok(());
        for (lane, block) in &blocks {
            written += block.len();
            // In whole-frame chunks: a write that fails part way leaves the
            // header counting every chunk before it, as the file holds them.
            for chunk in block.chunks(self.chunk_bytes) {
                if failed || result.is_err() {
                    break;
                }
                result = files.write(*lane, chunk);
            }
        }
        let rewrite = (header_asked || header_due) && (written > 0 || header_asked || dirty);
        if !failed && result.is_ok() && rewrite {
            result = files.update_header();
        }
        if result.is_err() {
            // Keep what is on disk playable under the partial name.
            let _ = files.update_header();
        }
        {
            let mut shared = self.lock();
            if rewrite {
                shared.dirty = false;
                shared.last_header = Instant::now();
            } else if written > 0 {
                shared.dirty = true;
            }
            shared.unwritten -= written;
            if let Err(err) = result {
                self.fail(&mut shared, err);
            }
            self.wake_callers(&shared);
        }
        match end {
            None => {
                drop(files_slot);
                self.release()
            }
            Some(End::Finish) => {
                let files = files_slot.take().expect("checked above");
                drop(files_slot);
                // A failure already reported to the streaming side (which
                // then does not finish) still forbids publishing.
                let failed = self.lock().failed.take().or_else(|| {
                    self.failed
                        .load(Ordering::Acquire)
                        .then(|| failed_earlier(&self.part))
                });
                let result = match failed {
                    Some(err) => Err(err),
                    None => files.finish(|| {
                        let mut shared = self.lock();
                        shared.publishing = !shared.abandoned;
                        shared.publishing
                    }),
                };
                self.end_with(result);
                false
            }
            Some(End::Discard) => {
                let files = files_slot.take().expect("checked above");
                drop(files_slot);
                if !self.lock().abandoned {
                    files.discard();
                }
                self.end_with(Ok(Vec::new()));
                false
            }
        }
    }

    fn end_with(&self, result: Result<Vec<PathBuf>, FileError>) {
        let mut shared = self.lock();
        shared.finished = Some(result);
        shared.claimed = false;
        self.over.store(true, Ordering::Release);
        self.wake_callers(&shared);
    }

    /// Done with this run, unless something urgent came meanwhile (then it
    /// stays claimed and runs again); else the next tick or command queues
    /// it again.
    fn release(&self) -> bool {
        let mut shared = self.lock();
        let again = shared.urgent() && !self.over.load(Ordering::Acquire);
        shared.claimed = again;
        again
    }
}

impl Job for Channel {
    fn claim_if_due(&self) -> bool {
        let mut shared = self.lock();
        if shared.claimed || self.over.load(Ordering::Acquire) || !shared.has_work(self.write_due) {
            return false;
        }
        shared.claimed = true;
        true
    }

    fn claim(&self) -> bool {
        let mut shared = self.lock();
        if shared.claimed || self.over.load(Ordering::Acquire) {
            return false;
        }
        shared.claimed = true;
        true
    }

    fn run(&self) {
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| while self.write_out() {}));
        if let Err(panic) = ran {
            // Whoever waits learns at once, not after disk_timeout.
            let text = callaudio::sync::panic_text(&*panic);
            let failure = || FileError {
                what: "writing",
                path: self.part.clone(),
                err: io::Error::other(format!("the writer panicked: {text}")),
            };
            {
                let mut shared = self.lock();
                self.fail(&mut shared, failure());
            }
            self.end_with(Err(failure()));
        }
    }

    fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }
}

/// A failure whose error was reported once already.
fn failed_earlier(part: &std::path::Path) -> FileError {
    FileError {
        what: "writing",
        path: part.to_owned(),
        err: io::Error::other("the writer failed earlier"),
    }
}

/// Audio of one lane not handed over yet (see `STAGE_BYTES`).
struct Stage {
    lane: usize,
    bytes: Vec<u8>,
    since: Instant,
}

pub struct FileWriter {
    channel: Arc<Channel>,
    stage: Stage,
    /// The channel's, copied: the per-buffer path reads nothing of the
    /// channel (see `STAGE_BYTES`).
    header_interval: Duration,
    /// Bytes handed over per lane (file).
    handed: Vec<u64>,
    /// One frame of a file (every file has the same channels).
    frame_bytes: u64,
    part: PathBuf,
    disk_timeout: Duration,
    /// Encrypted: finishing reads back and rewrites every byte.
    sealed: bool,
}

/// The slowest an encrypted recording is expected to be read back,
/// re-encrypted and written at its end: this machine does 290 MB/s
/// (`seal.rs`'s `finishes_an_hour`), a busy disk far less.
const SEAL_FLOOR_BYTES_PER_SEC: u64 = 16_000_000;

impl FileWriter {
    /// Hands `files` to the writer pool; headers are rewritten every
    /// `header_interval` while audio comes.
    pub fn spawn(
        files: RecordingFiles,
        disk_timeout: Duration,
        header_interval: Duration,
    ) -> Result<Self, FileError> {
        let lanes = files.len();
        let frame_bytes = files.frame_bytes();
        let encoded = files.encoded();
        let part = files.first_part();
        let sealed = files.sealed();
        let channel = Arc::new(Channel {
            shared: Mutex::new(Shared {
                pending: vec![Vec::new(); lanes],
                unwritten: 0,
                rates: None,
                origination: None,
                end: None,
                header_asked: false,
                dirty: false,
                last_header: Instant::now(),
                claimed: false,
                failed: None,
                finished: None,
                abandoned: false,
                publishing: false,
                callers_waiting: 0,
            }),
            to_caller: Condvar::new(),
            failed: AtomicBool::new(false),
            files: Mutex::new(Some(files)),
            write_due: write_due(header_interval, encoded),
            chunk_bytes: (BLOCK_BYTES / frame_bytes as usize).max(1) * frame_bytes as usize,
            over: AtomicBool::new(false),
            part: part.clone(),
        });
        let job: Arc<dyn Job> = channel.clone();
        pool::pool()
            .add(Arc::downgrade(&job))
            .map_err(|err| FileError {
                what: "starting the writer for",
                path: part.clone(),
                err,
            })?;
        Ok(FileWriter {
            channel,
            stage: Stage {
                lane: 0,
                bytes: Vec::new(),
                since: Instant::now(),
            },
            header_interval,
            handed: vec![0; lanes],
            frame_bytes,
            part,
            disk_timeout,
            sealed,
        })
    }

    /// How long finishing may take: `disk_timeout`, plus, when encrypted,
    /// the time to rewrite what was handed over at the floor rate.
    pub fn finish_bound(&self) -> Duration {
        if !self.sealed {
            return self.disk_timeout;
        }
        let bytes: u64 = self.handed.iter().sum();
        self.disk_timeout.saturating_add(Duration::from_millis(
            bytes.saturating_mul(1000) / SEAL_FLOOR_BYTES_PER_SEC,
        ))
    }

    /// When the first sample was recorded (WAV's `bext`).
    pub fn set_origination(&mut self, at: std::time::SystemTime) {
        self.channel.lock().origination = Some(at);
    }

    /// The rate of each file, in file order.
    pub fn set_rates(&mut self, rates: Vec<u32>) {
        self.channel.lock().rates = Some(rates);
    }

    /// Frames handed over so far for file `lane`.
    pub fn frames(&self, lane: usize) -> u64 {
        self.handed[lane] / self.frame_bytes
    }

    /// Appends `frames` to file `lane`. A failure of the writer is
    /// reported here, at the latest when the stage is next handed over.
    pub fn write(&mut self, lane: usize, frames: &[u8]) -> Result<(), FileError> {
        // A mixed lane has nothing ready until its last track's buffer.
        if frames.is_empty() {
            return Ok(());
        }
        if lane != self.stage.lane || self.stage.bytes.len() + frames.len() > STAGE_BYTES {
            self.hand_over()?;
        }
        self.handed[lane] += frames.len() as u64;
        if frames.len() > STAGE_BYTES {
            return self.hand_over_bytes(lane, frames);
        }
        if self.stage.bytes.is_empty() {
            self.stage.lane = lane;
            self.stage.since = Instant::now();
            self.stage.bytes.reserve_exact(STAGE_BYTES);
        }
        self.stage.bytes.extend_from_slice(frames);
        if self.stage.since.elapsed() >= stage_limit(self.header_interval) {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands the stage to the pool.
    fn hand_over(&mut self) -> Result<(), FileError> {
        if self.stage.bytes.is_empty() {
            return self.check();
        }
        let bytes = std::mem::take(&mut self.stage.bytes);
        let result = self.hand_over_bytes(self.stage.lane, &bytes);
        self.stage.bytes = bytes;
        self.stage.bytes.clear();
        result
    }

    fn hand_over_bytes(&mut self, lane: usize, frames: &[u8]) -> Result<(), FileError> {
        self.check()?;
        let len = frames.len();
        let channel = &self.channel;
        let (mut shared, timed_out) = channel.wait_caller(channel.lock(), self.disk_timeout, |s| {
            s.unwritten + len > QUEUE_LIMIT_BYTES && s.failed.is_none()
        });
        if timed_out {
            return Err(self.disk_stuck("writing"));
        }
        if let Some(err) = shared.failed.take() {
            return Err(err);
        }
        shared.pending[lane].extend_from_slice(frames);
        shared.unwritten += len;
        let full = shared.pending[lane].len() >= BLOCK_BYTES;
        drop(shared);
        if full {
            self.queue_now();
        }
        Ok(())
    }

    /// Makes what was handed over so far playable on disk, once a worker
    /// gets to it.
    pub fn update_header(&mut self) -> Result<(), FileError> {
        self.hand_over()?;
        self.channel.lock().header_asked = true;
        self.queue_now();
        Ok(())
    }

    /// Writes the rest, syncs and publishes, waiting at most `disk_timeout`.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, FileError> {
        self.hand_over()?;
        self.end(End::Finish);
        let channel = self.channel.clone();
        let (mut shared, timed_out) =
            channel.wait_caller(channel.lock(), self.finish_bound(), |s| {
                s.finished.is_none()
            });
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
        let _ = self.hand_over();
        {
            let mut shared = self.channel.lock();
            shared.abandoned = true;
            shared.header_asked = true;
        }
        self.end(End::Discard);
        let channel = self.channel.clone();
        let _ = channel.wait_caller(channel.lock(), self.disk_timeout, |s| s.finished.is_none());
    }

    /// Removes every `.part`, waiting at most `disk_timeout`.
    pub fn discard(self) {
        self.end(End::Discard);
        let channel = self.channel.clone();
        let _ = channel.wait_caller(channel.lock(), self.disk_timeout, |s| s.finished.is_none());
    }

    fn end(&self, end: End) {
        self.channel.lock().end.get_or_insert(end);
        self.queue_now();
    }

    fn queue_now(&self) {
        let job: Arc<dyn Job> = self.channel.clone();
        pool::pool().queue_now(job);
    }

    /// Reports the writer's failure, once.
    fn check(&mut self) -> Result<(), FileError> {
        if !self.channel.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self
            .channel
            .lock()
            .failed
            .take()
            .unwrap_or_else(|| failed_earlier(&self.part)))
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
        // A recording dropped without finish or discard keeps its `.part`,
        // with what was staged.
        let mut shared = self.channel.lock();
        if shared.end.is_none() && shared.finished.is_none() {
            shared.unwritten += self.stage.bytes.len();
            shared.pending[self.stage.lane].append(&mut self.stage.bytes);
            shared.abandoned = true;
            shared.end = Some(End::Discard);
            drop(shared);
            self.queue_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callrecsink::files::{self, Container, FileSpec};

    fn writer(name: &str, header_interval: Duration) -> (FileWriter, PathBuf) {
        gst::init().unwrap();
        let dir =
            std::env::temp_dir().join(format!("callrec-writer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let location = dir.join("call.wav");
        let spec = FileSpec {
            metadata: Default::default(),
            container: Container::Wav,
            mode: 0o600,
            header_interval: gst::ClockTime::SECOND,
            recipients: None,
        };
        let locations = files::locations(&location, false, &[0]);
        let files = RecordingFiles::create(&locations, &spec, 1, 8000, false).unwrap();
        let writer = FileWriter::spawn(files, Duration::from_secs(5), header_interval).unwrap();
        (writer, location)
    }

    /// Audio handed over while the pool's ticks write and rewrite headers,
    /// then a finish that may land while a worker is in the middle of a
    /// run: every sample reaches the published file, in order.
    #[test]
    fn finish_racing_the_ticks_loses_nothing() {
        for round in 0..20 {
            let (mut writer, location) = writer(&format!("race{round}"), Duration::ZERO);
            writer.set_rates(vec![8000]);
            let mut expected = Vec::new();
            for k in 0..(round * 7 + 3) {
                let frames: Vec<i16> = (0..160).map(|i| (k * 160 + i) as i16).collect();
                let bytes: Vec<u8> = frames.iter().flat_map(|s| s.to_le_bytes()).collect();
                writer.write(0, &bytes).unwrap();
                expected.extend(frames);
                if k % 5 == 0 {
                    std::thread::sleep(Duration::from_millis(7));
                }
            }
            let published = writer.finish().unwrap();
            assert_eq!(published, std::slice::from_ref(&location));
            let mut reader = hound::WavReader::open(&location).unwrap();
            let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
            assert_eq!(samples, expected, "round {round}");
        }
    }

    /// Audio staged on the streaming side (less than `STAGE_BYTES`, long
    /// before a header is due) reaches the published file whole and in
    /// order, across the hand-overs at `STAGE_BYTES` and the last one at
    /// finish; writes larger than the stage go straight through.
    #[test]
    fn staged_audio_is_all_published_in_order() {
        let (mut writer, location) = writer("staged", Duration::from_secs(3600));
        writer.set_rates(vec![8000]);
        let mut expected = Vec::new();
        for (k, frames) in [160usize, 7, 160, 3000, 1, 160, 2047, 160]
            .iter()
            .enumerate()
        {
            let samples: Vec<i16> = (0..*frames).map(|i| (k * 1000 + i) as i16).collect();
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            writer.write(0, &bytes).unwrap();
            expected.extend(samples);
            assert_eq!(writer.frames(0), expected.len() as u64);
        }
        writer.finish().unwrap();
        let mut reader = hound::WavReader::open(&location).unwrap();
        let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(samples, expected);
    }

    /// A recording that ends without publishing (`keep`) leaves its `.part`
    /// playable, its header counting what was handed over.
    #[test]
    fn a_kept_recording_leaves_a_playable_part() {
        let (mut writer, location) = writer("dropped", Duration::from_secs(3600));
        writer.set_rates(vec![8000]);
        writer.write(0, &[1, 0, 2, 0, 3, 0]).unwrap();
        writer.keep();
        assert!(!location.exists());
        let part = PathBuf::from(format!("{}.part", location.display()));
        let reader = hound::WavReader::open(&part).unwrap();
        assert_eq!(reader.duration(), 3);
    }
}
