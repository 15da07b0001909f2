// SPDX-License-Identifier: MPL-2.0
//! What the tests and benchmarks of several crates share, in one place
//! instead of files included by path: the process figures every benchmark
//! prints, the fuzz configuration every proptest target uses, and the
//! Pipecat bot (a real `pipecat-ai` server in the workspace's venv) with the
//! servers and pipelines its tests drive.

pub mod audio;
pub mod fuzz;
pub mod pipecat;
pub mod process;
pub mod properties;
