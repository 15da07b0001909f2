// SPDX-License-Identifier: MPL-2.0
//! A WAV (PCM S16LE) file written under `<location>.part` and renamed to
//! `location` only once complete.
//!
//! The header reserves a 36-byte `JUNK` chunk that becomes RF64's `ds64`
//! when the data passes 4 GiB, so a long recording never needs its audio moved.
//! The header can be rewritten at any time, so a killed process leaves a
//! `.part` that plays up to the last rewrite. An encrypted `.part` cannot
//! be rewritten: its header says "length unknown" (`0xFFFFFFFF`, as a
//! stream's does) until the finished file gets the real one.

use std::io;
use std::path::{Path, PathBuf};

use super::metadata::Metadata;
use super::part::Part;
use super::safe_fs;
use super::seal::Recipients;

/// RIFF, JUNK/ds64 and fmt: what comes before the metadata chunks.
const FIXED_BYTES: usize = 72;
const RIFF_LIMIT: u64 = u32::MAX as u64;
/// How much audio is written before the kernel is asked to start writing it
/// back: the fsync before publishing then finds little left to wait for.
const WRITEBACK_STEP: u64 = 1 << 20;

pub struct WavWriter {
    /// Unbuffered: the writer pool hands it whole blocks (a second of audio
    /// or more), and a buffer here was a copy of each and 64 kB per call.
    file: Part,
    part: PathBuf,
    location: PathBuf,
    channels: u16,
    rate: u32,
    data_bytes: u64,
    /// `data_bytes` when writeback was last started.
    writeback_from: u64,
    metadata: Metadata,
    /// When the first sample was recorded, for `bext`.
    origination: Option<std::time::SystemTime>,
    /// Everything before the audio: fixed once the file is created.
    header_bytes: u64,
}

impl WavWriter {
    /// Creates `<location>.part`, which must not exist yet (see
    /// `safe_fs::create_exclusive`), with permissions `mode` and a header for
    /// an empty recording.
    pub fn create(
        location: &Path,
        mode: u32,
        channels: u16,
        rate: u32,
        metadata: &Metadata,
        recipients: Option<&Recipients>,
    ) -> io::Result<Self> {
        let part = safe_fs::part_path(location);
        let file = Part::create(&part, mode, recipients)?;
        let header_bytes = (FIXED_BYTES + metadata.wav_chunks(None, rate).len() + 8) as u64;
        let mut writer = WavWriter {
            file,
            part,
            location: location.to_owned(),
            channels,
            rate,
            data_bytes: 0,
            writeback_from: 0,
            metadata: metadata.clone(),
            origination: None,
            header_bytes,
        };
        let header = writer.header(!writer.file.rewrites_in_place());
        if let Err(e) = writer.file.append(&header) {
            let _ = writer.file.discard(&writer.part);
            return Err(e);
        }
        Ok(writer)
    }

    /// Sets the format once it is known (before any audio is written).
    pub fn set_format(&mut self, channels: u16, rate: u32) {
        debug_assert_eq!(self.data_bytes, 0);
        self.channels = channels;
        self.rate = rate;
    }

    /// When the first sample was recorded (`bext`'s origination).
    pub fn set_origination(&mut self, at: std::time::SystemTime) {
        self.origination = Some(at);
    }

    pub fn channels(&self) -> u16 {
        self.channels
    }

    pub fn part(&self) -> &Path {
        &self.part
    }

    pub fn frames(&self) -> u64 {
        self.data_bytes / (2 * self.channels as u64)
    }

    pub fn write(&mut self, interleaved_s16le: &[u8]) -> io::Result<()> {
        self.file.append(interleaved_s16le)?;
        self.data_bytes += interleaved_s16le.len() as u64;
        if self.data_bytes - self.writeback_from >= WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(())
    }

