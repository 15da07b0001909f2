// SPDX-License-Identifier: MPL-2.0
//! No property value aborts the process: every writable property at its
//! minimum, maximum, default and the 64-bit extremes, in NULL and in
//! PLAYING (a panic inside `set_property` cannot unwind: it aborts).

use gst::prelude::*;

mod common;

#[test]
fn no_property_value_aborts_the_process() {
    common::init();
    let pipeline = gst::parse::launch(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 \
         ! stallfiller name=f ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let filler = pipeline.by_name("f").unwrap();
    let in_null = callaudio_testkit::properties::set_every_property(&filler);
    assert!(in_null >= 20, "only {in_null} values tried");
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(5)).0.unwrap();
    callaudio_testkit::properties::set_every_property(&filler);
    // Still running, and still filling: the element took no harm.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(pipeline.current_state(), gst::State::Playing);
    pipeline.set_state(gst::State::Null).unwrap();
}

/// docs/stallfiller.md names every property and signal `gst-inspect-1.0`
/// lists.
#[test]
fn the_reference_names_every_property() {
    common::init();
    let element = gst::ElementFactory::make("stallfiller").build().unwrap();
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/stallfiller.md");
    let missing = callaudio_testkit::properties::undocumented(&element, &page);
    assert!(
        missing.is_empty(),
        "not in docs/stallfiller.md: {missing:?}"
    );
}
