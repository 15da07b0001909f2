// SPDX-License-Identifier: MPL-2.0
//! The file(s) a recording writes: one file with a channel per track
//! (`interleaved`), or one mono file per track (`separate`, `location`
//! holding `%u` for the track number). Each is a WAV we write, or a FLAC or
//! Ogg Opus file GStreamer's encoders write, with its own `.part`.

use std::io;
use std::path::{Path, PathBuf};

pub mod encoded;
pub mod metadata;
pub mod part;
pub mod safe_fs;
pub mod seal;
pub mod wav;

use self::encoded::{Codec, EncodedWriter};
use self::metadata::Metadata;
use self::wav::WavWriter;

/// How the recording's audio is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Wav,
    Encoded(Codec),
}

/// What every file of a recording is created with.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// The tags, written as each format holds them.
    pub metadata: Metadata,
    pub container: Container,
    /// Permissions of the `.part` and of the published file.
    pub mode: u32,
    /// How stale what a crash leaves may be: Ogg pages are flushed at
    /// least this often.
    pub header_interval: gst::ClockTime,
    /// Every file is encrypted to these, if set (`seal.rs`).
    pub recipients: Option<seal::Recipients>,
}

/// One file: the same calls whatever stores it.
enum TrackFile {
    Wav(WavWriter),
    Encoded(EncodedWriter),
}

macro_rules! each {
    ($file:expr, $w:ident => $body:expr) => {
        match $file {
            TrackFile::Wav($w) => $body,
            TrackFile::Encoded($w) => $body,
        }
    };
}

impl TrackFile {
    fn create(location: &Path, spec: &FileSpec, channels: u16, rate: u32) -> io::Result<Self> {
        Ok(match spec.container {
            Container::Wav => TrackFile::Wav(WavWriter::create(
                location,
                spec.mode,
                channels,
                rate,
                &spec.metadata,
                spec.recipients.as_ref(),
            )?),
            Container::Encoded(codec) => TrackFile::Encoded(EncodedWriter::create(
                location, spec, codec, channels, rate,
            )?),
        })
    }

    fn set_origination(&mut self, at: std::time::SystemTime) {
        if let TrackFile::Wav(w) = self {
            w.set_origination(at);
        }
    }

    fn channels(&self) -> u16 {
        each!(self, w => w.channels())
    }

    fn set_format(&mut self, channels: u16, rate: u32) {
        each!(self, w => w.set_format(channels, rate))
    }

    fn part(&self) -> &Path {
        each!(self, w => w.part())
    }

    fn location(&self) -> &Path {
        each!(self, w => w.location())
    }

    fn write(&mut self, interleaved: &[u8]) -> io::Result<()> {
        each!(self, w => w.write(interleaved))
    }

    fn update_header(&mut self) -> io::Result<()> {
        each!(self, w => w.update_header())
    }

    fn sync(&mut self) -> io::Result<()> {
        each!(self, w => w.sync())
    }

    fn discard(self) -> io::Result<()> {
        each!(self, w => w.discard())
    }

    fn sealed(&self) -> bool {
        each!(self, w => w.sealed())
    }
}

/// An I/O error with the file it happened to, for an error a person can act on.
#[derive(Debug)]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    pub err: io::Error,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.what, self.path.display(), self.err)
    }
}

pub struct RecordingFiles {
    /// One per file: one in all, or one per track (`separate`).
    writers: Vec<TrackFile>,
    overwrite: bool,
}

/// The file of track `track` when each track has its own.
pub fn track_location(pattern: &Path, track: u32) -> PathBuf {
    PathBuf::from(pattern.to_string_lossy().replace("%u", &track.to_string()))
}

/// Every final name a recording will publish: `location`, or one per track
/// (by the track's pad number) in separate mode.
pub fn locations(location: &Path, separate: bool, tracks: &[u32]) -> Vec<PathBuf> {
    if separate {
        tracks
            .iter()
            .map(|&t| track_location(location, t))
            .collect()
    } else {
        vec![location.to_owned()]
    }
}

/// Checks every final name before the recording starts, so a location that
/// can never be published fails the state change, not the end of the call.
pub fn check_destinations(locations: &[PathBuf], overwrite: bool) -> Result<(), FileError> {
    for location in locations {
        safe_fs::check_destination(location, overwrite).map_err(|err| FileError {
            what: "publishing the recording at",
            path: location.clone(),
            err,
        })?;
    }
    Ok(())
}

