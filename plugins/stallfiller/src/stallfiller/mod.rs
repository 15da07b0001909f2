// SPDX-License-Identifier: MPL-2.0
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

mod ending;
mod imp;
mod reach;
mod timeline;
mod watch;

glib::wrapper! {
    /// Raw-audio filter that fills stalls of a live stream with silence, on
    /// time, and trims late data that overlaps what it already sent.
    pub struct StallFiller(ObjectSubclass<imp::StallFiller>) @extends gst::Element, gst::Object;
}

/// Takes a stallfiller's buffers in the process of an element that embeds
/// it, instead of its source pad's peer: see `StallFiller::set_embedded_output`.
pub type EmbeddedOutput =
    Box<dyn Fn(gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> + Send + Sync>;

/// For an element that embeds stallfillers (callrecsink): a filler of this
/// crate's own type, and its data path without two pad hops per buffer.
impl StallFiller {
    /// A stallfiller of this build's type, whatever plugin owns the
    /// `stallfiller` factory in the process.
    pub fn new() -> Self {
        glib::Object::new()
    }

    /// `output` is the chain function of the pad the source pad is linked
    /// to, called directly: while `set_embedded_linked(true)`, buffers go
    /// to it under the element's push lock, in order with its events, which
    /// still go through the pads. Set once.
    pub fn set_embedded_output(&self, output: EmbeddedOutput) {
        self.imp().set_embedded_output(output);
    }

    /// Whether the source pad is linked straight to the pad whose chain
    /// function the embedded output is. Call it after every (re)link.
    pub fn set_embedded_linked(&self, linked: bool) {
        self.imp().set_embedded_linked(linked);
    }

    /// Hands `buffer` to the filler as its sink pad would, for the element
    /// that embeds it and serialises this with the events it sends the
    /// sink pad (its own pad's stream lock): one pad hop less per buffer.
    pub fn chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        callaudio::sync::flow_guarded(self, |filler| filler.imp().chain(buffer))
    }
}

impl Default for StallFiller {
    fn default() -> Self {
        Self::new()
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "stallfiller",
        gst::Rank::NONE,
        StallFiller::static_type(),
    )
}
