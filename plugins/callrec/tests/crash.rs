//! A recording process killed with SIGKILL leaves a `.part` that plays and
//! holds the audio up to the last header rewrite.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The plugin libraries cargo built next to this test binary.
fn plugin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

#[test]
fn sigkill_leaves_a_playable_part() {
    let dir = tmp_dir("sigkill");
    let location = dir.join("call.wav");
    let plugins = plugin_dir();
    assert!(plugins.join("libgstcallrec.so").exists(), "no plugin in {}", plugins.display());
    let mut child = Command::new("gst-launch-1.0")
        .env("GST_PLUGIN_PATH", &plugins)
        .args([
            "-q",
            "audiotestsrc",
            "is-live=true",
            "samplesperbuffer=160",
            "!",
            "audio/x-raw,rate=8000,channels=1",
            "!",
            "callrecsink",
            &format!("location={}", location.display()),
            "header-interval=200000000",
        ])
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) must be installed");
    std::thread::sleep(Duration::from_millis(2000));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert!(!location.exists(), "an unfinished recording must not be published");
    let (channels, rate, data) = read_wav(&part(&location));
    assert_eq!((channels, rate), (1, 8000));
    let seconds = data[0].len() as f64 / 8000.0;
    println!("the killed recording's .part plays {seconds:.2} s");
    // Started within ~0.3 s of launch, header at most 0.2 s stale.
    assert!(seconds >= 1.3, "only {seconds} s playable");
    assert!(data[0].iter().any(|&s| s.abs() > 1000), "the .part holds the tone");
}
