// SPDX-License-Identifier: MPL-2.0
//! callrecsink in real pipelines; every file is read back with `hound`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

const RATE: usize = 8000;

/// Records 2 s of ramps, the caller's rising and the agent's falling, from
/// two appsrc tracks into `callrecsink name=rec {props}`. `in_paused` runs
/// once the recording is open, before any audio.
fn record_two_ramps(
    test: &str,
    props: &str,
    in_paused: impl FnOnce(&gst::Element),
) -> (std::path::PathBuf, Vec<gst::Message>) {
    let file = if props.contains("mode=separate") {
        "call-%u.wav"
    } else {
        "call.wav"
    };
    let location = tmp_dir(test).join(file);
    let pipeline = launch(&format!(
        "callrecsink name=rec {props} location={} {} {}",
        location.display(),
        appsrc("caller"),
        appsrc("agent")
    ));
    pipeline.set_state(gst::State::Paused).unwrap();
    in_paused(&pipeline.by_name("rec").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    feed_ramp(&pipeline, "caller", 100, 1);
    feed_ramp(&pipeline, "agent", 100, -1);
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(10),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    (location, messages)
}

#[test]
fn eos_gives_a_complete_stereo_file_with_every_sample() {
    init();
    let (location, messages) = record_two_ramps("eos", "", |_| {});
    assert_eq!(error_text(&messages), None);
    let finalized =
        element_message(&messages, "callrecsink-finalized").expect("no finalized message");
    assert_eq!(finalized.get::<u64>("frames").unwrap(), 16000);
    assert_eq!(
        finalized.get::<gst::ClockTime>("duration").unwrap(),
        gst::ClockTime::from_seconds(2)
    );
    assert_eq!(track_stat(&finalized, 0, "received-samples"), 16000);
    assert_eq!(track_stat(&finalized, 1, "silence-samples"), 0);

    assert!(!part(&location).exists());
    assert_header_matches_file(&location);
    let (channels, rate, data) = read_wav(&location);
    assert_eq!((channels, rate), (2, 8000));
    let ramp: Vec<i16> = (0..16000).map(|k| (k % 30000) as i16).collect();
    assert_eq!(
        data[0], ramp,
        "left channel is the caller, sample for sample"
    );
    assert_eq!(
        data[1],
        ramp.iter().map(|v| -v).collect::<Vec<_>>(),
        "right channel is the agent"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&location).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn separate_mode_gives_one_mono_file_per_track() {
    init();
    let (pattern, messages) = record_two_ramps("separate", "mode=separate", |_| {});
    assert_eq!(error_text(&messages), None);
    let finalized =
        element_message(&messages, "callrecsink-finalized").expect("no finalized message");
    let files: Vec<String> = finalized
        .get::<gst::Array>("files")
        .unwrap()
        .iter()
        .map(|v| v.get::<String>().unwrap())
        .collect();
    let expected: Vec<String> = (0..2)
        .map(|t| pattern.to_string_lossy().replace("%u", &t.to_string()))
        .collect();
    assert_eq!(files, expected);
    let ramp: Vec<i16> = (0..16000).map(|k| (k % 30000) as i16).collect();
    for (t, file) in files.iter().enumerate() {
        let path = std::path::Path::new(file);
        assert_header_matches_file(path);
        assert!(!part(path).exists());
        let (channels, rate, data) = read_wav(path);
        assert_eq!((channels, rate), (1, 8000));
        let sign = if t == 0 { 1 } else { -1 };
        assert_eq!(
            data[0],
            ramp.iter().map(|v| sign * v).collect::<Vec<_>>(),
            "track {t}"
        );
    }
}

#[test]
fn separate_mode_without_a_track_number_in_location_fails_before_playing() {
    init();
    let dir = tmp_dir("separate-bad");
    let pipeline = launch(&format!(
        "callrecsink name=rec mode=separate location={}/call.wav audiotestsrc ! audio/x-raw,rate=8000,channels=1 ! rec.",
        dir.display()
    ));
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let (text, _) = error_text(&drain(&pipeline)).expect("an error");
    assert!(text.contains("%u"), "{text}");
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no file may be left"
    );
}

#[test]
fn tracks_of_different_formats_and_rates_share_one_timeline() {
    init();
    let dir = tmp_dir("formats");
    let location = dir.join("call.wav");
    // A mu-law 8 kHz caller and an F32 16 kHz agent: the file runs at 16 kHz.
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} \
         audiotestsrc num-buffers=50 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rec. \
         audiotestsrc num-buffers=50 samplesperbuffer=320 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! rec.",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(10),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(error_text(&messages), None);
    let (channels, rate, data) = read_wav(&location);
    assert_eq!((channels, rate), (2, 16000));
    assert_eq!(data[0].len(), 16000);
    assert!(
        data[0][100..15000].iter().any(|&s| s.abs() > 1000),
        "mu-law track decoded"
    );
    assert!(data[1][100..15000].iter().any(|&s| s.abs() > 1000));
}

