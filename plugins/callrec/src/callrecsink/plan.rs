// SPDX-License-Identifier: MPL-2.0
//! What a recording will write, decided from the settings and the tracks
//! alone, before anything touches the disk: the files and their format, or
//! the reason the settings cannot be recorded. Pure, so every refusal is a
//! unit test; `imp.rs`'s `open()` turns a refusal into the ERROR.

use std::path::PathBuf;
use std::time::Duration;

use super::files::encoded::Codec;
use super::files::metadata::Metadata;
use super::files::{self, Container, FileSpec};
use super::mixer::Output;
use super::recording::{Setup, TrackId};
use super::settings::{CallRecFormat, CallRecMode, Settings};

/// The files of one recording and how it is written.
pub struct Plan {
    pub locations: Vec<PathBuf>,
    pub spec: FileSpec,
    pub channels_per_file: u16,
    pub setup: Setup,
    /// The bound on every wait for the disk (`finalize-timeout`).
    pub disk_timeout: Duration,
    pub header_interval: Duration,
    /// Said once as a WARNING; the recording goes on.
    pub warning: Option<String>,
}

/// Why the settings cannot be recorded: the ERROR's text and its advice.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NoLocation,
    NoTracks,
    SeparateWithoutNumber {
        location: PathBuf,
    },
    TooManyChannels {
        format: &'static str,
        max: u16,
        channels: u16,
        roomier: &'static str,
    },
}

impl Refused {
    pub fn text(&self) -> String {
        match self {
            Refused::NoLocation => "No location set for the recording".into(),
            Refused::NoTracks => "callrecsink has no tracks".into(),
            Refused::SeparateWithoutNumber { .. } => {
                "mode=separate needs %u in location for the track number".into()
            }
            Refused::TooManyChannels {
                format,
                max,
                channels,
                ..
            } => format!(
                "format={format} holds at most {max} channels in a file, and this recording has {channels} tracks"
            ),
        }
    }

    pub fn advice(&self) -> String {
        match self {
            Refused::NoLocation => "set location=/path/to/call.wav".into(),
            Refused::NoTracks => "request at least one sink_%u pad before starting".into(),
            Refused::SeparateWithoutNumber { location } => {
                format!("location is {}", location.display())
            }
            Refused::TooManyChannels { roomier, .. } => {
                format!("use mode=separate (one file per track) or mode=mixed, or {roomier}")
            }
        }
    }
}

/// The most channels `format` holds in one file, and the formats that
/// hold more.
fn channel_limit(format: CallRecFormat) -> (u16, &'static str) {
    match format {
        CallRecFormat::Flac | CallRecFormat::Opus => (8, "format=wav"),
        CallRecFormat::Mp3 => (2, "format=wav, flac or opus"),
        CallRecFormat::Wav => (u16::MAX, ""),
    }
}

