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

/// Entry point of the child process: records until it is killed.
#[test]
#[ignore = "run by sigkill_leaves_a_playable_part as the process it kills"]
fn recording_process() {
    let location = std::env::var(CHILD_ENV).expect("run only by sigkill_leaves_a_playable_part");
    init();
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 \
         ! callrecsink location={location} header-interval=200000000"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    panic!("the recording process was not killed");
}

#[test]
fn sigkill_leaves_a_playable_part() {
    let dir = tmp_dir("sigkill");
    let location = dir.join("call.wav");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "recording_process", "--nocapture"])
        .env(CHILD_ENV, &location)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert!(
        !location.exists(),
        "an unfinished recording must not be published"
    );
    let (channels, rate, data) = read_wav(&part(&location));
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
