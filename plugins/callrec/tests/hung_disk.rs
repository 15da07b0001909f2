// SPDX-License-Identifier: MPL-2.0
//! A disk that stops taking data (an NFS server gone away, a wedged
//! device): nothing may wait for it forever. Simulated in this process by
//! replacing the recording's open `.part` descriptor (with `dup2`) by a FIFO
//! whose reader never reads: once the pipe's buffer is full, every write
//! blocks, as on a hung disk. (A FIFO put where the `.part` goes is refused
//! by the element, never opened: that is tested in `hostile_files.rs`.)

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Makes the disk under the open `.part` of `location` hang: its descriptor
/// now writes into a FIFO that is never read. Returns the FIFO's reader,
/// which must stay open for as long as the hang should last.
fn hang_disk_of(location: &std::path::Path) -> std::fs::File {
    let part = std::fs::canonicalize(part(location)).unwrap();
    let fd: i32 = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == part))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .expect("the recording holds its .part open");
    let fifo = location.with_extension("fifo");
    let path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::os::fd::AsRawFd;
    assert!(unsafe { libc::dup2(writer.as_raw_fd(), fd) } >= 0);
    reader
}

/// A live recording at 96 kB/s, which fills a pipe's 64 kB within a
/// second, with no header rewrites (a FIFO cannot seek), so the only thing
/// in its way is the hang; it gives up on the disk after 500 ms.
fn recording_to_hang(location: &std::path::Path) -> gst::Pipeline {
    launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 \
         ! callrecsink location={} header-interval=3600000000000 finalize-timeout=500000000",
        location.display()
    ))
}

