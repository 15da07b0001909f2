use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct PipecatWsSink(ObjectSubclass<imp::PipecatWsSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "pipecatwssink",
        gst::Rank::NONE,
        PipecatWsSink::static_type(),
    )
}
