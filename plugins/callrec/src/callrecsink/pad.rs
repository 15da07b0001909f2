// SPDX-License-Identifier: MPL-2.0
//! `CallRecSinkPad`: a track's request pad, with the track's own `gain`
//! and `mute`. Either may change while PLAYING; the change applies at the
//! exact sample of the running time it was made at (the same cut as
//! pause/resume), and a muted span is silence, counted per track.
//!
//! The pad is also where a track's data path is decided: its caps choose the
//! decoder, and the first buffer of each recording (once the recording's
//! rate is fixed) chooses whether the track needs the converter, before
//! either reaches the track's stallfiller (see `imp.rs`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};

use callaudio::sync::lock;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gststallfiller::StallFiller;

/// The bounds of `gain`: from inaudible to a level no call needs.
pub const MIN_GAIN_DB: f64 = -96.0;
pub const MAX_GAIN_DB: f64 = 24.0;

/// What a track's samples are multiplied by from some point on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub gain_db: f64,
    pub mute: bool,
}

impl Default for Level {
    fn default() -> Self {
        Level {
            gain_db: 0.0,
            mute: false,
        }
    }
}

impl Level {
    /// The factor on the samples: 0 when muted.
    pub fn factor(&self) -> f64 {
        if self.mute {
            0.0
        } else {
            10f64.powf(self.gain_db / 20.0)
        }
    }

    pub fn is_unity(&self) -> bool {
        !self.mute && self.gain_db == 0.0
    }
}

glib::wrapper! {
    pub struct CallRecSinkPad(ObjectSubclass<imp::CallRecSinkPad>)
        @extends gst::GhostPad, gst::ProxyPad, gst::Pad, gst::Object;
}

impl CallRecSinkPad {
    pub fn level(&self) -> Level {
        *lock(&self.imp().level)
    }

    /// The track number: `sink_N` is track N.
    pub fn number(&self) -> u32 {
        self.imp().number.load(Ordering::Relaxed)
    }

    pub(super) fn set_number(&self, number: u32) {
        self.imp().number.store(number, Ordering::Relaxed);
    }

    /// The next buffer is the track's first of a new recording: its route
    /// is decided before it passes.
    pub(super) fn route_before_next_buffer(&self) {
        self.imp().unrouted.store(true, Ordering::Release);
    }

    /// Whether the track is still to be routed in this recording. Only
    /// the thread streaming into the pad asks and answers.
    pub(super) fn unrouted(&self) -> bool {
        self.imp().unrouted.load(Ordering::Acquire)
    }

    pub(super) fn set_routed(&self) {
        self.imp().unrouted.store(false, Ordering::Release);
    }

    /// Makes `filler` (whose sink pad is the ghost's target) the element
    /// buffers are handed to straight from this pad.
    pub(super) fn set_input(&self, filler: &StallFiller) {
        let _ = self.imp().input.set(filler.clone());
    }

    /// The stallfiller refused a sticky event (caps, segment): from now on
    /// buffers take the ghost's own way, which sends such an event again
    /// before the next buffer.
    pub(super) fn sticky_event_refused(&self) {
        self.imp().direct.store(false, Ordering::Relaxed);
    }

    /// Hands `buffer` to the track's stallfiller. Straight to the element:
    /// the ghost's internal pad would push it to the filler's sink pad,
    /// which would call the filler: two more hops per buffer of every track.
    /// This pad's stream lock serialises it with the events, which take the
    /// ghost's way.
    pub(super) fn chain_to_input(
        &self,
        parent: Option<&gst::Object>,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match self.imp().input.get() {
            Some(input) if self.imp().direct.load(Ordering::Relaxed) => input.chain(buffer),
            _ => gst::ProxyPad::chain_default(self, parent, buffer),
        }
    }
}

mod imp {
    use super::*;

    pub struct CallRecSinkPad {
        pub(super) level: Mutex<Level>,
        pub(super) number: AtomicU32,
        pub(super) unrouted: AtomicBool,
        pub(super) input: OnceLock<StallFiller>,
        /// Buffers go straight to `input` (see `chain_to_input`).
        pub(super) direct: AtomicBool,
    }

    impl Default for CallRecSinkPad {
        fn default() -> Self {
            CallRecSinkPad {
                level: Mutex::default(),
                number: AtomicU32::default(),
                unrouted: AtomicBool::default(),
                input: OnceLock::new(),
                direct: AtomicBool::new(true),
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for CallRecSinkPad {
        const NAME: &'static str = "GstCallRecSinkPad";
        type Type = super::CallRecSinkPad;
        type ParentType = gst::GhostPad;
    }

    impl ObjectImpl for CallRecSinkPad {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecDouble::builder("gain")
                        .nick("Gain")
                        .blurb("Gain of this track in dB; may change while PLAYING, from the sample of that running time on (saturated, never wrapped)")
                        .minimum(MIN_GAIN_DB)
                        .maximum(MAX_GAIN_DB)
                        .default_value(0.0)
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecBoolean::builder("mute")
                        .nick("Mute")
                        .blurb("Record this track as silence; may change while PLAYING, from the sample of that running time on (counted as muted-samples)")
                        .default_value(false)
                        .mutable_playing()
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let level = {
                let mut level = lock(&self.level);
                match pspec.name() {
                    "gain" => level.gain_db = value.get().unwrap_or(0.0),
                    "mute" => level.mute = value.get().unwrap_or(false),
                    _ => return,
                }
                *level
            };
            let pad = self.obj();
            if let Some(sink) = pad
                .parent()
                .and_then(|p| p.downcast::<super::super::CallRecSink>().ok())
            {
                sink.imp().level_changed(pad.upcast_ref(), level);
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let level = *lock(&self.level);
            match pspec.name() {
                "gain" => level.gain_db.to_value(),
                "mute" => level.mute.to_value(),
                _ => glib::Value::from_type(pspec.value_type()),
            }
        }
    }

    impl GstObjectImpl for CallRecSinkPad {}
    impl PadImpl for CallRecSinkPad {}
    impl ProxyPadImpl for CallRecSinkPad {}
    impl GhostPadImpl for CallRecSinkPad {}
}
