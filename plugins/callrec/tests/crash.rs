//! A recording process killed with SIGKILL leaves a `.part` that plays and
//! holds the audio up to the last header rewrite.
//!
//! The recording process is this test binary itself, re-run with
//! `--ignored --exact recording_process` so it uses the plugin as built here.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use gst::prelude::*;

const CHILD_ENV: &str = "CALLREC_CRASH_LOCATION";
const FORMAT_ENV: &str = "CALLREC_CRASH_FORMAT";

/// Entry point of the child process: records until it is killed.
#[test]
#[ignore = "run by sigkill_leaves_a_playable_part as the process it kills"]
fn recording_process() {
    let location = std::env::var(CHILD_ENV).expect("run only by sigkill_leaves_a_playable_part");
    let format = std::env::var(FORMAT_ENV).unwrap_or("wav".into());
    init();
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 \
         ! callrecsink location={location} header-interval=200000000 format={format}"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    panic!("the recording process was not killed");
}

/// Records in `format` in a child process, kills it after 2 s, and returns
/// the `.part` it left.
fn killed_recording(format: &str) -> std::path::PathBuf {
    let dir = tmp_dir(&format!("sigkill-{format}"));
    let location = dir.join(format!("call.{format}"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "recording_process", "--nocapture"])
        .env(CHILD_ENV, &location)
        .env(FORMAT_ENV, format)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !location.exists(),
        "an unfinished recording must not be published"
    );
    part(&location)
}

#[test]
fn sigkill_leaves_a_playable_part() {
    let (channels, rate, data) = read_wav(&killed_recording("wav"));
    assert_eq!((channels, rate), (1, 8000));
    let seconds = data[0].len() as f64 / 8000.0;
    println!("the killed recording's .part plays {seconds:.2} s");
    // Recording starts within a few hundred ms; the header is at most 0.2 s stale.
    assert!(seconds >= 1.3, "only {seconds} s playable");
    assert!(
        data[0].iter().any(|&s| s.abs() > 1000),
        "the .part holds the tone"
    );
}

/// FLAC, Ogg Opus and MP3: the `.part` decodes, with a decoder that is not
/// ours, up to at most `header-interval` (0.2 s here) before the kill.
#[test]
fn sigkill_leaves_a_playable_part_in_flac_opus_and_mp3() {
    init();
    let flac = killed_recording("flac");
    let mut reader = claxon::FlacReader::open(&flac).unwrap();
    assert_eq!(reader.streaminfo().sample_rate, 8000);
    let samples: Vec<i32> = reader.samples().map_while(Result::ok).collect();
    let opus = killed_recording("opus");
    let decoded = decode_opus(&opus, 8000).swap_remove(0);
    let mp3 = decode_mp3(&killed_recording("mp3"), 8000).swap_remove(0);
    for (format, n, loud) in [
        ("mp3", mp3.len(), mp3.iter().any(|&s| s.abs() > 1000)),
        (
            "flac",
            samples.len(),
            samples.iter().any(|&s| s.abs() > 1000),
        ),
        (
            "opus",
            decoded.len(),
            decoded.iter().any(|&s| s.abs() > 1000),
        ),
    ] {
        let seconds = n as f64 / 8000.0;
        println!("the killed {format} recording's .part plays {seconds:.2} s");
        assert!(seconds >= 1.3, "{format}: only {seconds} s playable");
        assert!(loud, "{format}: the .part holds the tone");
    }
}
