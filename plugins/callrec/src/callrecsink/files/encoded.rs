// SPDX-License-Identifier: MPL-2.0
//! A FLAC, Ogg Opus or MP3 file, encoded by GStreamer's own `flacenc`,
//! `opusenc ! oggmux` and `lamemp3enc`, written under `<location>.part`
//! with the same rules as the WAV (created exclusively, renamed only once
//! complete).
//!
//! The encoder runs in a private pipeline, `appsrc ! <encoder> ! appsink`,
//! fed from the writer pool (`writing/mod.rs`). Every encoded buffer is written
//! to the `.part` as it comes out (no user-space buffering), so what a
//! killed process leaves is what the encoder had produced:
//! - FLAC: whole frames of at most the encoder's share of `header-interval`
//!   (`crash_budget::encoder_hold`; and at most `flacenc`'s default 4608
//!   samples), a stream any decoder plays. Downstream of `flacenc` is not
//!   seekable, so it leaves STREAMINFO's total at 0 ("unknown"); `sync`
//!   writes the real total there before publishing. The encoder starts only
//!   once it has more than one frame's audio (it keeps that much itself
//!   anyway), or at the end with a frame sized to what there is:
//!   `flacenc` sets its caps with its first frame, and an end before that
//!   frame pushes the segment ahead of the caps.
//! - Opus: Ogg pages, flushed by `oggmux` at least every `encoder_hold`.
//!   `opusenc` marks the stream's pre-skip and its end trimming, so the
//!   decoded length is the recorded length, to the sample.
//! - MP3: whole frames (72 ms at 8 kHz). Its length is not exact: an MP3
//!   decoder adds LAME's encoder delay and pads the last frame, and Debian's
//!   stock plugins have no Xing/LAME header writer to say so.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callaudio::sync::lock;
use gst::prelude::*;

use super::FileSpec;
use super::metadata::Metadata;
use super::part::Part;
use super::safe_fs::part_path;

/// How long `sync` waits for the encoder to drain; a recording's fsync
/// itself is bounded by the writer's own disk timeout above this.
const DRAIN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(30);
/// Where STREAMINFO's 36-bit total of samples starts: "fLaC", the block
/// header, then 13.5 bytes of STREAMINFO fields before it.
const FLAC_TOTAL_OFFSET: u64 = 4 + 4 + 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Flac,
    Opus { bitrate: u32 },
    Mp3 { bitrate: u32 },
}

/// The file and what went wrong writing to it, shared with the appsink's
/// streaming thread.
struct Output {
    file: Part,
    failed: Option<io::Error>,
}

pub struct EncodedWriter {
    codec: Codec,
    output: Arc<Mutex<Output>>,
    part: PathBuf,
    location: PathBuf,
    channels: u16,
    rate: u32,
    frames: u64,
    page_delay: gst::ClockTime,
    metadata: Metadata,
    /// Started at the first audio, when the format is known (FLAC: once
    /// `held` exceeds a frame, or at the end).
    pipeline: Option<(gst::Pipeline, gst_app::AppSrc)>,
    /// FLAC audio not yet handed to an encoder, less than one frame.
    held: Vec<u8>,
}

fn other(text: String) -> io::Error {
    io::Error::other(text)
}

impl EncodedWriter {
    /// Creates `<location>.part` as `spec` says (its permissions, tags,
    /// `header-interval` and recipients).
    pub fn create(
        location: &Path,
        spec: &FileSpec,
        codec: Codec,
        channels: u16,
        rate: u32,
    ) -> io::Result<Self> {
        let part = part_path(location);
        let file = Part::create(&part, spec.mode, spec.recipients.as_ref())?;
        Ok(EncodedWriter {
            codec,
            output: Arc::new(Mutex::new(Output { file, failed: None })),
            part,
            location: location.to_owned(),
            channels,
            rate,
            frames: 0,
            page_delay: spec.header_interval,
            metadata: spec.metadata.clone(),
            pipeline: None,
            held: Vec::new(),
        })
    }

    pub fn set_format(&mut self, channels: u16, rate: u32) {
        debug_assert!(self.pipeline.is_none());
        self.channels = channels;
        self.rate = rate;
    }

    pub fn channels(&self) -> u16 {
        self.channels
    }

    pub fn part(&self) -> &Path {
        &self.part
    }

    pub fn sealed(&self) -> bool {
        !lock(&self.output).file.rewrites_in_place()
    }

    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The encoder's share of what a crash may lose (`writing/mod.rs`).
    fn hold(&self) -> gst::ClockTime {
        let interval = Duration::from_nanos(self.page_delay.nseconds());
        gst::ClockTime::from_nseconds(
            crate::callrecsink::crash_budget::encoder_hold(interval).as_nanos() as u64,
        )
    }