pub fn plan(settings: &Settings, tracks: &[TrackId], metadata: Metadata) -> Result<Plan, Refused> {
    let location = settings.location.clone().ok_or(Refused::NoLocation)?;
    if tracks.is_empty() {
        return Err(Refused::NoTracks);
    }
    let separate = settings.mode == CallRecMode::Separate;
    if separate && !location.to_string_lossy().contains("%u") {
        return Err(Refused::SeparateWithoutNumber { location });
    }
    let channels_per_file = match settings.mode {
        CallRecMode::Interleaved => u16::try_from(tracks.len()).unwrap_or(u16::MAX),
        CallRecMode::Separate | CallRecMode::Mixed => 1,
    };
    let (max, roomier) = channel_limit(settings.format);
    if channels_per_file > max {
        return Err(Refused::TooManyChannels {
            format: settings.format.extension(),
            max,
            channels: channels_per_file,
            roomier,
        });
    }
    let extension = location.extension().and_then(|e| e.to_str()).unwrap_or("");
    let expected = settings.format.extension();
    let warning = (!extension.eq_ignore_ascii_case(expected)).then(|| {
        format!(
            "location {} does not end in .{expected}, but format={expected} writes it",
            location.display()
        )
    });
    let numbers: Vec<u32> = tracks.iter().map(|t| t.number).collect();
    Ok(Plan {
        locations: files::locations(&location, separate, &numbers),
        spec: FileSpec {
            metadata,
            container: match settings.format {
                CallRecFormat::Wav => Container::Wav,
                CallRecFormat::Flac => Container::Encoded(Codec::Flac),
                CallRecFormat::Opus => Container::Encoded(Codec::Opus {
                    bitrate: settings.bitrate,
                }),
                CallRecFormat::Mp3 => Container::Encoded(Codec::Mp3 {
                    bitrate: settings.bitrate,
                }),
            },
            mode: settings.file_mode,
            header_interval: settings.header_interval,
            recipients: None,
        },
        channels_per_file,
        setup: Setup {
            separate,
            output: if settings.mode == CallRecMode::Mixed {
                Output::Mixed
            } else {
                Output::Interleaved
            },
            min_duration: settings.min_duration,
            pause_mode: settings.pause_mode.into(),
            max_duration: settings.max_duration,
        },
        disk_timeout: Duration::from_nanos(settings.finalize_timeout.nseconds()),
        header_interval: Duration::from_nanos(settings.header_interval.nseconds()),
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracks(n: u32) -> Vec<TrackId> {
        (0..n)
            .map(|number| TrackId {
                number,
                pad: format!("sink_{number}"),
            })
            .collect()
    }

    fn settings(location: &str, mode: CallRecMode, format: CallRecFormat) -> Settings {
        Settings {
            location: Some(location.into()),
            mode,
            format,
            ..Settings::default()
        }
    }

    fn refused(s: &Settings, n: u32) -> Refused {
        match plan(s, &tracks(n), Metadata::default()) {
            Err(r) => r,
            Ok(_) => panic!("planned"),
        }
    }

    #[test]
    fn one_interleaved_file_with_a_channel_per_track() {
        let s = settings("/r/call.wav", CallRecMode::Interleaved, CallRecFormat::Wav);
        let p = plan(&s, &tracks(3), Metadata::default()).unwrap();
        assert_eq!(p.locations, vec![PathBuf::from("/r/call.wav")]);
        assert_eq!(p.channels_per_file, 3);
        assert!(!p.setup.separate);
        assert_eq!(p.warning, None);
        assert_eq!(p.header_interval, Duration::from_secs(1));
    }

    #[test]
    fn separate_files_are_numbered_by_track() {
        let s = settings(
            "/r/call-%u.flac",
            CallRecMode::Separate,
            CallRecFormat::Flac,
        );
        let p = plan(&s, &tracks(2), Metadata::default()).unwrap();
        assert_eq!(
            p.locations,
            vec![
                PathBuf::from("/r/call-0.flac"),
                PathBuf::from("/r/call-1.flac")
            ]
        );
        assert_eq!(p.channels_per_file, 1);
        assert!(p.setup.separate);
        let s = settings("/r/call.flac", CallRecMode::Separate, CallRecFormat::Flac);
        assert!(matches!(
            refused(&s, 2),
            Refused::SeparateWithoutNumber { .. }
        ));
    }

    #[test]
    fn formats_refuse_more_channels_than_they_hold_and_name_a_way_out() {
        let s = settings("/r/call.mp3", CallRecMode::Interleaved, CallRecFormat::Mp3);
        let r = refused(&s, 3);
        assert_eq!(
            r.text(),
            "format=mp3 holds at most 2 channels in a file, and this recording has 3 tracks"
        );
        assert!(r.advice().contains("mode=separate"), "{}", r.advice());
        let s = settings(
            "/r/call.opus",
            CallRecMode::Interleaved,
            CallRecFormat::Opus,
        );
        assert!(plan(&s, &tracks(8), Metadata::default()).is_ok());
        assert!(!refused(&s, 9).advice().contains("opus"));
        let s = settings("/r/call.opus", CallRecMode::Mixed, CallRecFormat::Mp3);
        assert!(
            plan(&s, &tracks(9), Metadata::default()).is_ok(),
            "mixed is one channel"
        );
    }

    #[test]
    fn no_location_or_no_tracks_is_refused_and_an_odd_extension_is_a_warning() {
        let mut s = settings("/r/call.wav", CallRecMode::Interleaved, CallRecFormat::Wav);
        assert_eq!(refused(&s, 0), Refused::NoTracks);
        s.location = None;
        assert_eq!(refused(&s, 1), Refused::NoLocation);
        let s = settings("/r/call.wav", CallRecMode::Interleaved, CallRecFormat::Flac);
        let p = plan(&s, &tracks(1), Metadata::default()).unwrap();
        assert!(p.warning.unwrap().contains("does not end in .flac"));
    }
}
