// SPDX-License-Identifier: MPL-2.0
use gst::glib;
use gst::prelude::*;

mod crash_budget;
mod files;
mod finalization;
mod imp;
mod mixer;
mod pad;
mod plan;
mod recording;
mod report;
mod settings;
mod track;
mod track_sink;
mod writing;

#[cfg(test)]
mod panic_tests;

/// The element's debug category, for every file of it.
static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "callrecsink",
        gst::DebugColorFlags::empty(),
        Some("Call recording sink"),
    )
});

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