    /// FLAC's frame: a frame is written whole or not at all, so frames no
    /// longer than `hold` bound what a crash loses, as pages do for Ogg. At
    /// least 20 ms (shorter frames cost compression for nothing), at most
    /// `flacenc`'s default.
    fn flac_blocksize(&self) -> u64 {
        let per_interval = callaudio::time_to_samples(self.hold(), self.rate);
        per_interval.clamp(u64::from(self.rate / 50).max(16), 4608)
    }

    fn start(&mut self, flac_blocksize: u64) -> io::Result<gst_app::AppSrc> {
        if let Some((_, src)) = &self.pipeline {
            return Ok(src.clone());
        }
        let hold = self.hold();
        let encoder = match self.codec {
            // libFLAC's smallest frame is 16 samples.
            Codec::Flac => format!("flacenc blocksize={}", flac_blocksize.clamp(16, 65535)),
            // 20 ms frames, as voice is sent; pages flushed at least every
            // `hold`, which bounds what a crash can lose.
            Codec::Opus { bitrate } => format!(
                "opusenc bitrate={bitrate} frame-size=20 audio-type=voice ! oggmux max-delay={d} max-page-delay={d}",
                d = hold.nseconds()
            ),
            // MP3 has a fixed set of rates: anything else is resampled to
            // the nearest one LAME takes. Average bitrate, in kbit/s.
            // Tags go in an ID3v2 header at the start (`id3v2mux` is the
            // TagSetter), written before the first frame: nothing to seek.
            Codec::Mp3 { bitrate } => format!(
                "audioresample ! lamemp3enc target=bitrate cbr=false bitrate={}{}",
                (bitrate / 1000).clamp(8, 320),
                if self.metadata.tags.as_ref().is_some_and(|t| t.n_tags() > 0) {
                    " ! id3v2mux"
                } else {
                    ""
                }
            ),
        };
        let desc = format!(
            "appsrc name=src format=time block=true max-bytes=262144 ! {encoder} ! appsink name=sink sync=false"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| other(format!("building the encoder ({desc}): {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| other("the encoder is not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| other("the encoder has no appsrc".into()))?;
        let mut caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate(self.rate as i32)
            .channels(self.channels as i32)
            .build();
        // Tracks are not speaker positions, but an encoder may insist on
        // some (flacenc takes one mask per channel count): the first
        // channels in the order it names them (track order: left, right, ...).
        // One that names none takes more than two channels unpositioned
        // (opusenc: channel mapping family 255, which opusdec reads back).
        if let Some(mask) = encoder_channel_mask(&src, self.channels) {
            caps.make_mut().set("channel-mask", gst::Bitmask::new(mask));
        } else if self.channels > 2 {
            caps.make_mut().set("channel-mask", gst::Bitmask::new(0));
        }
        src.set_caps(Some(&caps));
        // The tags become Vorbis comments, written by the encoder itself.
        if let Some(tags) = &self.metadata.tags {
            for element in pipeline.iterate_elements().into_iter().flatten() {
                if let Some(setter) = element.dynamic_cast_ref::<gst::TagSetter>() {
                    setter.merge_tags(tags, gst::TagMergeMode::Replace);
                }
            }
        }
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| other("the encoder has no appsink".into()))?;
        let output = self.output.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let mut out = lock(&output);
                    if out.failed.is_some() {
                        return Err(gst::FlowError::Error);
                    }
                    if let Err(e) = out.file.append(&map) {
                        out.failed = Some(e);
                        return Err(gst::FlowError::Error);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        // A failed encoder (or a failed write of ours, which fails it) stops
        // its streaming thread; appsrc would then keep a full queue and block
        // our next push for ever. Flushing it releases that push.
        let weak_src = src.downgrade();
        pipeline
            .bus()
            .expect("a pipeline has a bus")
            .set_sync_handler(move |_, msg| {
                if msg.type_() == gst::MessageType::Error
                    && let Some(src) = weak_src.upgrade()
                {
                    src.send_event(gst::event::FlushStart::new());
                }
                gst::BusSyncReply::Pass
            });
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            other(format!(
                "starting the encoder: {}",
                self.bus_error(&pipeline)
            ))
        })?;
        self.pipeline = Some((pipeline, src.clone()));
        Ok(src)
    }