impl RecordingFiles {
    /// Opens a `.part` for every location, each with `channels` channels;
    /// on failure none is left behind.
    pub fn create(
        locations: &[PathBuf],
        spec: &FileSpec,
        channels: u16,
        rate: u32,
        overwrite: bool,
    ) -> Result<Self, FileError> {
        let mut writers = Vec::with_capacity(locations.len());
        for location in locations {
            match TrackFile::create(location, spec, channels, rate) {
                Ok(w) => writers.push(w),
                Err(err) => {
                    writers
                        .into_iter()
                        .for_each(|w: TrackFile| drop(w.discard()));
                    return Err(FileError {
                        what: "opening",
                        path: self::safe_fs::part_path(location),
                        err,
                    });
                }
            }
        }
        Ok(RecordingFiles { writers, overwrite })
    }

    /// When the first sample was recorded.
    pub fn set_origination(&mut self, at: std::time::SystemTime) {
        for w in &mut self.writers {
            w.set_origination(at);
        }
    }

    /// How many files: one, or one per track.
    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// Whether the files are encrypted, so finishing reads and rewrites
    /// all of them (`seal.rs`).
    pub fn sealed(&self) -> bool {
        self.writers.iter().any(|w| w.sealed())
    }

    /// Whether an encoder holds audio on its way to the files (its share
    /// of what a crash may lose: `crash_budget::encoder_hold`).
    pub fn encoded(&self) -> bool {
        self.writers.iter().any(|w| !matches!(w, TrackFile::Wav(_)))
    }

    /// The bytes of one frame (S16LE, every channel) in each file: all
    /// files have the same channels.
    pub fn frame_bytes(&self) -> u64 {
        2 * self.writers.first().map_or(1, |w| w.channels()) as u64
    }

    /// The rate of each file, in file order (before any audio).
    pub fn set_rates(&mut self, rates: &[u32]) {
        for (w, &rate) in self.writers.iter_mut().zip(rates) {
            let channels = w.channels();
            w.set_format(channels, rate);
        }
    }

    /// Writes frames (S16LE, interleaved when the file has more than one
    /// channel) to file `index`.
    pub fn write(&mut self, index: usize, frames: &[u8]) -> Result<(), FileError> {
        let w = &mut self.writers[index];
        w.write(frames).map_err(|err| FileError {
            what: "writing",
            path: w.part().to_owned(),
            err,
        })
    }

    pub fn update_header(&mut self) -> Result<(), FileError> {
        for w in &mut self.writers {
            w.update_header().map_err(|err| FileError {
                what: "updating the header of",
                path: w.part().to_owned(),
                err,
            })?;
        }
        Ok(())
    }

    /// Syncs every file, then publishes them all, unless `may_publish`
    /// says no by then (the caller stopped waiting): the `.part` files stay.
    pub fn finish(mut self, may_publish: impl FnOnce() -> bool) -> Result<Vec<PathBuf>, FileError> {
        for w in &mut self.writers {
            w.sync().map_err(|err| FileError {
                what: "finishing",
                path: w.part().to_owned(),
                err,
            })?;
        }
        if !may_publish() {
            return Err(FileError {
                what: "finishing",
                path: self.writers[0].part().to_owned(),
                err: io::Error::new(io::ErrorKind::TimedOut, "finished too late to be published"),
            });
        }
        let pairs: Vec<(PathBuf, PathBuf)> = self
            .writers
            .iter()
            .map(|w| (w.part().to_owned(), w.location().to_owned()))
            .collect();
        // The files are closed before they are renamed.
        drop(self.writers);
        safe_fs::publish(&pairs, self.overwrite).map_err(|e| FileError {
            what: "publishing",
            path: e.path,
            err: e.err,
        })?;
        Ok(pairs.into_iter().map(|(_, location)| location).collect())
    }

    /// The first `.part`, to name in errors that concern the recording.
    pub fn first_part(&self) -> PathBuf {
        self.writers[0].part().to_owned()
    }

    /// Removes every `.part`.
    pub fn discard(self) {
        for w in self.writers {
            let _ = w.discard();
        }
    }
}