#[test]
fn stop_without_eos_finalizes_with_what_was_received() {
    init();
    let dir = tmp_dir("stop");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! callrecsink location={}",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let took = t.elapsed();
    println!("set_state(Null) with finalization took {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "stop took {took:?} (finalize-timeout is 2 s)"
    );
    let messages = drain(&pipeline);
    assert_eq!(error_text(&messages), None);
    let finalized =
        element_message(&messages, "callrecsink-finalized").expect("no finalized message");
    assert_header_matches_file(&location);
    let (_, _, data) = read_wav(&location);
    let received = track_stat(&finalized, 0, "received-samples");
    assert_eq!(
        data[0].len() as u64,
        received + track_stat(&finalized, 0, "silence-samples")
    );
    assert!(received >= 7000, "only {received} samples in about 1 s");
}

#[test]
fn unwritable_location_fails_before_playing_and_leaves_no_file() {
    init();
    let pipeline = launch(
        "audiotestsrc ! audio/x-raw,rate=8000,channels=1 ! callrecsink location=/nonexistent-dir/call.wav",
    );
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let messages = drain(&pipeline);
    let (text, _) = error_text(&messages).expect("an error on the bus");
    assert!(text.contains("/nonexistent-dir/call.wav.part"), "{text}");
    assert!(text.contains("No such file"), "{text}");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!std::path::Path::new("/nonexistent-dir/call.wav").exists());
}

#[test]
fn no_audio_after_playing_is_an_error_and_no_file() {
    init();
    let dir = tmp_dir("noaudio");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! valve drop=true \
         ! callrecsink location={} start-timeout=300000000",
        location.display()
    ));
    let t = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(5),
    );
    let waited = t.elapsed();
    let (text, _) = error_text(&messages).expect("an error for a silent start");
    assert!(text.contains("No audio arrived"), "{text}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!location.exists());
    assert!(!part(&location).exists());
}

#[test]
fn eos_with_no_samples_saves_nothing() {
    init();
    let dir = tmp_dir("empty");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {}",
        location.display(),
        appsrc("caller")
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    feed_ramp(&pipeline, "caller", 0, 1);
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(5),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let (text, _) = error_text(&messages).expect("an error for an empty recording");
    assert!(text.contains("no audio"), "{text}");
    let failed = element_message(&messages, "callrecsink-failed").expect("failed message");
    assert_eq!(failed.get::<String>("reason").unwrap(), "no-audio");
    assert!(!location.exists());
    assert!(!part(&location).exists());
}

#[test]
fn silence_only_is_not_a_recording() {
    init();
    let dir = tmp_dir("silence");
    let location = dir.join("call.wav");
    // A live track whose every buffer is a GAP: stallfiller's silence only.
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! valve drop=true drop-mode=transform-to-gap \
         ! callrecsink location={}",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    pipeline.set_state(gst::State::Null).unwrap();
    let messages = drain(&pipeline);
    assert!(element_message(&messages, "callrecsink-finalized").is_none());
    assert!(error_text(&messages).is_some());
    assert!(!location.exists());
    assert!(!part(&location).exists());
}