    /// The encoder's first error, as text.
    fn bus_error(&self, pipeline: &gst::Pipeline) -> String {
        pipeline
            .bus()
            .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
                _ => None,
            })
            .unwrap_or_else(|| "no reason given".into())
    }

    fn check(&self) -> io::Result<()> {
        if let Some(e) = lock(&self.output).failed.take() {
            return Err(e);
        }
        if let Some((pipeline, _)) = &self.pipeline
            && let Some(bus) = pipeline.bus()
            && bus.have_pending()
        {
            for msg in bus.iter() {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(encoder_failed(e));
                }
            }
        }
        Ok(())
    }

    pub fn write(&mut self, interleaved_s16le: &[u8]) -> io::Result<()> {
        self.check()?;
        if self.codec == Codec::Flac && self.pipeline.is_none() {
            self.held.extend_from_slice(interleaved_s16le);
            let blocksize = self.flac_blocksize();
            // libFLAC writes a frame once it has one sample past it.
            if self.held_frames() <= blocksize {
                return Ok(());
            }
            return self.push_held(blocksize);
        }
        self.push(interleaved_s16le.to_vec())
    }

    fn held_frames(&self) -> u64 {
        self.held.len() as u64 / (2 * u64::from(self.channels))
    }

    /// Starts the FLAC encoder with `blocksize` and hands it what is held.
    fn push_held(&mut self, blocksize: u64) -> io::Result<()> {
        self.start(blocksize)?;
        let held = std::mem::take(&mut self.held);
        self.push(held)
    }

    fn push(&mut self, interleaved_s16le: Vec<u8>) -> io::Result<()> {
        let src = self.start(self.flac_blocksize())?;
        let frames = interleaved_s16le.len() as u64 / (2 * self.channels as u64);
        let mut buffer = gst::Buffer::from_mut_slice(interleaved_s16le);
        {
            let b = buffer.get_mut().expect("a new buffer");
            b.set_pts(callaudio::samples_to_time(self.frames, self.rate));
            b.set_duration(callaudio::samples_to_time(frames, self.rate));
        }
        if let Err(e) = src.push_buffer(buffer) {
            // The cause (our write, or the encoder's error) comes first.
            self.check()?;
            return Err(other(format!("the encoder refused audio ({e:?})")));
        }
        self.frames += frames;
        Ok(())
    }

    /// What the encoder produced is already in the file (each buffer is
    /// written as it comes out); there is no header to rewrite until the end.
    pub fn update_header(&mut self) -> io::Result<()> {
        self.check()
    }

    /// Drains the encoder, completes the stream's header, and makes the
    /// `.part` durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check()?;
        if !self.held.is_empty() {
            // Shorter than one frame: one frame that ends a sample early,
            // so the encoder writes it (and its caps) before the end.
            self.push_held(self.held_frames().saturating_sub(1))?;
        }
        if let Some((pipeline, src)) = self.pipeline.take() {
            let _ = src.end_of_stream();
            let bus = pipeline.bus().expect("a pipeline has a bus");
            let end = bus.timed_pop_filtered(
                DRAIN_TIMEOUT,
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
            let _ = pipeline.set_state(gst::State::Null);
            match end.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Eos(_)) => {}
                Some(gst::MessageView::Error(e)) => return Err(encoder_failed(e)),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the encoder did not finish within {DRAIN_TIMEOUT}"),
                    ));
                }
            }
        }
        self.check()?;
        let mut out = lock(&self.output);
        if self.codec == Codec::Flac && self.frames > 0 {
            write_flac_total(&mut out.file, self.frames)?;
        }
        out.file.finish(&self.part)
    }

    /// Gives up on the recording: the `.part` is removed.
    pub fn discard(mut self) -> io::Result<()> {
        if let Some((pipeline, _)) = self.pipeline.take() {
            let _ = pipeline.set_state(gst::State::Null);
        }
        lock(&self.output).file.discard(&self.part)
    }
}

impl Drop for EncodedWriter {
    fn drop(&mut self) {
        if let Some((pipeline, _)) = self.pipeline.take() {
            let _ = pipeline.set_state(gst::State::Null);
        }
    }
}

/// The channel mask the element after `src` requires for `channels`
/// channels, if its template names one.
fn encoder_channel_mask(src: &gst_app::AppSrc, channels: u16) -> Option<u64> {
    let encoder = src.static_pad("src")?.peer()?;
    let templ = encoder.pad_template_caps();
    templ.iter().find_map(|s| {
        (s.get::<i32>("channels").ok() == Some(channels as i32))
            .then(|| s.get::<gst::Bitmask>("channel-mask").ok())
            .flatten()
            .map(|m| *m)
    })
}

fn encoder_failed(e: &gst::message::Error) -> io::Error {
    let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
    let why = debug.lines().last().unwrap_or("").trim();
    other(format!("the encoder failed: {} ({why})", e.error()))
}

/// Writes the total number of samples (per channel) into STREAMINFO. The
/// byte it starts in also holds the low 4 bits of bits-per-sample minus 1:
/// 15 for the S16 this file always holds.
fn write_flac_total(file: &mut Part, frames: u64) -> io::Result<()> {
    let total = frames.min((1 << 36) - 1);
    let mut bytes = [0u8; 5];
    bytes[0] = 0xF0 | ((total >> 32) as u8 & 0x0F);
    bytes[1..].copy_from_slice(&(total as u32).to_be_bytes());
    file.write_at(FLAC_TOTAL_OFFSET, &bytes)
}