    /// Starts (without waiting for) writeback of what reached the page
    /// cache since the last call. Only an optimisation: `finish` still
    /// fsyncs, so an error here changes nothing and is ignored.
    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let Some(file) = self.file.plain_file() else {
                return;
            };
            // SAFETY: a plain syscall on a descriptor this writer owns.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    (self.header_bytes + self.writeback_from) as libc::off64_t,
                    0,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.writeback_from = self.data_bytes;
    }

    /// Makes what was written so far playable on disk. In place, so the
    /// audio goes on at the end without a seek. An encrypted part keeps
    /// its "length unknown" header.
    pub fn update_header(&mut self) -> io::Result<()> {
        if !self.file.rewrites_in_place() {
            return Ok(());
        }
        self.file.write_at(0, &self.header(false))
    }

    /// Writes the final header and makes the `.part` the finished file,
    /// durably.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.write_at(0, &self.header(false))?;
        self.file.finish(&self.part)
    }

    pub fn sealed(&self) -> bool {
        !self.file.rewrites_in_place()
    }

    pub fn location(&self) -> &Path {
        &self.location
    }

    /// Gives up on the recording: the `.part` is removed.
    pub fn discard(mut self) -> io::Result<()> {
        self.file.discard(&self.part)
    }

    /// The header for what was written so far; with `unknown`, for a
    /// stream of unknown length (both sizes `0xFFFFFFFF`).
    fn header(&self, unknown: bool) -> Vec<u8> {
        let mut h = vec![0u8; FIXED_BYTES];
        let riff_size = if unknown {
            RIFF_LIMIT
        } else {
            self.header_bytes - 8 + self.data_bytes
        };
        let rf64 = riff_size > RIFF_LIMIT;
        let block_align = 2 * self.channels;
        h[0..4].copy_from_slice(if rf64 { b"RF64" } else { b"RIFF" });
        h[4..8].copy_from_slice(&(riff_size.min(RIFF_LIMIT) as u32).to_le_bytes());
        h[8..12].copy_from_slice(b"WAVE");
        // 'JUNK' (or 'ds64'), 28 bytes of body.
        h[12..16].copy_from_slice(if rf64 { b"ds64" } else { b"JUNK" });
        h[16..20].copy_from_slice(&28u32.to_le_bytes());
        if rf64 {
            h[20..28].copy_from_slice(&riff_size.to_le_bytes());
            h[28..36].copy_from_slice(&self.data_bytes.to_le_bytes());
            h[36..44].copy_from_slice(&self.frames().to_le_bytes());
            // 4 bytes of table length: 0.
        }
        h[48..52].copy_from_slice(b"fmt ");
        h[52..56].copy_from_slice(&16u32.to_le_bytes());
        h[56..58].copy_from_slice(&1u16.to_le_bytes()); // PCM
        h[58..60].copy_from_slice(&self.channels.to_le_bytes());
        h[60..64].copy_from_slice(&self.rate.to_le_bytes());
        h[64..68].copy_from_slice(&(self.rate * block_align as u32).to_le_bytes());
        h[68..70].copy_from_slice(&block_align.to_le_bytes());
        h[70..72].copy_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(&self.metadata.wav_chunks(self.origination, self.rate));
        h.extend_from_slice(b"data");
        let data_size = if unknown {
            RIFF_LIMIT
        } else {
            self.data_bytes.min(RIFF_LIMIT)
        };
        h.extend_from_slice(&(data_size as u32).to_le_bytes());
        debug_assert_eq!(h.len() as u64, self.header_bytes);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callrec-wav-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("rec.wav")
    }

    #[test]
    fn finished_file_reads_back_with_an_independent_parser() {
        let location = tmp("finish");
        let mut w =
            WavWriter::create(&location, 0o640, 2, 8000, &Metadata::default(), None).unwrap();
        let frames: Vec<u8> = (0..1000i16)
            .flat_map(|i| [i, -i])
            .flat_map(|s| s.to_le_bytes())
            .collect();
        w.write(&frames).unwrap();
        assert!(!location.exists(), "published before finished");
        w.sync().unwrap();
        safe_fs::publish(&[(w.part().to_owned(), location.clone())], false).unwrap();
        drop(w);
        assert!(!safe_fs::part_path(&location).exists());
        let mut reader = hound::WavReader::open(&location).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.spec().sample_rate, 8000);
        assert_eq!(reader.duration(), 1000);
        let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        let expected: Vec<i16> = (0..1000i16).flat_map(|i| [i, -i]).collect();
        assert_eq!(samples, expected);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&location).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn part_is_playable_after_each_header_update() {
        let location = tmp("part");
        let mut w =
            WavWriter::create(&location, 0o600, 1, 16000, &Metadata::default(), None).unwrap();
        w.write(&[1, 0, 2, 0, 3, 0]).unwrap();
        w.update_header().unwrap();
        w.write(&[4, 0]).unwrap();
        // As a killed process would leave it: header says 3 frames.
        let reader = hound::WavReader::open(safe_fs::part_path(&location)).unwrap();
        assert_eq!(reader.duration(), 3);
        w.discard().unwrap();
        assert!(!safe_fs::part_path(&location).exists());
    }

    #[test]
    fn header_switches_to_rf64_past_4_gib() {
        let location = tmp("rf64");
        let mut w =
            WavWriter::create(&location, 0o600, 2, 8000, &Metadata::default(), None).unwrap();
        w.data_bytes = 5 << 30;
        let h = w.header(false);
        assert_eq!(&h[0..4], b"RF64");
        assert_eq!(&h[4..8], &[0xFF; 4]);
        assert_eq!(&h[12..16], b"ds64");
        assert_eq!(u64::from_le_bytes(h[28..36].try_into().unwrap()), 5 << 30);
        assert_eq!(
            u64::from_le_bytes(h[36..44].try_into().unwrap()),
            (5 << 30) / 4
        );
        assert_eq!(&h[h.len() - 4..], &[0xFF; 4]);
        w.data_bytes = 0;
        w.discard().unwrap();
    }
}
