//! The writer fails mid-recording (the file hits RLIMIT_FSIZE, as on a full
//! disk): an ERROR naming the file and the OS error, nothing waits forever,
//! and what was written stays under the partial name.
//!
//! Its own test binary: the file-size limit is process-wide.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

#[test]
fn writer_failure_is_an_error_and_keeps_the_part() {
    init();
    let dir = tmp_dir("fsize");
    let location = dir.join("call.wav");
    unsafe {
        // Without this the kernel kills the process with SIGXFSZ instead of
        // failing the write with EFBIG.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 256 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let pipeline = launch(&format!(
        "audiotestsrc samplesperbuffer=160 num-buffers=2000 ! audio/x-raw,rate=8000,channels=1 \
         ! callrecsink location={} header-interval=0",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(10),
    );
    let (text, _) = error_text(&messages).expect("an ERROR for the failed write");
    println!("error: {text}");
    assert!(
        text.contains(&format!("{}.part", location.display())),
        "{text}"
    );
    assert!(text.contains("File too large"), "{text}");
    let failed = element_message(&messages, "callrecsink-failed").expect("failed message");
    assert!(
        failed
            .get::<String>("reason")
            .unwrap()
            .contains("File too large")
    );

    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "stop after a writer failure took {:?}",
        t.elapsed()
    );
    assert!(
        !location.exists(),
        "a failed recording must not be published"
    );
    // What was written is kept, and its header describes it.
    let part_len = std::fs::metadata(part(&location)).unwrap().len();
    assert!(part_len > 100_000, "only {part_len} bytes kept");
    let reader = hound::WavReader::open(part(&location)).unwrap();
    assert!(reader.duration() > 0);
}
