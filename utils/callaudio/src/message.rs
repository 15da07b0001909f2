// SPDX-License-Identifier: MPL-2.0
//! The element messages every plugin of this set posts (`stallfiller-stall`,
//! `callrecsink-finalized`, `pipecat-closed`, ...): one way to build and
//! post them.

use gst::prelude::*;

/// An element message from `element` carrying `s`.
pub fn element_message(element: &impl IsA<gst::Element>, s: gst::Structure) -> gst::Message {
    gst::message::Element::builder(s)
        .src(element.upcast_ref::<gst::Element>())
        .build()
}

/// Posts `s` as an element message from `element`; false when nobody can
/// receive it (the element has no bus yet).
pub fn post_element_message(element: &impl IsA<gst::Element>, s: gst::Structure) -> bool {
    element.post_message(element_message(element, s)).is_ok()
}
