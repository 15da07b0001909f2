// SPDX-License-Identifier: MPL-2.0
//! The wire formats: Pipecat's serializers (`serializer`, with `protobuf`
//! and what a telephony client says first, `session`), and what is done to
//! the words and audio on them (`trim`, `redact`).

pub mod protobuf;
pub mod redact;
pub mod serializer;
pub mod session;
pub mod trim;
