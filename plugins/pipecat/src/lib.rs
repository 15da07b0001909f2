// SPDX-License-Identifier: MPL-2.0
//! `pipecatwsrc` and `pipecatwssink`: a Pipecat voice bot on a WebSocket as
//! a live GStreamer source (its audio) and sink (the caller's audio).

use gst::glib;

mod bot_audio;
mod common;
mod connection;
#[cfg(test)]
mod fuzz;
mod inbox;
mod nap;
mod pipecatwsrc;
mod pipecatwssharedsrc;
mod pipecatwssink;
mod runtime;
mod socket;
mod wire;

pub use pipecatwsrc::PipecatWsSrc;
pub use pipecatwssharedsrc::PipecatWsSharedSrc;
pub use pipecatwssink::PipecatWsSink;
/// The protobuf wire, for tests and tools that speak it.
pub use wire::protobuf;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    pipecatwsrc::register(plugin)?;
    pipecatwssharedsrc::register(plugin)?;
    pipecatwssink::register(plugin)
}

gst::plugin_define!(
    pipecat,
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
