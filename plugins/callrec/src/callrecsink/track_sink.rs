// SPDX-License-Identifier: MPL-2.0
//! `TrackSink`: where one track's audio enters the recording. Private to
//! callrecsink (no factory); one per track, at the end of the track's chain.
//! Its sink pad's chain function is the single entry point of the track's
//! buffers, whether they come straight from stallfiller (already S16LE mono
//! at the recording's rate, the common case, which then costs one function
//! call) or through the converter.
//!
//! It is a plain element with a chain pad rather than a `BaseSink`: it never
//! prerolls, never syncs and keeps no last sample, so none of `BaseSink`'s
//! per-buffer machinery is wanted; it posts EOS itself, which is all the bin
//! needs of a sink.
//!
//! Per buffer it takes its own `stream` lock (the segment, this thread only)
//! and then the recording's; it never holds both. It reaches the bin (a
//! strong reference through its parent, never a GLib weak reference, which
//! thousands of tracks would contend on) only to post what a buffer ended.

use std::sync::{LazyLock, Mutex, OnceLock};

use callaudio::sync::lock;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::recording::{ChannelMemo, Refusal, SharedRecording};

glib::wrapper! {
    pub struct TrackSink(ObjectSubclass<imp::TrackSink>) @extends gst::Element, gst::Object;
}

impl TrackSink {
    /// The sink of track `number`, recording into `recording`.
    pub fn new(number: u32, recording: SharedRecording) -> Self {
        let sink: TrackSink = glib::Object::builder()
            .property("name", format!("track{number}-sink"))
            .build();
        let _ = sink.imp().link.set(imp::Link { number, recording });
        sink
    }

    /// The chain function, for the track's stallfiller while it is linked
    /// straight to this sink (see `track.rs`).
    pub fn receive(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        callaudio::sync::flow_guarded(self, |sink| sink.imp().chain(buffer))
    }

    pub fn sink_pad(&self) -> &gst::Pad {
        &self.imp().sinkpad
    }
}

/// What the sink accepts: the file's sample format, at any rate (the
/// recording checks it is its own).
fn sink_caps() -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .channels(1)
        .build()
}

mod imp {
    use super::*;
    use crate::callrecsink::CallRecSink;

    pub struct Link {
        pub number: u32,
        pub recording: SharedRecording,
    }

    /// What the track's events said, for its buffers.
    #[derive(Default)]
    struct Stream {
        /// Between READY->PAUSED and PAUSED->READY: what the pad's
        /// flushing state says, for buffers that do not cross the pad.
        active: bool,
        segment: Option<gst::FormattedSegment<gst::ClockTime>>,
        rate: Option<u32>,
    }

    pub struct TrackSink {
        pub(super) sinkpad: gst::Pad,
        pub(super) link: OnceLock<Link>,
        stream: Mutex<Stream>,
        channel: ChannelMemo,
    }

    impl TrackSink {
        fn callrecsink(&self) -> Option<CallRecSink> {
            self.obj().parent().and_then(|p| p.downcast().ok())
        }

        /// Every buffer of the track, from the pad or straight from the
        /// track's stallfiller.
        pub(super) fn chain(
            &self,
            buffer: gst::Buffer,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let link = self.link.get().ok_or(gst::FlowError::Flushing)?;
            let (running_time, rate) = {
                let stream = lock(&self.stream);
                if !stream.active {
                    return Err(gst::FlowError::Flushing);
                }
                let running_time = buffer
                    .pts()
                    .and_then(|pts| stream.segment.as_ref()?.to_running_time(pts));
                (running_time, stream.rate)
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut guard = lock(&link.recording);
                let rec = guard
                    .as_mut()
                    .ok_or(Refusal::Flow(gst::FlowError::Flushing))?;
                // Not part of this recording: nothing to do with its audio.
                let Some(channel) = rec.channel_memo(link.number, &self.channel) else {
                    return Ok(None);
                };
                rec.record_at_rate(channel, rate, running_time, &buffer)
            }));
            if let Ok(Ok(None)) = result {
                return Ok(gst::FlowSuccess::Ok);
            }
            let Some(bin) = self.callrecsink() else {
                return Err(gst::FlowError::Flushing);
            };
            let bin = bin.imp();
            match result {
                Ok(result) => bin.recorded(link.number, result),
                Err(panic) => {
                    bin.failed_by_panic(&*panic);
                    Err(gst::FlowError::Error)
                }
            }
        }

        fn sink_event(&self, event: gst::Event) -> bool {
            match event.view() {
                gst::EventView::Caps(c) => {
                    lock(&self.stream).rate = gst_audio::AudioInfo::from_caps(c.caps())
                        .ok()
                        .map(|i| i.rate());
                }
                gst::EventView::Segment(s) => {
                    lock(&self.stream).segment =
                        s.segment().downcast_ref::<gst::ClockTime>().cloned();
                }
                gst::EventView::Eos(_) => {
                    // The outcome is posted before the EOS that tells the
                    // application the pipeline is done.
                    if let (Some(link), Some(bin)) = (self.link.get(), self.callrecsink()) {
                        let bin = bin.imp();
                        bin.guarded((), || bin.on_eos(link.number));
                    }
                    let obj = self.obj();
                    let _ = obj.post_message(
                        gst::message::Eos::builder()
                            .src(&*obj)
                            .seqnum(event.seqnum())
                            .build(),
                    );
                }
                _ => {}
            }
            true
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for TrackSink {
        const NAME: &'static str = "GstCallRecTrackSink";
        type Type = super::TrackSink;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let templ = klass.pad_template("sink").unwrap();
            let sinkpad = gst::Pad::builder_from_template(&templ)
                .chain_function(|_, parent, buffer| {
                    callaudio::sync::chain_guarded(parent, |sink: &super::TrackSink| {
                        sink.imp().chain(buffer)
                    })
                })
                .event_function(|_, parent, event| {
                    TrackSink::catch_panic_pad_function(
                        parent,
                        || false,
                        |sink| sink.sink_event(event),
                    )
                })
                .build();
            TrackSink {
                sinkpad,
                link: OnceLock::new(),
                stream: Mutex::new(Stream::default()),
                channel: ChannelMemo::default(),
            }
        }
    }

    impl ObjectImpl for TrackSink {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            obj.add_pad(&self.sinkpad).unwrap();
            obj.set_element_flags(gst::ElementFlags::SINK);
        }
    }

    impl GstObjectImpl for TrackSink {}

    impl ElementImpl for TrackSink {
        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                vec![
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &sink_caps(),
                    )
                    .unwrap(),
                ]
            });
            TEMPLATES.as_ref()
        }

        /// LATENCY and other upstream events the bin hands its sinks go on
        /// upstream, as a sink's would.
        fn send_event(&self, event: gst::Event) -> bool {
            if event.is_upstream() {
                self.sinkpad.push_event(event)
            } else {
                false
            }
        }

        fn change_state(
            &self,
            transition: gst::StateChange,
        ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
            if transition == gst::StateChange::ReadyToPaused {
                lock(&self.stream).active = true;
            }
            let success = self.parent_change_state(transition)?;
            // Only once the pad is inactive: upstream (a filler on another
            // thread) may push until then, and must find the caps it sent.
            if transition == gst::StateChange::PausedToReady {
                *lock(&self.stream) = Stream::default();
            }
            Ok(success)
        }
    }
}