/// The production failure: two live tracks, one stalls 14 s and never
/// resumes, and the application stops without EOS.
#[test]
fn seed_scenario_stalled_track_stopped_without_eos() {
    init();
    let dir = tmp_dir("seed");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} \
         audiotestsrc name=caller is-live=true samplesperbuffer=160 volume=0.5 ! audio/x-raw,rate=8000,channels=1 ! rec. \
         audiotestsrc is-live=true samplesperbuffer=160 volume=0.5 freq=660 ! audio/x-raw,rate=8000,channels=1 \
         ! valve name=agent drop-mode=forward-sticky-events ! rec.",
        location.display()
    ));
    // Where the caller's audio ends: what a live source produced is what
    // the recording must hold (under CPU starvation a live source runs
    // behind the clock, and a stop without EOS ends where it got to).
    let produced = std::sync::Arc::new(std::sync::Mutex::new(gst::ClockTime::ZERO));
    let p = produced.clone();
    pipeline
        .by_name("caller")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                *p.lock().unwrap() = b.pts().unwrap() + b.duration().unwrap();
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    pipeline
        .by_name("agent")
        .unwrap()
        .set_property("drop", true);
    std::thread::sleep(Duration::from_secs(14));
    let stopped_at = pipeline.current_running_time().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let messages = drain(&pipeline);
    assert_eq!(error_text(&messages), None);
    let finalized =
        element_message(&messages, "callrecsink-finalized").expect("no finalized message");

    assert_header_matches_file(&location);
    let (channels, rate, data) = read_wav(&location);
    assert_eq!((channels, rate), (2, 8000));
    assert_eq!(data[0].len(), data[1].len());
    let duration =
        gst::ClockTime::from_nseconds(data[0].len() as u64 * 1_000_000_000 / RATE as u64);
    let produced = *produced.lock().unwrap();
    println!(
        "recorded {duration}, the caller produced {produced}, stopped at running time {stopped_at}"
    );
    // Everything the caller's source produced is recorded, to within the
    // buffer in flight at the stop (20 ms), and the stalled agent track is
    // filled to the same length (asserted above).
    let diff = duration.nseconds().abs_diff(produced.nseconds());
    assert!(
        diff <= 25_000_000,
        "recorded {duration} of the {produced} the caller produced"
    );
    // The agent spoke for about 1 s, then silence to the end. (Under load a
    // live source's first buffers come late; stallfiller fills from the
    // segment start and trims their stale head, so look at the whole second.)
    assert!(data[1][..RATE].iter().any(|&s| s.abs() > 1000));
    let stall_from = RATE * 13 / 10;
    assert!(
        data[1][stall_from..].iter().all(|&s| s == 0),
        "agent channel not silent after the stall"
    );
    assert!(
        data[0][data[0].len() - RATE / 2..]
            .iter()
            .any(|&s| s.abs() > 1000),
        "caller kept talking"
    );
    assert!(track_stat(&finalized, 1, "silence-samples") >= 13 * RATE as u64);
}

#[test]
fn pause_and_resume_cut_every_track_at_the_same_sample() {
    init();
    let (location, messages) = record_two_ramps("pause", "pause-mode=skip", |rec| {
        // Inside a 20 ms buffer: sample 4001 starts at 500.125 ms.
        assert!(rec.emit_by_name::<bool>("pause", &[&500_125_000u64]));
        assert!(rec.emit_by_name::<bool>("resume", &[&1_250_000_000u64]));
    });
    assert_eq!(error_text(&messages), None);
    let (channels, _, data) = read_wav(&location);
    assert_eq!(channels, 2);
    let ramp: Vec<i16> = (0..16000).map(|k| (k % 30000) as i16).collect();
    let kept: Vec<i16> = ramp[..4001].iter().chain(&ramp[10000..]).copied().collect();
    assert_eq!(
        data[0], kept,
        "caller: every sample before the pause, then every sample after"
    );
    assert_eq!(
        data[1],
        kept.iter().map(|v| -v).collect::<Vec<_>>(),
        "agent cut at the same sample"
    );
}

