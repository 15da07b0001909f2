// SPDX-License-Identifier: MPL-2.0
//! The shared Pipecat test helpers (`callaudio-testkit`), and this crate's
//! plugin registration.
#![allow(dead_code)]

pub use callaudio_testkit::pipecat::*;

pub fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstpipecat::plugin_register_static().unwrap();
    });
}
