// SPDX-License-Identifier: MPL-2.0
use gst::glib;
use gst::prelude::*;

mod imp;
mod pushers;

glib::wrapper! {
    pub struct PipecatWsSharedSrc(ObjectSubclass<imp::PipecatWsSharedSrc>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "pipecatwssharedsrc",
        // Never picked by autoplugging: an application chooses it knowing
        // what may follow it (see the top of imp.rs).
        gst::Rank::NONE,
        PipecatWsSharedSrc::static_type(),
    )
}
