// SPDX-License-Identifier: MPL-2.0
//! `callrecsink`: records the tracks of a call on one timeline into a WAV
//! file that is either finished and valid, or never presented as finished.

use gst::glib;

mod callrecsink;

pub use callrecsink::CallRecSink;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    callrecsink::register(plugin)
}

gst::plugin_define!(
    callrec,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL-2.0",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // No public home yet: GStreamer's own wording for an unknown origin,
    // rather than an address that leads nowhere.
    "Unknown package origin",
    env!("BUILD_REL_DATE")
);
