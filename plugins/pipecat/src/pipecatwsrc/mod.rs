use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct PipecatWsSrc(ObjectSubclass<imp::PipecatWsSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "pipecatwsrc",
        gst::Rank::NONE,
        PipecatWsSrc::static_type(),
    )
}
