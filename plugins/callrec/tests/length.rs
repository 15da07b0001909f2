// SPDX-License-Identifier: MPL-2.0
//! A recording is as long as its audio: tracks fed until EOS end at the
//! last real sample of the longest one, with no tail of silence, on a
//! loaded machine too.
//!
//! The sources are live `audiotestsrc`s, whose LATENCY answer changes after
//! the first query (1024 samples' worth before their caps, one 20 ms buffer
//! after), as in the README's first command.

use std::time::Duration;

use gst::prelude::*;

mod common;
use common::*;

/// Both cores busy with other work while `f` runs.
fn loaded<T>(f: impl FnOnce() -> T) -> T {
    let _load = callaudio_testkit::process::CpuLoad::start();
    f()
}

/// Trailing frames where every channel is silent.
fn silent_tail(channels: &[Vec<i16>]) -> usize {
    let frames = channels[0].len();
    let last_sound = (0..frames)
        .rev()
        .find(|&i| channels.iter().any(|c| c[i] != 0))
        .map_or(0, |i| i + 1);
    frames - last_sound
}

#[test]
fn tracks_fed_until_eos_end_at_their_last_sample_under_load() {
    init();
    let dir = tmp_dir("length");
    let location = dir.join("call.wav");
    for run in 0..3 {
        let pipeline = launch(&format!(
            "callrecsink name=rec location={} overwrite=true \
             audiotestsrc is-live=true samplesperbuffer=160 num-buffers=150 ! audio/x-raw,rate=8000,channels=1 ! rec. \
             audiotestsrc is-live=true samplesperbuffer=160 num-buffers=150 freq=660 ! audio/x-raw,rate=8000,channels=1 ! rec.",
            location.display()
        ));
        let messages = loaded(|| {
            pipeline.set_state(gst::State::Playing).unwrap();
            let messages = messages_until(
                &pipeline,
                &[gst::MessageType::Eos, gst::MessageType::Error],
                Duration::from_secs(20),
            );
            pipeline.set_state(gst::State::Null).unwrap();
            messages
        });
        let finalized = element_message(&messages, "callrecsink-finalized")
            .unwrap_or_else(|| panic!("run {run}: not finalized: {:?}", error_text(&messages)));
        let (_, rate, channels) = read_wav(&location);
        assert_eq!(rate, 8000);
        let frames = channels[0].len() as u64;
        // Each track is 24000 samples; the recording spans both, so it is
        // longer by how far apart the two sources started, and never has
        // a tail of silence after the last real sample.
        for track in 0..2 {
            assert_eq!(track_stat(&finalized, track, "received-samples"), 24000);
        }
        // (A source that starts between two samples of the recording's
        // timeline is placed to the nearest: one sample of silence and one
        // dropped.)
        let skew = frames - 24000;
        for track in 0..2 {
            let silence = track_stat(&finalized, track, "silence-samples");
            assert!(
                silence <= skew + 1,
                "run {run}: track {track} has {silence} samples of silence, the sources' start skew is {skew}"
            );
        }
        // A sine's zero crossing may fall on the last sample.
        let tail = silent_tail(&channels);
        assert!(
            tail <= 1,
            "run {run}: {tail} samples of silence at the end ({frames} frames)"
        );
        assert!(
            skew <= 800,
            "run {run}: the sources started {skew} samples apart"
        );
    }
}
