// SPDX-License-Identifier: MPL-2.0
//! callrecsink's properties: what `gst-inspect-1.0` documents, their
//! defaults and bounds, and the enums GStreamer sees for `mode`, `format`
//! and `pause-mode`.

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use super::mixer::PauseMode;

pub const DEFAULT_START_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);
pub const DEFAULT_FINALIZE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(2);
pub const DEFAULT_HEADER_INTERVAL: gst::ClockTime = gst::ClockTime::SECOND;
pub const DEFAULT_MIN_DURATION: gst::ClockTime = gst::ClockTime::ZERO;
pub const DEFAULT_FILE_MODE: u32 = 0o640;
/// Bounds on the time properties: long enough for any real use, short
/// enough that no sum with them overflows.
pub const MAX_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(24 * 3600);

/// `mode` as GStreamer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCallRecMode")]
pub enum CallRecMode {
    #[default]
    #[enum_value(
        name = "Interleaved: one file, one channel per track in pad order",
        nick = "interleaved"
    )]
    Interleaved,
    #[enum_value(
        name = "Separate: one mono file per track; location holds %u for the track number",
        nick = "separate"
    )]
    Separate,
    #[enum_value(
        name = "Mixed: one mono file, the sum of the tracks (saturated: a sum past full scale clips)",
        nick = "mixed"
    )]
    Mixed,
}

/// `format` as GStreamer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCallRecFormat")]
pub enum CallRecFormat {
    #[default]
    #[enum_value(
        name = "WAV: PCM S16LE (RF64 past 4 GiB); a killed recording plays up to the last header rewrite",
        nick = "wav"
    )]
    Wav,
    #[enum_value(
        name = "FLAC: lossless, flacenc; a killed recording plays up to its last whole frame",
        nick = "flac"
    )]
    Flac,
    #[enum_value(
        name = "Ogg Opus: opusenc ! oggmux, sample-exact length; a killed recording plays up to its last page (at most header-interval old)",
        nick = "opus"
    )]
    Opus,
    #[enum_value(
        name = "MP3: lamemp3enc, at most 2 channels; a killed recording plays up to its last frame; a decoder adds LAME's delay (length not exact)",
        nick = "mp3"
    )]
    Mp3,
}

impl CallRecFormat {
    /// The extension a file of this format has.
    pub fn extension(self) -> &'static str {
        match self {
            CallRecFormat::Wav => "wav",
            CallRecFormat::Flac => "flac",
            CallRecFormat::Opus => "opus",
            CallRecFormat::Mp3 => "mp3",
        }
    }
}

pub const DEFAULT_BITRATE: u32 = 32_000;

/// `pause-mode` as GStreamer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCallRecPauseMode")]
pub enum CallRecPauseMode {
    #[default]
    #[enum_value(
        name = "Silence: the timeline goes on, paused time is written as silence",
        nick = "silence"
    )]
    Silence,
    #[enum_value(name = "Skip: paused time is cut out of the file", nick = "skip")]
    Skip,
}

impl From<CallRecPauseMode> for PauseMode {
    fn from(mode: CallRecPauseMode) -> Self {
        match mode {
            CallRecPauseMode::Silence => PauseMode::Silence,
            CallRecPauseMode::Skip => PauseMode::Skip,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub location: Option<PathBuf>,
    pub rate: u32,
    pub start_timeout: gst::ClockTime,
    pub finalize_timeout: gst::ClockTime,
    pub header_interval: gst::ClockTime,
    pub min_duration: gst::ClockTime,
    pub max_duration: gst::ClockTime,
    pub file_mode: u32,
    pub pause_mode: CallRecPauseMode,
    pub mode: CallRecMode,
    pub overwrite: bool,
    pub tolerance: gst::ClockTime,
    pub format: CallRecFormat,
    pub bitrate: u32,
    /// Public keys every file is encrypted to (`files/seal.rs`).
    pub recipients: Option<String>,
    pub recipients_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            rate: 0,
            start_timeout: DEFAULT_START_TIMEOUT,
            finalize_timeout: DEFAULT_FINALIZE_TIMEOUT,
            header_interval: DEFAULT_HEADER_INTERVAL,
            min_duration: DEFAULT_MIN_DURATION,
            max_duration: gst::ClockTime::ZERO,
            file_mode: DEFAULT_FILE_MODE,
            pause_mode: CallRecPauseMode::Silence,
            mode: CallRecMode::Interleaved,
            overwrite: false,
            tolerance: gst::ClockTime::ZERO,
            format: CallRecFormat::Wav,
            bitrate: DEFAULT_BITRATE,
            recipients: None,
            recipients_file: None,
        }
    }
}

