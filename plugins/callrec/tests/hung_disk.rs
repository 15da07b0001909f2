//! A disk that stops taking data (an NFS server gone away, a wedged
//! device): nothing may wait for it forever. Simulated with a FIFO in place
//! of the `.part`, opened by a reader that never reads: once the pipe's
//! buffer is full, every write blocks, as on a hung disk.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Puts a FIFO where the recording's `.part` goes and holds it open for
/// reading without ever reading.
fn hung_part(location: &std::path::Path) -> std::fs::File {
    let fifo = CString::new(part(location).as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(part(location))
        .unwrap()
}

#[test]
fn stop_while_the_disk_hangs_returns_within_finalize_timeout() {
    init();
    let dir = tmp_dir("hung-disk");
    let location = dir.join("call.wav");
    let reader = hung_part(&location);
    // 96 kB/s fills the pipe's 64 kB within a second; no header rewrites
    // (a FIFO cannot seek), so the only thing in the way is the hang.
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 \
         ! callrecsink location={} header-interval=3600000000000 finalize-timeout=500000000",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        error_text(&drain(&pipeline)).is_none(),
        "the hang is not visible while the queue has room"
    );

    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let took = t.elapsed();
    println!("stop with a hung disk took {took:?}");
    assert!(took < Duration::from_millis(1500), "stop took {took:?}");

    let messages = drain(&pipeline);
    let (text, _) = error_text(&messages).expect("an ERROR for the unfinished recording");
    println!("error: {text}");
    assert!(
        text.contains("did not respond") || text.contains("finalize-timeout"),
        "{text}"
    );
    assert!(element_message(&messages, "callrecsink-failed").is_some());
    assert!(!location.exists(), "an unfinished recording was published");
    // The stuck writer gets EPIPE once the reader goes, and ends.
    drop(reader);
}

#[test]
fn audio_for_a_hung_disk_fails_the_recording_instead_of_blocking() {
    init();
    let dir = tmp_dir("hung-disk-flood");
    let location = dir.join("call.wav");
    let reader = hung_part(&location);
    // As fast as the CPU goes: the writer's queue fills at once.
    let pipeline = launch(&format!(
        "audiotestsrc samplesperbuffer=960 num-buffers=100000 ! audio/x-raw,rate=48000,channels=1 \
         ! callrecsink location={} header-interval=3600000000000 finalize-timeout=500000000",
        location.display()
    ));
    let t = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(10),
    );
    let (text, _) = error_text(&messages).expect("an ERROR once the disk takes nothing");
    println!("error after {:?}: {text}", t.elapsed());
    assert!(text.contains("did not respond"), "{text}");
    assert!(
        text.contains(&part(&location).display().to_string()),
        "{text}"
    );
    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(!location.exists());
    drop(reader);
}
