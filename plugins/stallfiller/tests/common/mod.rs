// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the `Harness` tests of `stallfiller`.
#![allow(dead_code)]

use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;

pub const RATE: u32 = 8000;

pub fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gststallfiller::plugin_register_static().unwrap();
    });
}

pub fn ms(v: u64) -> ClockTime {
    ClockTime::from_mseconds(v)
}

pub fn caps(format: gst_audio::AudioFormat, rate: u32, channels: u32) -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format(format)
        .rate(rate as i32)
        .channels(channels as i32)
        .build()
}

pub fn harness() -> Harness {
    harness_with(false)
}

/// A harness on the test clock around a stallfiller whose `shared-threads`
/// is `shared` (set before its pads activate).
pub fn harness_with(shared: bool) -> Harness {
    init();
    let element = gst::ElementFactory::make("stallfiller")
        .property("shared-threads", shared)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.use_testclock();
    h.set_src_caps(caps(gst_audio::AudioFormat::S16le, RATE, 1));
    h
}

/// A ramp at `RATE` (`callaudio_testkit::audio::ramp`).
pub fn ramp(first: i16, samples: usize, pts: ClockTime) -> gst::Buffer {
    callaudio_testkit::audio::ramp(first, samples, RATE, pts)
}

pub fn samples_of(buffer: &gst::Buffer) -> Vec<i16> {
    callaudio_testkit::audio::samples_of(buffer)
}

pub fn stats(h: &Harness) -> gst::Structure {
    h.element().unwrap().property::<gst::Structure>("stats")
}

pub fn stat(h: &Harness, name: &str) -> u64 {
    stats(h).get::<u64>(name).unwrap()
}

/// Cranks one clock wait and returns the silence buffer it released, after
/// checking that the wait was for `deadline`.
///
/// Real data arriving does not disturb a wait already scheduled (that would
/// cost a wake-up per buffer); such a stale wait ends without a push, so it is
/// cranked through here as long as it is earlier than the expected deadline.
pub fn crank_expecting(h: &mut Harness, deadline: ClockTime) -> gst::Buffer {
    let clock = h.testclock().unwrap();
    loop {
        let id = clock.wait_for_next_pending_id();
        let time = id.time();
        assert!(
            time <= deadline,
            "the filler waited for {time}, later than {deadline}"
        );
        h.crank_single_clock_wait().unwrap();
        if time == deadline {
            return h.pull().unwrap();
        }
    }
}