impl Settings {
    /// Every property, as `gst-inspect-1.0` shows it.
    pub fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("location")
                .nick("Location")
                .blurb("The recording file (format: see format); written as <location>.part (created new: an existing .part is refused, never reused) and renamed only when complete")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("rate")
                .nick("Rate")
                .blurb("Sample rate of the file; 0 = the highest input rate")
                .maximum(384_000)
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("start-timeout")
                .nick("Start timeout")
                .blurb("ERROR if no audio reaches any track this long (ns) after PLAYING; 0 = wait forever")
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_START_TIMEOUT.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("finalize-timeout")
                .nick("Finalize timeout")
                .blurb("Longest time (ns) anything waits for the disk: finishing the file (on EOS or a stop without EOS), or audio waiting for a disk that takes nothing; then the recording fails")
                .minimum(gst::ClockTime::MSECOND.nseconds())
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_FINALIZE_TIMEOUT.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("header-interval")
                .nick("Header interval")
                .blurb("How often (ns) the .part header is rewritten, bounding what a crash loses")
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_HEADER_INTERVAL.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("min-duration")
                .nick("Minimum duration")
                .blurb("Recordings shorter than this (ns) are discarded with a WARNING")
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_MIN_DURATION.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("max-duration")
                .nick("Maximum duration")
                .blurb("The recording finalizes by itself at this length (ns), exactly (reason max-duration); the pipeline keeps running and what follows is not recorded. 0 = no limit")
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("mode", CallRecMode::Interleaved)
                .nick("Mode")
                .blurb("One file with a channel per track (interleaved), one mono file per track (separate; location then holds %u), or one mono file of the tracks summed (mixed)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("format", CallRecFormat::Wav)
                .nick("Format")
                .blurb("How the audio is stored: wav, flac, opus (Ogg Opus) or mp3; location's extension does not choose it (a mismatch is a WARNING)")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("bitrate")
                .nick("Bitrate")
                .blurb("Bitrate (bits/s) of the whole file, all its channels (format=opus; format=mp3, as an average)")
                .minimum(6000)
                .maximum(510_000)
                .default_value(DEFAULT_BITRATE)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("pause-mode", CallRecPauseMode::Silence)
                .nick("Pause mode")
                .blurb("What the pause/resume action signals do to the file: write silence or cut")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("tolerance")
                .nick("Tolerance")
                .blurb("Timestamp jitter (ns) each track absorbs without filling or trimming (its stallfiller's tolerance); about 20 ms on RTP legs")
                .maximum(gst::ClockTime::SECOND.nseconds())
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("overwrite")
                .nick("Overwrite")
                .blurb("Replace a file already at location when publishing; false refuses it at PAUSED (and a file that appears there during the call fails the recording), so a recording is never silently replaced")
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("file-mode")
                .nick("File mode")
                .blurb("Permissions of the recording file (recordings are personal data)")
                .maximum(0o777)
                .default_value(DEFAULT_FILE_MODE)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("recipients")
                .nick("Recipients")
                .blurb("Encrypt every file to these public keys (age1... from age-keygen, ssh-ed25519 or ssh-rsa ...), separated by commas: each file is an age file (age -d -i KEY decrypts it) and no plaintext audio reaches the disk; a key that does not parse is an ERROR at PAUSED, never a plaintext file")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("recipients-file")
                .nick("Recipients file")
                .blurb("A file of public keys to encrypt to, one per line, # comments (as age -R reads); adds to recipients")
                .mutable_ready()
                .build(),
        ]
    }

    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let ns = |v: &glib::Value| callaudio::clock_time_of(v.get::<u64>().unwrap());
        match name {
            "location" => self.location = value.get::<Option<String>>().unwrap().map(PathBuf::from),
            "rate" => self.rate = value.get().unwrap(),
            "start-timeout" => self.start_timeout = ns(value),
            "finalize-timeout" => self.finalize_timeout = ns(value),
            "header-interval" => self.header_interval = ns(value),
            "min-duration" => self.min_duration = ns(value),
            "max-duration" => self.max_duration = ns(value),
            "file-mode" => self.file_mode = value.get().unwrap(),
            "pause-mode" => self.pause_mode = value.get().unwrap(),
            "mode" => self.mode = value.get().unwrap(),
            "overwrite" => self.overwrite = value.get().unwrap(),
            "tolerance" => self.tolerance = ns(value),
            "format" => self.format = value.get().unwrap(),
            "bitrate" => self.bitrate = value.get().unwrap(),
            "recipients" => self.recipients = value.get::<Option<String>>().unwrap(),
            "recipients-file" => {
                self.recipients_file = value.get::<Option<String>>().unwrap().map(PathBuf::from)
            }
            name => unreachable!("unknown property {name}"),
        }
    }

    pub fn get(&self, name: &str) -> glib::Value {
        match name {
            "location" => self
                .location
                .as_ref()
                .map(|l| l.to_string_lossy().into_owned())
                .to_value(),
            "rate" => self.rate.to_value(),
            "start-timeout" => self.start_timeout.nseconds().to_value(),
            "finalize-timeout" => self.finalize_timeout.nseconds().to_value(),
            "header-interval" => self.header_interval.nseconds().to_value(),
            "min-duration" => self.min_duration.nseconds().to_value(),
            "max-duration" => self.max_duration.nseconds().to_value(),
            "file-mode" => self.file_mode.to_value(),
            "pause-mode" => self.pause_mode.to_value(),
            "mode" => self.mode.to_value(),
            "overwrite" => self.overwrite.to_value(),
            "tolerance" => self.tolerance.nseconds().to_value(),
            "format" => self.format.to_value(),
            "bitrate" => self.bitrate.to_value(),
            "recipients" => self.recipients.to_value(),
            "recipients-file" => self
                .recipients_file
                .as_ref()
                .map(|l| l.to_string_lossy().into_owned())
                .to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}
