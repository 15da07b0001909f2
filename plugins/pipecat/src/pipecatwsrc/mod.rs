// SPDX-License-Identifier: MPL-2.0
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct PipecatWsSrc(ObjectSubclass<imp::PipecatWsSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object, @implements gst::URIHandler;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "pipecatwsrc",
        // Above NONE so URI-driven elements (uridecodebin, playbin) find it
        // for pipecat+ws://; no caps-based autoplugging ever picks a source.
        gst::Rank::MARGINAL,
        PipecatWsSrc::static_type(),
    )
}
