// SPDX-License-Identifier: MPL-2.0
//! Examples of the call-audio plugins: see `agent_call.rs`.
