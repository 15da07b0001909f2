//! The file(s) a recording writes: one WAV with a channel per track
//! (`interleaved`), or one mono WAV per track (`separate`, `location` holding
//! `%u` for the track number). Each is a `WavWriter` with its own `.part`.

use std::io;
use std::path::{Path, PathBuf};

use super::wav::WavWriter;

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
    writers: Vec<WavWriter>,
    separate: bool,
    /// Reused when splitting interleaved frames into per-track files.
    split: Vec<u8>,
}

/// The file of track `track` when each track has its own.
pub fn track_location(pattern: &Path, track: usize) -> PathBuf {
    PathBuf::from(pattern.to_string_lossy().replace("%u", &track.to_string()))
}

impl RecordingFiles {
    /// Opens every `.part`; on failure none is left behind.
    pub fn create(
        location: &Path,
        separate: bool,
        tracks: usize,
        mode: u32,
        rate: u32,
    ) -> Result<Self, FileError> {
        let locations: Vec<PathBuf> = if separate {
            (0..tracks).map(|t| track_location(location, t)).collect()
        } else {
            vec![location.to_owned()]
        };
        let channels = if separate { 1 } else { tracks as u16 };
        let mut writers = Vec::with_capacity(locations.len());
        for location in &locations {
            match WavWriter::create(location, mode, channels, rate) {
                Ok(w) => writers.push(w),
                Err(err) => {
                    writers
                        .into_iter()
                        .for_each(|w: WavWriter| drop(w.discard()));
                    return Err(FileError {
                        what: "opening",
                        path: super::wav::part_path(location),
                        err,
                    });
                }
            }
        }
        Ok(RecordingFiles {
            writers,
            separate,
            split: Vec::new(),
        })
    }

    pub fn set_rate(&mut self, rate: u32) {
        for w in &mut self.writers {
            let channels = w.channels();
            w.set_format(channels, rate);
        }
    }

    /// Writes interleaved S16LE frames of every track.
    pub fn write(&mut self, interleaved: &[u8]) -> Result<(), FileError> {
        if !self.separate {
            let w = &mut self.writers[0];
            return w.write(interleaved).map_err(|err| FileError {
                what: "writing",
                path: w.part().to_owned(),
                err,
            });
        }
        let stride = 2 * self.writers.len();
        for (t, w) in self.writers.iter_mut().enumerate() {
            self.split.clear();
            self.split.extend(
                interleaved
                    .chunks_exact(stride)
                    .flat_map(|f| [f[2 * t], f[2 * t + 1]]),
            );
            w.write(&self.split).map_err(|err| FileError {
                what: "writing",
                path: w.part().to_owned(),
                err,
            })?;
        }
        Ok(())
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
        let mut published = Vec::with_capacity(self.writers.len());
        for w in self.writers {
            let part = w.part().to_owned();
            published.push(w.publish().map_err(|err| FileError {
                what: "publishing",
                path: part,
                err,
            })?);
        }
        Ok(published)
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
