// SPDX-License-Identifier: MPL-2.0
//! `trim-end-silence`: Pipecat ends a bot's call with
//! `audio_out_end_silence_secs` of pure silence (2 s by default) sent after
//! its `EndFrame`, which a recording keeps as 2 s the call never had.
//!
//! The source holds back audio that is pure silence, for at most the hold
//! (in audio and in wall time). Sound after it, or the hold running out,
//! releases it all, in order, so nothing but a clean close's tail is lost;
//! a clean close drops what is held and says how much. The price: silence
//! is late by up to the hold, so this is for recording legs, not for a leg
//! played live.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::inbox::Chunk;
use callaudio::g711::{self, Law};

/// What a decoder makes of digital silence: 0, or A-law's smallest step.
const SILENCE_MAGNITUDE: i16 = 8;

pub struct SilenceHold {
    hold: gst::ClockTime,
    held: VecDeque<Chunk>,
    held_duration: gst::ClockTime,
    /// Held audio let go, for `create()` to push one at a time.
    released: VecDeque<Chunk>,
}

impl SilenceHold {
    /// `hold` zero: off, everything passes at once.
    pub fn new(hold: gst::ClockTime) -> Self {
        SilenceHold {
            hold,
            held: VecDeque::new(),
            held_duration: gst::ClockTime::ZERO,
            released: VecDeque::new(),
        }
    }

    /// Takes what arrived; what may go downstream now comes from `next`.
    pub fn push(&mut self, chunk: Chunk) {
        if self.hold.is_zero() || !is_silence(&chunk) {
            self.release();
            self.released.push_back(chunk);
            return;
        }
        self.held_duration += chunk.duration();
        self.held.push_back(chunk);
        if self.held_duration > self.hold {
            self.release();
        }
    }

    /// The next chunk to push, held silence first.
    pub fn next(&mut self) -> Option<Chunk> {
        self.released.pop_front()
    }

    /// How long the oldest held chunk may still wait, if any is held: past
    /// it, `expire` lets the silence go (the bot went quiet without closing).
    pub fn wait_left(&self) -> Option<Duration> {
        let oldest = self.held.front()?;
        let hold = Duration::from_nanos(self.hold.nseconds());
        Some(hold.saturating_sub(oldest.arrival.elapsed()))
    }

    pub fn expire(&mut self, now: Instant) {
        let hold = Duration::from_nanos(self.hold.nseconds());
        if self
            .held
            .front()
            .is_some_and(|c| now.duration_since(c.arrival) >= hold)
        {
            self.release();
        }
    }

    /// A clean close: what is held is the bot's end silence, dropped.
    /// Returns how long it was.
    pub fn trim(&mut self) -> gst::ClockTime {
        self.held.clear();
        std::mem::replace(&mut self.held_duration, gst::ClockTime::ZERO)
    }

    fn release(&mut self) {
        self.released.extend(self.held.drain(..));
        self.held_duration = gst::ClockTime::ZERO;
    }
}

fn is_silence(chunk: &Chunk) -> bool {
    let audio = &chunk.audio;
    match audio.law {
        Some(law) => audio.data.iter().all(|&b| quiet(decode_one(law, b))),
        None => audio
            .data
            .chunks_exact(2)
            .all(|s| quiet(i16::from_le_bytes([s[0], s[1]]))),
    }
}

fn decode_one(law: Law, byte: u8) -> i16 {
    match law {
        Law::Mu => g711::ulaw_to_linear(byte),
        Law::A => g711::alaw_to_linear(byte),
    }
}

fn quiet(sample: i16) -> bool {
    sample.unsigned_abs() <= SILENCE_MAGNITUDE as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::serializer::WireAudio;

    fn chunk(sample: i16, ms: u64, arrival: Instant) -> Chunk {
        let frames = 8 * ms as usize;
        Chunk {
            audio: WireAudio {
                data: std::iter::repeat_n(sample.to_le_bytes(), frames)
                    .flatten()
                    .collect::<Vec<u8>>()
                    .into(),
                rate: 8000,
                channels: 1,
                law: None,
            },
            arrival,
        }
    }

    fn drain(hold: &mut SilenceHold) -> Vec<i16> {
        std::iter::from_fn(|| hold.next())
            .map(|c| i16::from_le_bytes([c.audio.data[0], c.audio.data[1]]))
            .collect()
    }

    #[test]
    fn end_silence_before_a_clean_close_is_trimmed() {
        let now = Instant::now();
        let mut hold = SilenceHold::new(gst::ClockTime::from_seconds(3));
        hold.push(chunk(500, 20, now));
        assert_eq!(drain(&mut hold), [500]);
        for _ in 0..100 {
            hold.push(chunk(0, 20, now));
        }
        assert_eq!(drain(&mut hold), [] as [i16; 0], "silence is held");
        assert_eq!(hold.trim(), gst::ClockTime::from_seconds(2));
        assert!(hold.next().is_none());
    }

    #[test]
    fn silence_followed_by_sound_is_released_in_order() {
        let now = Instant::now();
        let mut hold = SilenceHold::new(gst::ClockTime::from_seconds(3));
        hold.push(chunk(0, 20, now));
        hold.push(chunk(1, 20, now));
        hold.push(chunk(700, 20, now));
        assert_eq!(drain(&mut hold), [0, 1, 700]);
        assert_eq!(hold.trim(), gst::ClockTime::ZERO);
    }

    #[test]
    fn the_hold_is_bounded_in_audio_and_in_wall_time() {
        let now = Instant::now();
        let mut hold = SilenceHold::new(gst::ClockTime::from_mseconds(100));
        for _ in 0..6 {
            hold.push(chunk(0, 20, now));
        }
        assert_eq!(drain(&mut hold).len(), 6, "120 ms > the 100 ms hold");
        hold.push(chunk(0, 20, now));
        assert!(hold.wait_left().is_some());
        hold.expire(now + Duration::from_millis(99));
        assert!(hold.next().is_none());
        hold.expire(now + Duration::from_millis(100));
        assert_eq!(drain(&mut hold).len(), 1, "held past the hold in wall time");
    }

    #[test]
    fn off_passes_everything_and_g711_silence_counts() {
        let now = Instant::now();
        let mut off = SilenceHold::new(gst::ClockTime::ZERO);
        off.push(chunk(0, 20, now));
        assert_eq!(drain(&mut off), [0]);
        let alaw_silence = Chunk {
            audio: WireAudio {
                data: vec![0xD5; 160].into(),
                rate: 8000,
                channels: 1,
                law: Some(Law::A),
            },
            arrival: now,
        };
        assert!(is_silence(&alaw_silence));
    }
}