#[test]
fn the_outcome_reaches_the_application_even_when_the_bus_is_flushed() {
    init();
    let dir = tmp_dir("finished-signal");
    let location = dir.join("call.wav");
    // The default auto-flush-bus: a stop to NULL drops what was posted.
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 \
         ! callrecsink name=rec location={}",
        location.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<gst::Structure>::new()));
    let o = outcomes.clone();
    pipeline
        .by_name("rec")
        .unwrap()
        .connect("finished", false, move |args| {
            o.lock()
                .unwrap()
                .push(args[1].get::<gst::Structure>().unwrap());
            None
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    pipeline.set_state(gst::State::Null).unwrap();
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].name(), "callrecsink-finalized");
    assert_eq!(
        outcomes[0].get::<String>("location").unwrap(),
        location.to_str().unwrap()
    );
    assert!(location.exists());
}

#[test]
fn max_duration_ends_the_recording_at_the_exact_frame_and_the_call_goes_on() {
    init();
    let dir = tmp_dir("max-duration");
    let branch =
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec.";
    // One track (written as it comes), two (through the mixer), and two in
    // a file each (mono files, while the recording has two channels).
    for (tracks, mode) in [(1, "interleaved"), (2, "interleaved"), (2, "separate")] {
        let (location, first) = if mode == "separate" {
            let pattern = dir.join("separate-%u.wav");
            (pattern.clone(), dir.join("separate-0.wav"))
        } else {
            let location = dir.join(format!("call-{tracks}.wav"));
            (location.clone(), location)
        };
        let pipeline = launch(&format!(
            "callrecsink name=rec mode={mode} max-duration=500000000 location={} {}",
            location.display(),
            vec![branch; tracks].join(" ")
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        let messages = messages_until(
            &pipeline,
            &[gst::MessageType::Eos, gst::MessageType::Error],
            Duration::from_millis(1500),
        );
        // The call is still up: no EOS, no ERROR, still PLAYING.
        assert_eq!(pipeline.current_state(), gst::State::Playing);
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            error_text(&messages).is_none(),
            "{:?}",
            error_text(&messages)
        );
        assert!(!messages.iter().any(|m| m.type_() == gst::MessageType::Eos));
        let finalized =
            element_message(&messages, "callrecsink-finalized").expect("finalized at the limit");
        assert_eq!(finalized.get::<String>("reason").unwrap(), "max-duration");
        assert_eq!(finalized.get::<u64>("frames").unwrap(), 4000);
        let files = if mode == "separate" {
            vec![first, dir.join("separate-1.wav")]
        } else {
            vec![first]
        };
        for file in &files {
            let (channels, _, data) = read_wav(file);
            assert_eq!(channels as usize, tracks / files.len());
            assert!(
                data.iter().all(|c| c.len() == 4000),
                "{tracks} track(s) {mode}"
            );
            assert_header_matches_file(file);
        }
    }
}

#[test]
fn a_limit_that_cuts_every_frame_publishes_nothing() {
    init();
    let dir = tmp_dir("max-duration-1ns");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec max-duration=1 location={} \
         audiotestsrc is-live=true samplesperbuffer=160 num-buffers=10 ! audio/x-raw,rate=8000,channels=1 ! rec.",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(3),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let mut messages = messages;
    messages.extend(drain(&pipeline));
    assert!(
        element_message(&messages, "callrecsink-finalized").is_none(),
        "a recording with no frame was reported finalized"
    );
    let failed = element_message(&messages, "callrecsink-failed").expect("a failure outcome");
    assert_eq!(failed.get::<String>("reason").unwrap(), "no-audio");
    let (text, _) = error_text(&messages).expect("an ERROR");
    assert!(text.contains("no audio"), "{text}");
    assert!(!location.exists(), "a file with no frame was published");
    assert!(!part(&location).exists(), "the .part was kept");
}
