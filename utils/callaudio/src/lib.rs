// SPDX-License-Identifier: MPL-2.0
//! Sample-accurate audio arithmetic shared by every plugin of this set.
//!
//! One place decides how time maps to samples and how a buffer is cut, so
//! `stallfiller`, `callrecsink` and the Pipecat elements can never disagree by a
//! sample, and a byte offset is never mistaken for a sample index: every cut is
//! `samples * bytes_per_frame`.

pub mod g711;
mod layout;
pub mod message;
mod silence;
mod split;
pub mod sync;
mod time;
pub mod workers;

pub use layout::{Encoding, Layout, LayoutError, MAX_CHANNELS, MAX_RATE};
pub use silence::SilenceSource;
pub use split::{OFFSET_NONE, split_at_sample, trim, whole_frames};
pub use time::{clock_time_of, samples_to_time, time_to_samples};
