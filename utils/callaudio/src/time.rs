// SPDX-License-Identifier: MPL-2.0
//! The one rounding rule: round to nearest, in both directions.
//!
//! With nearest rounding `time_to_samples(samples_to_time(n)) == n` for every
//! rate below 1 GHz, so buffer durations computed as the difference of two
//! sample positions never drift, however long the stream runs.

use gst::ClockTime;
use gst::prelude::MulDiv;

const NS_PER_SECOND: u128 = 1_000_000_000;

/// The time at which sample `n` starts, for a stream of `rate` Hz.
pub fn samples_to_time(n: u64, rate: u32) -> ClockTime {
    assert!(rate > 0, "sample rate must not be zero");
    ClockTime::from_nseconds(scale_round(n, NS_PER_SECOND as u64, rate as u64).min(u64::MAX - 1))
}

/// The index of the sample that starts nearest to `t`, for a stream of `rate` Hz.
pub fn time_to_samples(t: ClockTime, rate: u32) -> u64 {
    scale_round(t.nseconds(), rate as u64, NS_PER_SECOND as u64)
}

/// A `u64` nanosecond property value as a time, never panicking: GObject
/// hands `set_property` any value in the property's range, and
/// `u64::MAX` (`GST_CLOCK_TIME_NONE`) is no time, so it saturates to the
/// largest one. A panic there would abort the process.
pub fn clock_time_of(ns: u64) -> ClockTime {
    ClockTime::from_nseconds(ns.min(ClockTime::MAX.nseconds()))
}

/// `v * num / den`, rounded to nearest (half up): GStreamer's own
/// `gst_util_uint64_scale_round`, saturated where the result does not fit.
fn scale_round(v: u64, num: u64, den: u64) -> u64 {
    v.mul_div_round(num, den).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_for_common_rates() {
        for rate in [
            8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000, 192000,
        ] {
            for n in (0..200_000u64).chain([u32::MAX as u64, 1 << 40]) {
                assert_eq!(
                    time_to_samples(samples_to_time(n, rate), rate),
                    n,
                    "rate {rate} n {n}"
                );
            }
        }
    }

    #[test]
    fn both_precisions_agree_at_the_boundary() {
        // Around the sample count where n * 1e9 stops fitting in 64 bits.
        let edge = u64::MAX / 1_000_000_000;
        for n in edge - 3..edge + 3 {
            let wide = ((n as u128 * 1_000_000_000 + 24_000) / 48_000) as u64;
            assert_eq!(samples_to_time(n, 48_000).nseconds(), wide, "n {n}");
            assert_eq!(time_to_samples(samples_to_time(n, 48_000), 48_000), n);
        }
    }

    /// What this module computed by hand before it used GStreamer's
    /// `mul_div_round`: the two agree everywhere.
    fn by_hand(v: u64, num: u64, den: u64) -> u64 {
        ((v as u128 * num as u128 + den as u128 / 2) / den as u128).min(u64::MAX as u128) as u64
    }

    #[test]
    fn gstreamer_rounding_is_the_hand_rounding() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let dens = [8000u64, 11025, 44100, 48000, 768_000, 1_000_000_000];
        for i in 0..200_000 {
            let v = match i % 4 {
                0 => next(),
                1 => next() >> 20,
                2 => next() >> 40,
                _ => i,
            };
            for &den in &dens {
                for (num, den) in [(NS_PER_SECOND as u64, den), (den, NS_PER_SECOND as u64)] {
                    assert_eq!(
                        scale_round(v, num, den),
                        by_hand(v, num, den),
                        "{v}*{num}/{den}"
                    );
                }
            }
        }
        for v in [
            0,
            1,
            u64::MAX / 1_000_000_000,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(
                scale_round(v, 1_000_000_000, 8000),
                by_hand(v, 1_000_000_000, 8000)
            );
            assert_eq!(
                scale_round(v, 8000, 1_000_000_000),
                by_hand(v, 8000, 1_000_000_000)
            );
        }
    }

    #[test]
    fn a_property_value_of_none_is_the_largest_time() {
        assert_eq!(clock_time_of(u64::MAX), ClockTime::MAX);
        assert_eq!(clock_time_of(u64::MAX - 1), ClockTime::MAX);
        assert_eq!(clock_time_of(20), ClockTime::from_nseconds(20));
    }

    #[test]
    fn rounds_to_nearest() {
        // 1 sample at 44.1 kHz is 22675.736... ns
        assert_eq!(samples_to_time(1, 44100).nseconds(), 22676);
        assert_eq!(samples_to_time(3, 44100).nseconds(), 68027);
        assert_eq!(time_to_samples(ClockTime::from_nseconds(62_499), 8000), 0);
        assert_eq!(time_to_samples(ClockTime::from_nseconds(62_500), 8000), 1);
        assert_eq!(time_to_samples(ClockTime::SECOND, 8000), 8000);
    }

    #[test]
    fn durations_sum_to_the_whole() {
        // Consecutive buffers of 441 samples: the sum of their durations is the
        // duration of the whole, with no accumulated rounding.
        let rate = 44100;
        let mut sum = 0u64;
        for k in 0..1000u64 {
            sum +=
                (samples_to_time((k + 1) * 441, rate) - samples_to_time(k * 441, rate)).nseconds();
        }
        assert_eq!(sum, samples_to_time(441_000, rate).nseconds());
        assert_eq!(sum, 10_000_000_000);
    }
}
