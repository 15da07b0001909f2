// SPDX-License-Identifier: MPL-2.0
//! Whatever an attacker with write access to the recording directory puts
//! where a recording goes, callrecsink never writes through it, never opens
//! it in a way that can block, never replaces a recording silently, and
//! never leaves a file that looks finished when publishing failed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Tries to start a one-track recording at `location`; the ERROR text if
/// the state change to PAUSED failed, and how long it took.
fn start(location: &Path, props: &str) -> (Option<String>, Duration) {
    let pipeline = launch(&format!(
        "callrecsink name=rec {props} location={} {}",
        location.display(),
        appsrc("caller")
    ));
    let t = Instant::now();
    let result = pipeline.set_state(gst::State::Paused);
    let took = t.elapsed();
    let messages = drain(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    match result {
        Ok(_) => (None, took),
        Err(_) => {
            let (text, debug) = error_text(&messages).expect("a failed start posts an ERROR");
            (Some(format!("{text} | {debug}")), took)
        }
    }
}

/// Records one second of a ramp at `location`; the bus messages.
fn record(location: &Path, props: &str) -> Vec<gst::Message> {
    let pipeline = launch(&format!(
        "callrecsink name=rec {props} location={} {}",
        location.display(),
        appsrc("caller")
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    feed_ramp(&pipeline, "caller", 50, 1);
    finish(&pipeline)
}

fn precious(dir: &Path) -> PathBuf {
    let target = dir.join("precious.txt");
    std::fs::write(&target, b"somebody else's data").unwrap();
    target
}

fn assert_untouched(target: &Path) {
    assert_eq!(std::fs::read(target).unwrap(), b"somebody else's data");
}

#[test]
fn a_symlinked_part_is_refused_and_its_target_untouched() {
    init();
    let dir = tmp_dir("symlink-part");
    let location = dir.join("call.wav");
    let target = precious(&dir);
    std::os::unix::fs::symlink(&target, part(&location)).unwrap();
    // Before: the target was truncated and overwritten with audio.
    let (error, _) = start(&location, "");
    let error = error.expect("the recording started through a symlink");
    assert!(error.contains("symbolic link"), "{error}");
    assert!(error.contains(".part"), "{error}");
    assert_untouched(&target);
    assert!(
        std::fs::symlink_metadata(part(&location))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn a_hard_linked_part_is_refused_and_the_other_name_untouched() {
    init();
    let dir = tmp_dir("hardlink-part");
    let location = dir.join("call.wav");
    let target = precious(&dir);
    std::fs::hard_link(&target, part(&location)).unwrap();
    let (error, _) = start(&location, "");
    assert!(error.expect("started").contains("already there"));
    assert_untouched(&target);
}

#[test]
fn a_fifo_part_is_refused_at_once_instead_of_hanging() {
    init();
    let dir = tmp_dir("fifo-part");
    let location = dir.join("call.wav");
    let fifo = std::ffi::CString::new(part(&location).to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
    // Before: READY->PAUSED blocked forever in open(2), waiting for a reader.
    let (error, took) = start(&location, "");
    let error = error.expect("started on a FIFO");
    assert!(error.contains("FIFO"), "{error}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_socket_part_is_refused() {
    init();
    let dir = tmp_dir("socket-part");
    let location = dir.join("call.wav");
    let _listener = std::os::unix::net::UnixListener::bind(part(&location)).unwrap();
    let (error, _) = start(&location, "");
    assert!(error.expect("started on a socket").contains("socket"));
}

#[test]
fn a_stale_part_is_kept_for_recovery_and_never_reused() {
    init();
    let dir = tmp_dir("stale-part");
    let location = dir.join("call.wav");
    // What a killed recording leaves, world-writable as an attacker made it.
    std::fs::write(part(&location), b"RIFF of a killed call").unwrap();
    std::fs::set_permissions(part(&location), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (error, _) = start(&location, "");
    let error = error.expect("a stale .part was reused");
    assert!(error.contains("unfinished recording"), "{error}");
    assert_eq!(
        std::fs::read(part(&location)).unwrap(),
        b"RIFF of a killed call"
    );
}

#[test]
fn the_part_gets_exactly_file_mode_whatever_the_umask() {
    init();
    let dir = tmp_dir("file-mode");
    let location = dir.join("call.wav");
    let old = unsafe { libc::umask(0) };
    let pipeline = launch(&format!(
        "callrecsink name=rec file-mode=384 location={} {}",
        location.display(),
        appsrc("caller")
    ));
    pipeline.set_state(gst::State::Paused).unwrap();
    unsafe { libc::umask(old) };
    let mode = std::fs::metadata(part(&location))
        .unwrap()
        .permissions()
        .mode();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_directory_at_location_fails_before_any_audio() {
    init();
    let dir = tmp_dir("dir-location");
    let location = dir.join("call.wav");
    std::fs::create_dir(&location).unwrap();
    // Before: found out only at publish time, after the whole call.
    let (error, _) = start(&location, "overwrite=true");
    assert!(error.expect("started").contains("directory"));
    assert!(!part(&location).exists(), "a .part was left behind");
}

#[test]
fn an_existing_recording_is_never_replaced_without_overwrite() {
    init();
    let dir = tmp_dir("existing");
    let location = dir.join("call.wav");
    std::fs::write(&location, b"yesterday's call").unwrap();
    let (error, _) = start(&location, "");
    assert!(error.expect("started").contains("overwrite=true"));
    assert_eq!(std::fs::read(&location).unwrap(), b"yesterday's call");
    assert!(!part(&location).exists());
    // With overwrite it is replaced by the new recording.
    let messages = record(&location, "overwrite=true");
    assert!(element_message(&messages, "callrecsink-finalized").is_some());
    assert_eq!(read_wav(&location).2[0].len(), 8000);
}

#[test]
fn overwriting_a_symlink_replaces_the_link_not_its_target() {
    init();
    let dir = tmp_dir("symlink-location");
    let location = dir.join("call.wav");
    let target = precious(&dir);
    std::os::unix::fs::symlink(&target, &location).unwrap();
    let messages = record(&location, "overwrite=true");
    assert!(element_message(&messages, "callrecsink-finalized").is_some());
    assert!(!std::fs::symlink_metadata(&location).unwrap().is_symlink());
    assert_untouched(&target);
}

#[test]
fn a_file_appearing_during_the_call_fails_publishing_of_every_track() {
    init();
    let dir = tmp_dir("separate-rollback");
    let location = dir.join("call-%u.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec mode=separate location={} {} {}",
        location.display(),
        appsrc("caller"),
        appsrc("agent")
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    // The second track's final name is taken while the call runs.
    let taken = dir.join("call-1.wav");
    std::fs::write(&taken, b"theirs").unwrap();
    feed_ramp(&pipeline, "caller", 50, 1);
    feed_ramp(&pipeline, "agent", 50, -1);
    let messages = finish(&pipeline);
    let failed = element_message(&messages, "callrecsink-failed").expect("callrecsink-failed");
    let reason = failed.get::<String>("reason").unwrap();
    assert!(reason.contains("call-1.wav"), "{reason}");
    assert!(element_message(&messages, "callrecsink-finalized").is_none());
    // No track is published alone; both recordings stay under .part.
    assert!(!dir.join("call-0.wav").exists(), "track 0 published alone");
    assert_eq!(std::fs::read(&taken).unwrap(), b"theirs");
    assert_eq!(read_wav(&part(&dir.join("call-0.wav"))).2[0].len(), 8000);
    assert_eq!(read_wav(&part(&taken)).2[0].len(), 8000);
}
