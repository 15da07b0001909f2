// SPDX-License-Identifier: MPL-2.0
//! One proptest configuration for every fuzz target.

use proptest::test_runner::{Config, RngSeed};

/// `short_cases` cases on a fixed seed in `cargo test`, so a regression
/// fails it every time, never by chance; `FUZZ_CASES=N` runs N cases on
/// fresh seeds to explore.
pub fn config(short_cases: u32) -> Config {
    let long: Option<u32> = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    let rng_seed = match long {
        Some(_) => RngSeed::Random,
        None => RngSeed::Fixed(0x5eed_ca11),
    };
    Config {
        cases: long.unwrap_or(short_cases),
        rng_seed,
        failure_persistence: None,
        ..Config::default()
    }
}
