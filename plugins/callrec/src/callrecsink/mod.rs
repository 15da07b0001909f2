use gst::glib;
use gst::prelude::*;

mod encoded;
mod files;
mod imp;
mod metadata;
mod mixer;
mod pad;
mod recording;
mod report;
mod safe_fs;
mod settings;
mod track;
mod track_sink;
mod wav;
mod writer;
mod writer_pool;

#[cfg(test)]
mod panic_tests;

glib::wrapper! {
    /// Sink bin recording one request pad per track (WAV, FLAC or Ogg Opus).
    pub struct CallRecSink(ObjectSubclass<imp::CallRecSink>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy, gst::TagSetter;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // The tracks make their stallfillers from this crate's own copy of the
    // type, not from the factory; the factory is registered for the
    // application that links this plugin statically and wants stallfiller in
    // its own pipelines too (`gst_plugin_callrec_register()` gives both).
    if gst::ElementFactory::find("stallfiller").is_none() {
        gststallfiller::plugin_register_static()?;
    }
    gst::Element::register(
        Some(plugin),
        "callrecsink",
        gst::Rank::NONE,
        CallRecSink::static_type(),
    )
}
