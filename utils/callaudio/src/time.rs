//! The one rounding rule: round to nearest, in both directions.
//!
//! With nearest rounding `time_to_samples(samples_to_time(n)) == n` for every
//! rate below 1 GHz, so buffer durations computed as the difference of two
//! sample positions never drift, however long the stream runs.

use gst::ClockTime;

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

/// `v * num / den`, rounded to nearest. In 64 bits while the product fits
/// (any stream shorter than days), since this runs for every buffer; in 128
/// bits beyond, with the same result.
fn scale_round(v: u64, num: u64, den: u64) -> u64 {
    match v.checked_mul(num).and_then(|p| p.checked_add(den / 2)) {
        Some(p) => p / den,
        None => {
            ((v as u128 * num as u128 + den as u128 / 2) / den as u128).min(u64::MAX as u128) as u64
        }
    }
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
