// SPDX-License-Identifier: MPL-2.0
//! A recording process killed with SIGKILL leaves a `.part` that plays,
//! and that holds what was handed to the element up to `header-interval`
//! (plus one encoder frame, per format) before the kill, with both cores
//! saturated by other work.
//!
//! The recording process is this test binary itself, re-run with
//! `--ignored --exact recording_process` so it uses the plugin as built here.
//! It prints its pipeline's base time on the system clock (CLOCK_MONOTONIC):
//! a live `audiotestsrc` hands a buffer over at its start, so by the kill
//! the element was handed the running time since then.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use gst::prelude::*;

const CHILD_ENV: &str = "CALLREC_CRASH_LOCATION";
const FORMAT_ENV: &str = "CALLREC_CRASH_FORMAT";
const RECIPIENTS_ENV: &str = "CALLREC_CRASH_RECIPIENTS";
/// The child's header-interval: 200 ms (`CALLREC_CRASH_INTERVAL_MS` for
/// another, to measure).
fn interval_ms() -> u64 {
    std::env::var("CALLREC_CRASH_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}
/// How many kills per format (`CALLREC_CRASH_KILLS` for more).
const KILLS: usize = 3;

/// What each format may lose beyond `header-interval`: one encoder frame.
/// MP3: LAME holds its encoder delay (1105 samples) and a frame (576) at
/// 8 kHz; Opus a 20 ms frame and the one opusenc is building.
fn frame_of(format: &str) -> f64 {
    match format {
        "mp3" => 1681.0 / 8000.0,
        "opus" => 0.04,
        _ => 0.0,
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Entry point of the child process: records until it is killed.
#[test]
#[ignore = "run by the SIGKILL tests as the process they kill"]
fn recording_process() {
    let location = std::env::var(CHILD_ENV).expect("run only by the SIGKILL tests");
    let format = std::env::var(FORMAT_ENV).unwrap_or("wav".into());
    let recipients = std::env::var(RECIPIENTS_ENV)
        .map(|r| format!("recipients={r}"))
        .unwrap_or_default();
    init();
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 \
         ! callrecsink location={location} header-interval={} format={format} {recipients}",
        interval_ms() * 1_000_000
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(5)).0.unwrap();
    let clock = pipeline.clock().unwrap();
    assert_eq!(
        clock.property::<gst::ClockType>("clock-type"),
        gst::ClockType::Monotonic
    );
    println!("base-time {}", pipeline.base_time().unwrap().nseconds());
    std::thread::sleep(Duration::from_secs(60));
    panic!("the recording process was not killed");
}

/// Records in `format` in a child process, kills it `after` its start,
/// under load; the `.part` it left and the seconds handed to the element
/// before the kill.
fn killed_recording(format: &str, run: usize, after: Duration) -> (std::path::PathBuf, f64) {
    killed_recording_to(format, run, after, None)
}

/// The same, encrypted to `recipient` if given.
fn killed_recording_to(
    format: &str,
    run: usize,
    after: Duration,
    recipient: Option<&str>,
) -> (std::path::PathBuf, f64) {
    let sealed = if recipient.is_some() { "-sealed" } else { "" };
    let dir = tmp_dir(&format!("sigkill-{format}{sealed}-{run}"));
    let location = dir.join(format!("call.{format}"));
    let _load = callaudio_testkit::process::CpuLoad::start();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--ignored", "--exact", "recording_process", "--nocapture"])
        .env(CHILD_ENV, &location)
        .env(FORMAT_ENV, format)
        .stdout(Stdio::piped());
    if let Some(r) = recipient {
        command.env(RECIPIENTS_ENV, r);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base: u64 = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("base-time ")?.parse().ok())
        .expect("the child's base time");
    std::thread::sleep(after);
    let killed_at = monotonic_ns();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !location.exists(),
        "an unfinished recording must not be published"
    );
    (part(&location), (killed_at - base) as f64 / 1e9)
}

/// The samples of a killed `.part`, by a decoder that is not ours.
fn decode(format: &str, part: &std::path::Path) -> Vec<i16> {
    match format {
        "wav" => {
            let (channels, rate, mut data) = read_wav(part);
            assert_eq!((channels, rate), (1, 8000));
            data.swap_remove(0)
        }
        "flac" => {
            let mut reader = claxon::FlacReader::open(part).unwrap();
            assert_eq!(reader.streaminfo().sample_rate, 8000);
            // A killed file may end in the middle of a frame: what came before plays.
            reader
                .samples()
                .map_while(Result::ok)
                .map(|s| s as i16)
                .collect()
        }
        "opus" => decode_opus(part, 8000).swap_remove(0),
        _ => decode_mp3(part, 8000).swap_remove(0),
    }
}

/// Kills a recording in `format` at several moments, under load: each
/// `.part` plays, holds the tone, and lost at most the stated bound of what
/// was handed over.
fn loses_at_most_the_bound(format: &str) {
    init();
    let kills = std::env::var("CALLREC_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(KILLS);
    let bound = interval_ms() as f64 / 1000.0 + frame_of(format);
    let mut worst = 0f64;
    for run in 0..kills {
        // From 1.3 s to 2.2 s in (and a header-interval more), at no
        // particular phase of the writer.
        let after = Duration::from_millis(1300 + interval_ms() + (run as u64 * 317) % 900);
        let (part, handed) = killed_recording(format, run, after);
        let samples = decode(format, &part);
        let kept = samples.len() as f64 / 8000.0;
        let lost = handed - kept;
        worst = worst.max(lost);
        println!(
            "{format}: killed {handed:.3} s in, the .part plays {kept:.3} s: lost {lost:.3} s"
        );
        assert!(
            samples.iter().any(|&s| s.abs() > 1000),
            "{format}: the .part holds the tone"
        );
        assert!(
            lost <= bound,
            "{format}: lost {lost:.3} s of {handed:.3} s handed over; the bound is {bound:.3} s"
        );
    }
    println!("{format}: the worst of {kills} kills lost {worst:.3} s (bound {bound:.3} s)");
}

#[test]
fn sigkill_under_load_loses_at_most_header_interval_wav() {
    loses_at_most_the_bound("wav");
}

#[test]
fn sigkill_under_load_loses_at_most_header_interval_flac() {
    loses_at_most_the_bound("flac");
}

#[test]
fn sigkill_under_load_loses_at_most_header_interval_and_a_frame_opus() {
    loses_at_most_the_bound("opus");
}

#[test]
fn sigkill_under_load_loses_at_most_header_interval_and_a_frame_mp3() {
    loses_at_most_the_bound("mp3");
}

/// An encrypted recording killed under load: `age -d` of its `.part`
/// gives every whole 64 KiB chunk (and reports the truncation), and the
/// documented command (`sox --ignore-length`) plays it; lost at most
/// `header-interval` and one chunk (4.096 s of 8 kHz mono WAV).
#[test]
fn sigkill_of_an_encrypted_recording_keeps_its_whole_chunks() {
    init();
    let dir = tmp_dir("sigkill-key");
    let identity = dir.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap();
    let public = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("age-keygen prints the public key")
        .to_owned();
    let chunk = 65536.0 / (2.0 * 8000.0);
    let bound = interval_ms() as f64 / 1000.0 + chunk;
    for run in 0..2 {
        // Two or three chunks in, at no particular phase.
        let after = Duration::from_millis(9000 + run * 1700);
        let (part, handed) = killed_recording_to("wav", run as usize, after, Some(&public));
        let bytes = std::fs::read(&part).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        let recovered = part.with_extension("recovered.wav");
        let fixed = part.with_extension("fixed.wav");
        let age = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg("-o")
            .arg(&recovered)
            .arg(&part)
            .output()
            .unwrap();
        assert!(
            !age.status.success() && String::from_utf8_lossy(&age.stderr).contains("EOF"),
            "age reports the truncation: {age:?}"
        );
        let sox = Command::new("sox")
            .arg("--ignore-length")
            .arg(&recovered)
            .arg(&fixed)
            .output()
            .unwrap();
        assert!(sox.status.success(), "{sox:?}");
        let (_, _, data) = common::read_wav(&fixed);
        let kept = data[0].len() as f64 / 8000.0;
        let lost = handed - kept;
        println!("encrypted wav: killed {handed:.3} s in, recovered {kept:.3} s: lost {lost:.3} s");
        assert!(data[0].iter().any(|&s| s.abs() > 1000), "the tone");
        assert!(
            lost <= bound && lost >= 0.0,
            "lost {lost:.3} s of {handed:.3} s; the bound is {bound:.3} s"
        );
    }
}
