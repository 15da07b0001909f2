// SPDX-License-Identifier: MPL-2.0
//! A panic in our code (here forced by a test-only track number) must cost
//! one recording, never the process: an ERROR, `callrecsink-failed`, what
//! was written kept under `.part`, and the element still usable.

use std::time::Duration;

use gst::prelude::*;

use super::recording::PANIC_TRACK;

fn appsrc(name: &str, pad: &str) -> String {
    format!(
        "appsrc name={name} format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 ! rec.{pad}"
    )
}

#[test]
fn a_panic_fails_the_recording_and_the_process_goes_on() {
    gst::init().unwrap();
    crate::plugin_register_static().unwrap();
    let dir = std::env::temp_dir().join(format!("callrec-panic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let location = dir.join("call.wav");
    let pipeline = gst::parse::launch(&format!(
        "callrecsink name=rec location={} {} {}",
        location.display(),
        appsrc("caller", "sink_0"),
        appsrc("doomed", &format!("sink_{PANIC_TRACK}")),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_auto_flush_bus(false);
    pipeline.set_state(gst::State::Playing).unwrap();
    for name in ["caller", "doomed"] {
        let src = pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        for b in 0..10u64 {
            let mut buffer = gst::Buffer::from_mut_slice(vec![1u8; 320]);
            buffer
                .get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(20 * b));
            let _ = src.push_buffer(buffer);
        }
        let _ = src.end_of_stream();
    }
    let bus = pipeline.bus().unwrap();
    let mut failed = None;
    let mut error = None;
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(5)) {
        match msg.view() {
            gst::MessageView::Element(e)
                if e.structure()
                    .is_some_and(|s| s.name() == "callrecsink-failed") =>
            {
                failed = e.structure().map(|s| s.to_owned());
            }
            gst::MessageView::Error(e) if error.is_none() => error = Some(e.error().to_string()),
            _ => {}
        }
        if failed.is_some() && error.is_some() {
            break;
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let reason = failed
        .expect("callrecsink-failed")
        .get::<String>("reason")
        .unwrap();
    assert!(reason.contains("internal error"), "{reason}");
    assert!(reason.contains("panics"), "{reason}");
    assert!(error.unwrap().contains("internal error"));
    assert!(!location.exists());
    // What reached the file before the panic stays under the partial name.
    assert!(std::fs::metadata(super::files::safe_fs::part_path(&location)).is_ok());

    // The process goes on: another recording right after finalizes.
    let next = dir.join("next.wav");
    let pipeline = gst::parse::launch(&format!(
        "callrecsink name=rec location={} {}",
        next.display(),
        appsrc("caller", "sink_0")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline
        .by_name("caller")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let mut buffer = gst::Buffer::from_mut_slice(vec![1u8; 320]);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    src.push_buffer(buffer).unwrap();
    src.end_of_stream().unwrap();
    let eos = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_nseconds(Duration::from_secs(5).as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(eos.map(|m| m.type_()), Some(gst::MessageType::Eos));
    assert!(next.exists());
}
