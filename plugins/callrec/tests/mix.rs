// SPDX-License-Identifier: MPL-2.0
//! `mode=mixed`: one mono file, the sum of the tracks, checked sample for
//! sample against the sum of what was sent.

mod common;

use common::*;
use gst::prelude::*;

fn tone(freq: f64, amplitude: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|k| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * k as f64 / 8000.0).sin()).round()
                as i16
        })
        .collect()
}

/// Records `a` and `b` with `extra` properties; the file's channels.
pub fn record_pair(
    test: &str,
    extra: &str,
    a: &[i16],
    b: &[i16],
) -> (Vec<Vec<i16>>, gst::Structure) {
    init();
    let dir = tmp_dir(test);
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {extra} {} {}",
        location.display(),
        appsrc("a"),
        appsrc("b")
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "a", 8000, 0, a);
    feed(&pipeline, "b", 8000, 0, b);
    let messages = finish(&pipeline);
    assert_eq!(error_text(&messages), None);
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    (read_wav(&location).2, finalized)
}

#[test]
fn mixed_is_the_sum_of_two_tones_to_the_sample() {
    let (a, b) = (tone(440.0, 8000.0, 8000), tone(1000.0, 6000.0, 8000));
    let (channels, finalized) = record_pair("mixed", "mode=mixed", &a, &b);
    assert_eq!(channels.len(), 1, "one mono file");
    let expected: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(channels[0], expected);
    assert_eq!(finalized.get::<u64>("frames").unwrap(), 8000);
}

#[test]
fn mixed_clips_at_full_scale_instead_of_wrapping() {
    let loud = vec![20000i16; 1600];
    let quiet_neg = vec![-20000i16; 1600];
    let (channels, _) = record_pair("mixed-clip", "mode=mixed", &loud, &loud);
    assert!(channels[0].iter().all(|&s| s == i16::MAX));
    let (channels, _) = record_pair("mixed-clip-neg", "mode=mixed", &quiet_neg, &quiet_neg);
    assert!(channels[0].iter().all(|&s| s == i16::MIN));
}

/// Per-track `gain` and `mute`, set on the request pads before the start,
/// apply from the first sample; checked on the samples.
#[test]
fn gain_and_mute_apply_to_their_own_track_sample_for_sample() {
    init();
    let dir = tmp_dir("gain-mute");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {} {}",
        location.display(),
        appsrc("a"),
        appsrc("b")
    ));
    let rec = pipeline.by_name("rec").unwrap();
    let pad = |n: &str| rec.static_pad(n).unwrap();
    pad("sink_0").set_property("gain", -6.0f64);
    pad("sink_1").set_property("mute", true);
    pipeline.set_state(gst::State::Playing).unwrap();
    let a = tone(440.0, 10000.0, 4000);
    feed(&pipeline, "a", 8000, 0, &a);
    feed(&pipeline, "b", 8000, 0, &tone(1000.0, 10000.0, 4000));
    let messages = finish(&pipeline);
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    let channels = read_wav(&location).2;
    let factor = 10f64.powf(-6.0 / 20.0);
    let expected: Vec<i16> = a
        .iter()
        .map(|&s| (f64::from(s) * factor).round() as i16)
        .collect();
    assert_eq!(channels[0], expected, "track 0 at -6 dB");
    assert!(channels[1].iter().all(|&s| s == 0), "track 1 muted");
    assert_eq!(track_stat(&finalized, 1, "muted-samples"), 4000);
    assert_eq!(track_stat(&finalized, 0, "muted-samples"), 0);
}

/// Muting while PLAYING starts at the running time it was asked at: the
/// muted span in the file starts within one buffer of it, and its length
/// is what `muted-samples` counts.
#[test]
fn mute_while_playing_cuts_the_track_from_then_on() {
    init();
    let dir = tmp_dir("mute-live");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} \
         audiotestsrc name=src is-live=true samplesperbuffer=160 volume=0.5 ! audio/x-raw,rate=8000,channels=1 ! rec.sink_0",
        location.display()
    ));
    let rec = pipeline.by_name("rec").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    pipeline
        .by_name("src")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let pts = info.buffer().and_then(|b| b.pts()).unwrap_or_default();
            if pts >= gst::ClockTime::from_mseconds(500) {
                let _ = tx.send(pts);
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    let asked_at = rec.current_running_time().unwrap();
    rec.static_pad("sink_0").unwrap().set_property("mute", true);
    // Another half second, then stop.
    while rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap()
        < asked_at + gst::ClockTime::from_mseconds(500)
    {}
    pipeline.set_state(gst::State::Null).unwrap();
    let messages = drain(&pipeline);
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    let data = &read_wav(&location).2[0];
    let first_muted = data
        .windows(80)
        .position(|w| w.iter().all(|&s| s == 0))
        .expect("a muted span");
    assert!(
        data[first_muted..].iter().all(|&s| s == 0),
        "muted to the end"
    );
    let muted = track_stat(&finalized, 0, "muted-samples") as usize;
    assert_eq!(
        muted,
        data.len() - first_muted,
        "muted-samples counts the span"
    );
    let at = gst::ClockTime::from_nseconds(first_muted as u64 * 125_000);
    let off = at.nseconds().abs_diff(asked_at.nseconds());
    println!("mute asked at {asked_at}, file silent from {at}");
    assert!(off <= 20_000_000, "muted from {at}, asked at {asked_at}");
}

/// `mode=separate` with `rate=0`: each file keeps its own track's rate
/// (nothing is resampled) and the files end together. (Leading silence of
/// a late track, at its own rate: `recording.rs`'s unit test, where the
/// order of the first buffers is fixed.)
#[test]
fn separate_files_keep_each_tracks_own_rate() {
    init();
    let dir = tmp_dir("separate-rates");
    let pattern = dir.join("call-%u.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec mode=separate location={} \
         appsrc name=a format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 ! rec.sink_0 \
         appsrc name=b format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=1 ! rec.sink_1",
        pattern.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    // a: 1 s at 8 kHz; b: 0.5 s at 16 kHz; both from 0.
    let a: Vec<i16> = (0..8000).map(|k| 1 + (k % 1000) as i16).collect();
    let b: Vec<i16> = (0..8000).map(|k| -1 - (k % 1000) as i16).collect();
    feed(&pipeline, "b", 16000, 0, &b);
    feed(&pipeline, "a", 8000, 0, &a);
    let messages = finish(&pipeline);
    assert_eq!(error_text(&messages), None);
    assert!(element_message(&messages, "callrecsink-finalized").is_some());
    let file = |n: u32| dir.join(format!("call-{n}.wav"));
    let (ch0, rate0, d0) = read_wav(&file(0));
    let (ch1, rate1, d1) = read_wav(&file(1));
    assert_eq!((ch0, rate0), (1, 8000), "track 0 at its own 8 kHz");
    assert_eq!((ch1, rate1), (1, 16000), "track 1 at its own 16 kHz");
    assert_eq!(d0[0].len(), 8000);
    assert!(d0[0] == a, "track 0 sample for sample");
    assert_eq!(d1[0].len(), 16000, "both files last 1 s");
    assert!(d1[0][..8000] == b[..], "track 1 sample for sample");
    assert!(d1[0][8000..].iter().all(|&s| s == 0), "padded to the end");
}
