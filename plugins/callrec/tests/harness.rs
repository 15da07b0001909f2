// SPDX-License-Identifier: MPL-2.0
//! `callrecsink` driven by `gst_check::Harness` on its test clock: every
//! clock wait (the start timeout, each track's stall deadline) is cranked by
//! hand, so what happens when is exact and no test waits on wall time.
//!
//! The outcome is read from the `finished` signal, which carries the same
//! structure the bus gets; the recording from the file, by `hound`.

mod common;

use std::sync::{Arc, Mutex};

use callaudio_testkit::audio::ramp;
use common::*;
use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;

fn ms(v: u64) -> ClockTime {
    ClockTime::from_mseconds(v)
}

fn s16_mono(rate: u32) -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .rate(rate as i32)
        .channels(1)
        .build()
}

/// A recorder with one track fed by the harness at 8 kHz, on the test
/// clock, and the outcome it will report.
fn recorder(
    test: &str,
    configure: impl FnOnce(&gst::Element),
) -> (
    Harness,
    std::path::PathBuf,
    Arc<Mutex<Option<gst::Structure>>>,
) {
    init();
    let location = tmp_dir(test).join("call.wav");
    let rec = gst::ElementFactory::make("callrecsink")
        .property("location", location.to_str().unwrap())
        .build()
        .unwrap();
    configure(&rec);
    let outcome = Arc::new(Mutex::new(None));
    let seen = outcome.clone();
    rec.connect("finished", false, move |args| {
        *seen.lock().unwrap() = Some(args[1].get::<gst::Structure>().unwrap());
        None
    });
    let mut h = Harness::with_element(&rec, Some("sink_%u"), None);
    h.use_testclock();
    h.set_src_caps(s16_mono(8000));
    (h, location, outcome)
}

fn outcome(outcome: &Mutex<Option<gst::Structure>>) -> gst::Structure {
    outcome.lock().unwrap().clone().expect("an outcome")
}

/// Waits until the recording's `.part` file (a valid WAV whose header the
/// writer rewrites every `header-interval`) holds at least `frames` frames;
/// gives up after 10 s of wall time, which only a hang takes.
fn wait_for_frames_on_disk(location: &std::path::Path, frames: u32) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let on_disk = hound::WavReader::open(part(location))
            .map(|r| r.duration())
            .unwrap_or(0);
        if on_disk >= frames || std::time::Instant::now() > deadline {
            return on_disk;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn no_audio_within_start_timeout_fails_on_the_pipeline_clock() {
    let (mut h, location, result) = recorder("h-start-timeout", |rec| {
        rec.set_property("start-timeout", ClockTime::SECOND.nseconds());
    });
    h.play();
    // The test clock moves only as its waits are cranked (the start timeout,
    // and stallfiller's deadlines, which find nothing to fill before audio).
    let clock = h.testclock().unwrap();
    let start = clock.time();
    while result.lock().unwrap().is_none() {
        // A stall deadline may fall due at 1 s too, and be cranked first.
        assert!(
            clock.time() <= start + ClockTime::SECOND,
            "no outcome at 1 s"
        );
        assert!(h.crank_single_clock_wait().is_ok());
    }
    assert_eq!(clock.time(), start + ClockTime::SECOND, "decided at 1 s");
    let failed = outcome(&result);
    assert_eq!(failed.name(), "callrecsink-failed");
    assert_eq!(failed.get::<String>("reason").unwrap(), "no-audio");
    assert!(!location.exists());
    assert!(!part(&location).exists());
}

#[test]
fn a_stall_reaches_the_recording_while_it_lasts() {
    let (mut h, location, result) = recorder("h-stall", |rec| {
        rec.set_property("start-timeout", 0u64);
        rec.set_property("header-interval", 0u64);
    });
    h.play();
    h.push(ramp(0, 800, 8000, ClockTime::ZERO)).unwrap();
    // The track stalls after 100 ms. Each 20 ms of silence is due 200 ms
    // (stallfiller's threshold) after the sample it replaces; the test
    // clock moves only as each deadline is cranked.
    let clock = h.testclock().unwrap();
    let mut cranked = 0;
    while clock.time() < ms(1300) {
        assert!(h.crank_single_clock_wait().is_ok());
        cranked += 1;
        assert!(cranked < 1000, "the stall deadlines stop coming");
    }
    // By 1.3 s on the clock, the stall from 100 ms to at least 1.1 s has
    // reached the file, with no input and no EOS.
    let on_disk = wait_for_frames_on_disk(&location, 800 + 8000);
    assert!(on_disk >= 8800, "{on_disk} frames on disk by 1.3 s");
    let filled = u64::from(on_disk) - 800;
    h.push_event(gst::event::Eos::new());
    let finalized = outcome(&result);
    assert_eq!(finalized.name(), "callrecsink-finalized", "{finalized}");
    let track = finalized.get::<gst::Array>("tracks").unwrap();
    let track = track.first().unwrap().get::<gst::Structure>().unwrap();
    assert_eq!(track.get::<u64>("received-samples").unwrap(), 800);
    let recorded_silence = track.get::<u64>("silence-samples").unwrap();
    assert!(recorded_silence >= filled, "{recorded_silence} < {filled}");
    let (_, rate, channels) = read_wav(&location);
    assert_eq!(rate, 8000);
    assert_eq!(channels[0].len() as u64, 800 + recorded_silence);
    // The audio is the file's first 100 ms, unharmed; silence follows.
    assert_eq!(channels[0][..800], (0..800).collect::<Vec<i16>>()[..]);
    assert!(channels[0][800..].iter().all(|&s| s == 0));
}

#[test]
fn a_track_that_changes_rate_mid_call_is_converted_from_then_on() {
    let (mut h, location, result) = recorder("h-rate-change", |rec| {
        rec.set_property("start-timeout", 0u64);
    });
    h.play();
    // 100 ms at 8 kHz fix the file at 8 kHz; the track needs no converter.
    h.push(ramp(0, 800, 8000, ClockTime::ZERO)).unwrap();
    // Then the same track switches to 16 kHz (a codec change in the call):
    // from here on it is resampled to the file's rate, and nothing is
    // recorded at the wrong rate.
    h.set_src_caps(s16_mono(16000));
    for k in 0..5u64 {
        h.push(ramp(0, 320, 16000, ms(100 + 20 * k))).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let finalized = outcome(&result);
    assert_eq!(finalized.name(), "callrecsink-finalized", "{finalized}");
    let (_, rate, channels) = read_wav(&location);
    assert_eq!(rate, 8000);
    // 200 ms at 8 kHz, but for what the resampler holds back at the switch
    // (its filter's delay, well under 5 ms).
    let frames = channels[0].len();
    assert!((1560..=1600).contains(&frames), "{frames} frames");
    assert_eq!(channels[0][..800], (0..800).collect::<Vec<i16>>()[..]);
}
