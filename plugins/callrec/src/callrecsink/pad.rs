//! `CallRecSinkPad`: a track's request pad, with the track's own `gain`
//! and `mute`. Either may change while PLAYING; the change applies at the
//! exact sample of the running time it was made at (the same cut as
//! pause/resume), and a muted span is silence, counted per track.

use std::sync::{LazyLock, Mutex};

use callaudio::sync::lock;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

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
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct CallRecSinkPad {
        pub(super) level: Mutex<Level>,
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
