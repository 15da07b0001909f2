// SPDX-License-Identifier: MPL-2.0
//! How a recording's outcome reaches the application: always a bus message
//! (`callrecsink-finalized`, or `callrecsink-failed` with an ERROR or a
//! WARNING), naming each track's pad and channel, and the same structure
//! through the `finished` signal, emitted from the finalizing thread: an
//! application that stops with `set_state(NULL)` (which flushes the bus by
//! default) still learns the outcome.

use gst::prelude::*;

use super::CAT;
use super::mixer::TrackStats;
use super::recording::{Outcome, Report, TrackId};

fn track_structures(tracks: &[(TrackId, TrackStats)]) -> gst::Array {
    gst::Array::new(tracks.iter().enumerate().map(|(channel, (id, s))| {
        gst::Structure::builder("track")
            .field("pad", id.pad.as_str())
            .field("channel", channel as u32)
            .field("received-samples", s.received)
            .field("silence-samples", s.silence)
            .field("dropped-samples", s.dropped)
            .field("muted-samples", s.muted)
            .build()
    }))
}

/// An element message from the sink.
pub fn post_element_message(element: &gst::Element, s: gst::Structure) {
    callaudio::message::post_element_message(element, s);
}

/// Posts the outcome of a recording: the only place that does. Takes no
/// lock, so it may run while a stuck finalization holds the recording.
pub fn post(element: &gst::Element, report: Report) {
    let tracks = track_structures(&report.tracks);
    match report.outcome {
        Outcome::Finalized {
            files,
            frames,
            reason,
        } => {
            let duration = callaudio::samples_to_time(frames, report.rate);
            gst::info!(
                CAT,
                obj = element,
                "recording finalized: {duration} in {} track(s)",
                report.tracks.len()
            );
            let s = gst::Structure::builder("callrecsink-finalized")
                .field("location", files[0].to_string_lossy().as_ref())
                .field(
                    "files",
                    gst::Array::new(files.iter().map(|f| f.to_string_lossy().into_owned())),
                )
                .field("duration", duration)
                .field("frames", frames)
                .field("reason", reason)
                .field(
                    "start-time",
                    report
                        .started_at
                        .and_then(super::files::metadata::date_time),
                )
                .field("rate", report.rate)
                .field("tracks", tracks)
                .build();
            finished(element, &s);
            post_element_message(element, s);
        }
        Outcome::NoAudio => {
            post_failed(element, "no-audio", tracks);
            gst::element_error!(
                element,
                gst::ResourceError::Write,
                ("The recording got no audio; no file was saved"),
                [
                    "no frame was written (every track was empty, or max-duration is shorter than one frame), so the partial file was removed"
                ]
            );
        }
        Outcome::TooShort { frames } => {
            post_failed(element, "too-short", tracks);
            gst::element_warning!(
                element,
                gst::ResourceError::Write,
                ("The recording was shorter than min-duration; no file was saved"),
                ["{frames} frames recorded"]
            );
        }
        Outcome::Failed(reason) => {
            post_failed(element, &reason, tracks);
            gst::element_error!(
                element,
                gst::ResourceError::Write,
                ("Could not finish the recording: {}", reason),
                ["what was written stays in the .part file"]
            );
        }
    }
}

/// A failure without figures (the recording could not be reached).
pub fn post_failure(element: &gst::Element, reason: String) {
    post(
        element,
        Report {
            outcome: Outcome::Failed(reason),
            tracks: Vec::new(),
            rate: super::recording::FALLBACK_RATE,
            started_at: None,
        },
    );
}

pub fn post_failed(element: &gst::Element, reason: &str, tracks: gst::Array) {
    let s = gst::Structure::builder("callrecsink-failed")
        .field("reason", reason)
        .field("tracks", tracks)
        .build();
    finished(element, &s);
    post_element_message(element, s);
}

/// The `finished` signal, with the outcome as the bus message carries it.
fn finished(element: &gst::Element, outcome: &gst::Structure) {
    element.emit_by_name::<()>("finished", &[outcome]);
}

/// A track asked for once the recording has started: a WARNING, and a
/// message the application can act on.
pub fn post_track_refused(element: &gst::Element, pad: Option<&str>, reason: &str) {
    gst::element_warning!(
        element,
        gst::CoreError::Pad,
        ("A track was refused: {}", reason),
        ["requested pad {:?}", pad]
    );
    let s = gst::Structure::builder("callrecsink-track-refused")
        .field("pad", pad)
        .field("reason", reason)
        .build();
    post_element_message(element, s);
}
