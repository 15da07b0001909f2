// SPDX-License-Identifier: MPL-2.0
//! `examples/record_call.py` run as a user runs it: Debian's Python with
//! python3-gst-1.0, the plugins found through GST_PLUGIN_PATH, the outcome
//! (its `tracks` array included) read from the `finished` signal.

use std::process::Command;

#[test]
fn python_records_and_reads_the_outcome() {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/python-<hash>: the plugins are in target/<profile>.
    let plugins = exe.parent().unwrap().parent().unwrap();
    assert!(
        plugins.join("libgstcallrec.so").exists(),
        "no libgstcallrec.so in {}: `cargo test` builds no plugin file; run `cargo build --workspace` first",
        plugins.display()
    );
    // A space and a '!' in the path, as a user's home may have.
    let dir = std::env::temp_dir().join(format!("python example! {}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let location = dir.join("call.wav");
    let out = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/record_call.py"))
        .arg(&location)
        .env("GST_PLUGIN_PATH", plugins)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}: {said}{errors}",
        out.status
    );
    assert!(
        said.contains(&format!("finalized {}", location.display())),
        "{said}"
    );
    // Two seconds per track, at the highest input rate (16 kHz).
    let reader = hound::WavReader::open(&location).unwrap();
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_rate, 16000);
    assert_eq!(reader.duration(), 32000);
    assert!(said.contains("32000 frames at 16000 Hz"), "{said}");
    assert!(
        said.contains("sink_1: 32000 samples received"),
        "the tracks array was read: {said}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
