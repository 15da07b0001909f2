//! Examples of the call-audio plugins: see `agent_call.rs`.
