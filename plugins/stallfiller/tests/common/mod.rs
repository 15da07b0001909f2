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
    init();
    let mut h = Harness::new("stallfiller");
    h.use_testclock();
    h.set_src_caps(caps(gst_audio::AudioFormat::S16le, RATE, 1));
    h
}

/// Mono S16 samples whose values are their own index + `first`: any sample
/// dropped, duplicated or misplaced shows up in the values.
pub fn ramp(first: i16, samples: usize, pts: ClockTime) -> gst::Buffer {
    let data: Vec<u8> = (0..samples)
        .flat_map(|i| (first.wrapping_add(i as i16)).to_le_bytes())
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(callaudio::samples_to_time(samples as u64, RATE));
    }
    buffer
}

pub fn samples_of(buffer: &gst::Buffer) -> Vec<i16> {
    let map = buffer.map_readable().unwrap();
    map.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
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
