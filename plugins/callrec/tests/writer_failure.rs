// SPDX-License-Identifier: MPL-2.0
//! The writer fails mid-recording (the file hits RLIMIT_FSIZE, as on a full
//! disk): an ERROR naming the file and the OS error, nothing waits forever,
//! and what was written stays under the partial name.
//!
//! Its own test binary: the file-size limit is process-wide.

mod common;

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Files of this process may not grow past 256 KiB; a write past that fails
/// with EFBIG, as on a full disk.
fn limit_file_size() {
    static LIMIT: Once = Once::new();
    LIMIT.call_once(|| unsafe {
        // Without this the kernel kills the process with SIGXFSZ instead of
        // failing the write with EFBIG.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 256 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    });
}

#[test]
fn writer_failure_is_an_error_and_keeps_the_part() {
    init();
    let dir = tmp_dir("fsize");
    let location = dir.join("call.wav");
    limit_file_size();
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
        t.elapsed() < Duration::from_secs(1),
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

/// The ERROR is on the bus before the push that hit the failing write even
/// returns: measured from the start of that push to the bus's sync handler.
#[test]
fn writer_failure_error_is_posted_within_the_failing_push() {
    init();
    limit_file_size();
    let dir = tmp_dir("fsize-latency");
    let pipeline = gst::Pipeline::new();
    let rec = gst::ElementFactory::make("callrecsink")
        .property("location", dir.join("call.wav").to_str())
        .build()
        .unwrap();
    pipeline.add(&rec).unwrap();
    let src = gst::Pad::builder(gst::PadDirection::Src).build();
    src.link(&rec.request_pad_simple("sink_%u").unwrap())
        .unwrap();
    let posted: Arc<Mutex<Option<Instant>>> = Arc::default();
    let at = posted.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if msg.type_() == gst::MessageType::Error {
            at.lock().unwrap().get_or_insert_with(Instant::now);
        }
        gst::BusSyncReply::Pass
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    src.set_active(true).unwrap();
    src.push_event(gst::event::StreamStart::new("writer-failure"));
    src.push_event(gst::event::Caps::new(
        &gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate(8000)
            .channels(1)
            .build(),
    ));
    src.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    let frame = gst::ClockTime::from_mseconds(200);
    let mut failed = None;
    for i in 0..1000u64 {
        let mut buffer = gst::Buffer::from_slice(vec![0x11u8; 3200]);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(frame * i);
            b.set_duration(frame);
        }
        let start = Instant::now();
        if let Err(err) = src.push(buffer) {
            failed = Some((start, err));
            break;
        }
    }
    let (push_started, err) = failed.expect("a push fails once the file is full");
    assert_eq!(err, gst::FlowError::Error);
    let posted = posted.lock().unwrap().expect("an ERROR on the bus");
    let latency = posted.duration_since(push_started);
    println!("ERROR posted {latency:?} after the failing push began");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// The same for FLAC and Ogg Opus, whose bytes come out of GStreamer's
/// encoders: the write that fails is ours, and it fails the recording the
/// same way.
#[test]
fn writer_failure_is_an_error_in_every_format() {
    init();
    limit_file_size();
    for (format, encoder) in [
        ("flac", ""),
        ("opus", "bitrate=256000"),
        ("mp3", "bitrate=256000"),
    ] {
        let dir = tmp_dir(&format!("fsize-{format}"));
        let location = dir.join(format!("call.{format}"));
        let pipeline = launch(&format!(
            "audiotestsrc wave=white-noise samplesperbuffer=160 num-buffers=20000 ! audio/x-raw,rate=8000,channels=1 \
             ! callrecsink location={} format={format} {encoder}",
            location.display()
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        let messages = messages_until(
            &pipeline,
            &[gst::MessageType::Error, gst::MessageType::Eos],
            Duration::from_secs(30),
        );
        let (text, _) = error_text(&messages)
            .unwrap_or_else(|| panic!("{format}: no ERROR for the failed write"));
        println!("{format}: {text}");
        assert!(
            text.contains(&format!("{}.part", location.display())),
            "{text}"
        );
        assert!(text.contains("File too large"), "{text}");
        assert!(element_message(&messages, "callrecsink-failed").is_some());
        let t = Instant::now();
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t.elapsed()
        );
        assert!(
            !location.exists(),
            "{format}: a failed recording was published"
        );
        let kept = std::fs::metadata(part(&location)).unwrap().len();
        assert!(kept > 200_000, "{format}: only {kept} bytes kept");
    }
}