#[test]
fn stop_while_the_disk_hangs_returns_within_finalize_timeout() {
    init();
    let dir = tmp_dir("hung-disk");
    let location = dir.join("call.wav");
    let pipeline = recording_to_hang(&location);
    pipeline.set_state(gst::State::Playing).unwrap();
    let reader = hang_disk_of(&location);
    std::thread::sleep(Duration::from_millis(2000));
    let early = error_text(&drain(&pipeline));
    assert!(
        early.is_none(),
        "the hang is not visible while the queue has room: {early:?}"
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
    // As fast as the CPU goes: the writer's queue fills at once.
    let pipeline = launch(&format!(
        "audiotestsrc name=src samplesperbuffer=960 num-buffers=100000 ! audio/x-raw,rate=48000,channels=1 \
         ! callrecsink location={} header-interval=3600000000000 finalize-timeout=500000000",
        location.display()
    ));
    // Hold the audio back until the disk is hung.
    let src = pipeline.by_name("src").unwrap().static_pad("src").unwrap();
    let held = src
        .add_probe(
            gst::PadProbeType::BLOCK_DOWNSTREAM | gst::PadProbeType::BUFFER,
            |_, _| gst::PadProbeReturn::Ok,
        )
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let reader = hang_disk_of(&location);
    let t = Instant::now();
    src.remove_probe(held);
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

/// The writer pool: 100 recordings share a few writer threads. One disk
/// hangs and holds the thread writing to it; the other 100 recordings go on
/// writing the whole time and finish, and only the hung one fails, within
/// its own `finalize-timeout`. Meanwhile one of the 100 stalls for a
/// second: its stall is filled while it lasts, as if no disk hung.
#[test]
fn one_hung_disk_among_a_hundred_recordings_fails_only_its_own() {
    init();
    let dir = tmp_dir("hung-disk-pool");
    let recording = |i: usize| {
        let location = dir.join(format!("call{i}.wav"));
        let pipeline = launch(&format!(
            "audiotestsrc name=src is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 \
             ! valve name=stall ! callrecsink location={} header-interval=200000000 finalize-timeout=2000000000",
            location.display()
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        (pipeline, location)
    };
    let others: Vec<(gst::Pipeline, std::path::PathBuf)> = (0..100).map(recording).collect();
    let hung_location = dir.join("hung.wav");
    let hung = recording_to_hang(&hung_location);
    hung.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let reader = hang_disk_of(&hung_location);

    // Once the hung writer is stuck, every other file keeps growing.
    std::thread::sleep(Duration::from_millis(1500));
    let size = |l: &std::path::Path| std::fs::metadata(part(l)).map_or(0, |m| m.len());
    let before: Vec<u64> = others.iter().map(|(_, l)| size(l)).collect();
    // Call 0's audio stops for a second (its valve drops it): a stall.
    let valve = others[0].0.by_name("stall").unwrap();
    valve.set_property("drop", true);
    let stalled_at = size(&others[0].1);
    std::thread::sleep(Duration::from_millis(1000));
    // Its silence reached the file during the stall: 1 s less stallfiller's
    // 200 ms threshold, a header interval and a tick is at least 0.5 s.
    let grown = size(&others[0].1) - stalled_at;
    valve.set_property("drop", false);
    assert!(grown >= 8000, "{grown} bytes written during a 1 s stall");
    std::thread::sleep(Duration::from_millis(500));
    for ((_, location), before) in others.iter().zip(&before) {
        let after = size(location);
        // 1.5 s of 8 kHz S16 is 24 kB; headers are rewritten every 200 ms.
        assert!(
            after >= before + 16_000,
            "{} grew from {before} to {after} bytes while another disk hung",
            part(location).display()
        );
    }

    for (pipeline, _) in &others {
        pipeline.send_event(gst::event::Eos::new());
    }
    for (i, (pipeline, location)) in others.iter().enumerate() {
        let messages = finish(pipeline);
        let finalized = element_message(&messages, "callrecsink-finalized");
        assert!(
            finalized.is_some(),
            "{}: {:?}",
            location.display(),
            error_text(&messages)
        );
        if i == 0 {
            // The second without audio was filled.
            let silence = track_stat(&finalized.unwrap(), 0, "silence-samples");
            assert!(
                silence >= 7000,
                "{silence} samples of silence for a 1 s stall"
            );
        }
        let (_, rate, channels) = read_wav(location);
        assert_eq!(rate, 8000);
        assert!(
            channels[0].len() >= 8000 * 3,
            "{} frames",
            channels[0].len()
        );
    }

    let t = Instant::now();
    hung.set_state(gst::State::Null).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let messages = drain(&hung);
    let (text, _) = error_text(&messages).expect("an ERROR for the hung recording");
    assert!(
        text.contains("did not respond") || text.contains("finalize-timeout"),
        "{text}"
    );
    assert!(!hung_location.exists());
    drop(reader);
}

/// The last track's EOS waits for the disk to finish the file (up to twice
/// `finalize-timeout`) with no lock held: the application's `pause` on
/// the same recording answers at once meanwhile.
#[test]
fn finishing_at_eos_holds_no_lock_while_the_disk_hangs() {
    init();
    let dir = tmp_dir("hung-disk-eos");
    let location = dir.join("call.wav");
    let pipeline = recording_to_hang(&location);
    pipeline.set_state(gst::State::Playing).unwrap();
    let reader = hang_disk_of(&location);
    std::thread::sleep(Duration::from_millis(1500));
    let rec = pipeline
        .iterate_sinks()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "callrecsink"))
        .unwrap();
    pipeline.send_event(gst::event::Eos::new());
    // The EOS reaches the recorder at once; give it a moment to be inside
    // the writer's finish.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let _ = rec.emit_by_name::<bool>("pause", &[&u64::MAX]);
    let took = t.elapsed();
    println!("pause while the EOS finish waits for the disk: {took:?}");
    assert!(took < Duration::from_millis(200), "pause waited {took:?}");
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(5),
    );
    assert!(
        error_text(&messages).is_some(),
        "the hung finish is an ERROR"
    );
    pipeline.set_state(gst::State::Null).unwrap();
    drop(reader);
}
