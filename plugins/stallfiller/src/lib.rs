// SPDX-License-Identifier: MPL-2.0
//! `stallfiller`: keeps a live audio stream on one continuous timeline,
//! filling stalls with silence while they last.

use gst::glib;

mod stallfiller;

pub use stallfiller::{EmbeddedOutput, StallFiller};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    stallfiller::register(plugin)
}

gst::plugin_define!(
    stallfiller,
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
