use gst::glib;
use gst::prelude::*;

mod imp;
mod timeline;
mod watch;

glib::wrapper! {
    /// Raw-audio filter that fills stalls of a live stream with silence, on
    /// time, and trims late data that overlaps what it already sent.
    pub struct StallFiller(ObjectSubclass<imp::StallFiller>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "stallfiller",
        gst::Rank::NONE,
        StallFiller::static_type(),
    )
}
