// SPDX-License-Identifier: MPL-2.0
//! One track inside the bin, behind the ghost pad `sink_N` (track N is
//! always pad `sink_N`):
//!
//! ```text
//! stallfiller ! [mulawdec|alawdec] ! [audioconvert ! audioresample ! capsfilter] ! TrackSink
//! ```
//!
//! The decoder is there while the input is G.711; the converter only while
//! the (decoded) input is not already S16LE mono at the rate of the track's
//! file. Most calls need neither, and the converter costs about as much per
//! buffer as the rest of the track, so it is linked in only when needed and
//! made only the first time it is.
//!
//! The stallfiller is this crate's own copy of the element, so the track's
//! pad hands it buffers directly and, while it is linked straight to the
//! sink, it hands them to the sink's chain function directly: a buffer
//! crosses one pad (the track's), not three. Events take the pads.

use gst::glib;
use gst::prelude::*;
use gststallfiller::StallFiller;

use super::pad::CallRecSinkPad;
use super::recording::SharedRecording;
use super::track_sink::TrackSink;

/// `audioconvert ! audioresample ! capsfilter`, linked among themselves.
struct Converter {
    convert: gst::Element,
    capsfilter: gst::Element,
    elements: [gst::Element; 3],
}

/// The elements of one track.
pub struct Track {
    pub number: u32,
    pub ghost: CallRecSinkPad,
    filler: StallFiller,
    decoder: Option<(callaudio::Encoding, gst::Element)>,
    converter: Option<Converter>,
    /// Whether the converter is linked in.
    converting: bool,
    sink: TrackSink,
    /// The track's input, once its caps are known in this recording.
    input: Option<callaudio::Layout>,
}

/// How the element hears from a track's pad: its events and its buffers
/// before they reach the track's stallfiller.
pub struct PadFunctions<E, C> {
    pub event: E,
    pub chain: C,
}

fn make(factory: &str) -> Result<gst::Element, glib::BoolError> {
    gst::ElementFactory::make(factory).build()
}

/// The pad number in a `sink_N` name.
pub fn number_of(name: &str) -> Option<u32> {
    name.strip_prefix("sink_")?.parse().ok()
}

/// Whether audio in `layout` is S16LE mono once decoded.
fn decodes_to_s16_mono(layout: &callaudio::Layout) -> bool {
    layout.channels == 1
        && matches!(
            layout.encoding,
            callaudio::Encoding::Mulaw
                | callaudio::Encoding::Alaw
                | callaudio::Encoding::Raw(gst_audio::AudioFormat::S16le)
        )
}

impl Track {
    /// Builds track `number` inside `bin`; on failure nothing is left in it.
    pub fn build<E, C>(
        bin: &gst::Bin,
        number: u32,
        recording: SharedRecording,
        functions: PadFunctions<E, C>,
    ) -> Result<Track, glib::BoolError>
    where
        E: Fn(&CallRecSinkPad, Option<&gst::Object>, gst::Event) -> bool + Send + Sync + 'static,
        C: Fn(
                &CallRecSinkPad,
                Option<&gst::Object>,
                gst::Buffer,
            ) -> Result<gst::FlowSuccess, gst::FlowError>
            + Send
            + Sync
            + 'static,
    {
        // Its downstream (the track's sink) never blocks but for a disk
        // that hangs, bounded by finalize-timeout: the shared fill workers
        // serve it, and a call costs no thread.
        let filler: StallFiller = glib::Object::builder()
            .property("name", format!("track{number}-filler"))
            .property("shared-threads", true)
            .build();
        let sink = TrackSink::new(number, recording);
        let receiver = sink.clone();
        filler.set_embedded_output(Box::new(move |buffer| receiver.receive(buffer)));
        let elements: [gst::Element; 2] = [filler.clone().upcast(), sink.clone().upcast()];
        bin.add_many(&elements)?;
        let linked = (|| {
            filler.link(&sink)?;
            filler.set_embedded_linked(true);
            let input = filler.static_pad("sink").unwrap();
            let templ = bin
                .pad_template("sink_%u")
                .ok_or_else(|| glib::bool_error!("no sink_%u template"))?;
            let ghost = gst::PadBuilder::<CallRecSinkPad>::from_template(&templ)
                .name(format!("sink_{number}"))
                .query_function(track_pad_query)
                .event_function(functions.event)
                .chain_function(functions.chain)
                .build();
            ghost.set_number(number);
            ghost.set_target(Some(&input))?;
            ghost.set_input(&filler);
            for e in &elements {
                e.sync_state_with_parent()?;
            }
            Ok::<_, glib::BoolError>(ghost)
        })();
        let ghost = match linked {
            Ok(ghost) => ghost,
            Err(err) => {
                remove_elements(bin, &elements);
                return Err(err);
            }
        };
        Ok(Track {
            number,
            ghost,
            filler,
            decoder: None,
            converter: None,
            converting: false,
            sink,
            input: None,
        })
    }

    pub fn pad_name(&self) -> String {
        self.ghost.name().to_string()
    }

    /// Takes the track's elements out of `bin`.
    pub fn remove(self, bin: &gst::Bin) {
        let elements: Vec<gst::Element> = [self.filler.upcast(), self.sink.upcast()]
            .into_iter()
            .chain(self.decoder.map(|(_, d)| d))
            .chain(self.converter.into_iter().flat_map(|c| c.elements))
            .collect();
        remove_elements(bin, &elements);
    }

    /// Forgets what the last recording learnt: its caps and its rate. The
    /// next buffer routes the track anew.
    pub fn reset(&mut self) {
        self.input = None;
        if let Some(c) = &self.converter {
            c.capsfilter.set_property("caps", any_rate_caps(None));
        }
        self.ghost.route_before_next_buffer();
    }

    pub fn input_rate(&self) -> Option<u32> {
        self.input.as_ref().map(|l| l.rate)
    }

    /// The timestamp jitter the track's stallfiller absorbs.
    pub fn set_tolerance(&self, tolerance: gst::ClockTime) {
        self.filler.set_property("tolerance", tolerance.nseconds());
    }

    /// The track's caps are `input`: links the decoder it needs, and routes
    /// it for `rate` if the recording's rate is known (else for any rate,
    /// converting only what is not S16LE mono). Runs on the CAPS event,
    /// before it reaches stallfiller.
    pub fn set_input(
        &mut self,
        bin: &gst::Bin,
        input: callaudio::Layout,
        rate: Option<u32>,
    ) -> Result<(), String> {
        let wanted = match input.encoding {
            callaudio::Encoding::Mulaw => Some("mulawdec"),
            callaudio::Encoding::Alaw => Some("alawdec"),
            callaudio::Encoding::Raw(_) => None,
        };
        let current = self.decoder.as_ref().map(|(e, _)| *e);
        let decoder_changes =
            current != Some(input.encoding) && !(current.is_none() && wanted.is_none());
        self.input = Some(input);
        if decoder_changes {
            self.unlink_all();
            if let Some((_, old)) = self.decoder.take() {
                remove_elements(bin, &[old]);
            }
            if let Some(factory) = wanted {
                let dec = make(factory)
                    .map_err(|err| format!("{err}; {factory} is in gstreamer1.0-plugins-good"))?;
                bin.add(&dec).map_err(|e| e.to_string())?;
                let _ = dec.sync_state_with_parent();
                self.decoder = Some((self.input.as_ref().unwrap().encoding, dec));
            }
        }
        self.route(bin, rate, decoder_changes)
    }

    /// Routes the track for a file at `rate` (`None`: not yet known):
    /// straight to its sink when the decoded input is S16LE mono at that
    /// rate, else through the converter.
    pub fn route(&mut self, bin: &gst::Bin, rate: Option<u32>, relink: bool) -> Result<(), String> {
        let direct = self
            .input
            .as_ref()
            .is_some_and(|i| decodes_to_s16_mono(i) && rate.is_none_or(|r| r == i.rate));
        if !direct {
            let converter = match self.converter.take() {
                Some(c) => c,
                None => Converter::build(bin).map_err(|e| e.to_string())?,
            };
            converter
                .capsfilter
                .set_property("caps", any_rate_caps(rate));
            self.converter = Some(converter);
        }
        let converting = !direct;
        if relink || converting != self.converting {
            self.unlink_all();
            self.converting = converting;
            self.link_all().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The pads that link one stage to the next: (upstream, downstream).
    fn stages(&self) -> Vec<(gst::Pad, gst::Pad)> {
        let mut pads = vec![self.filler.static_pad("src").unwrap()];
        if let Some((_, dec)) = &self.decoder {
            pads.push(dec.static_pad("sink").unwrap());
            pads.push(dec.static_pad("src").unwrap());
        }
        if let Some(c) = self.converter.as_ref().filter(|_| self.converting) {
            pads.push(c.convert.static_pad("sink").unwrap());
            pads.push(c.capsfilter.static_pad("src").unwrap());
        }
        pads.push(self.sink.sink_pad().clone());
        pads.chunks_exact(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect()
    }

    fn unlink_all(&self) {
        self.filler.set_embedded_linked(false);
        let mut sources = vec![self.filler.static_pad("src").unwrap()];
        sources.extend(
            self.decoder
                .iter()
                .map(|(_, d)| d.static_pad("src").unwrap()),
        );
        sources.extend(
            self.converter
                .iter()
                .map(|c| c.capsfilter.static_pad("src").unwrap()),
        );
        for src in sources {
            if let Some(peer) = src.peer() {
                let _ = src.unlink(&peer);
            }
        }
    }

    fn link_all(&self) -> Result<(), gst::PadLinkError> {
        for (src, sink) in self.stages() {
            // Sticky events (caps, segment) follow on the next push.
            src.link_full(&sink, gst::PadLinkCheck::HIERARCHY)?;
        }
        self.filler
            .set_embedded_linked(self.decoder.is_none() && !self.converting);
        Ok(())
    }
}

impl Converter {
    fn build(bin: &gst::Bin) -> Result<Converter, glib::BoolError> {
        let convert = make("audioconvert")?;
        let capsfilter = make("capsfilter")?;
        let elements = [convert.clone(), make("audioresample")?, capsfilter.clone()];
        bin.add_many(&elements)?;
        let linked = gst::Element::link_many(&elements).and_then(|_| {
            elements
                .iter()
                .try_for_each(|e| e.sync_state_with_parent().map(|_| ()))
        });
        if let Err(err) = linked {
            remove_elements(bin, &elements);
            return Err(err);
        }
        Ok(Converter {
            convert,
            capsfilter,
            elements,
        })
    }
}

/// A track accepts any audio the chain can decode, whatever the chain is
/// linked to right now: the decoder and converter are only linked in once
/// the caps arrive, so asking the chain itself would refuse what they would
/// convert.
fn track_pad_query(
    pad: &CallRecSinkPad,
    parent: Option<&gst::Object>,
    query: &mut gst::QueryRef,
) -> bool {
    match query.view_mut() {
        gst::QueryViewMut::Caps(q) => {
            let templ = pad.pad_template_caps();
            let caps = match q.filter() {
                Some(filter) => filter.intersect_with_mode(&templ, gst::CapsIntersectMode::First),
                None => templ,
            };
            q.set_result(&caps);
            true
        }
        gst::QueryViewMut::AcceptCaps(q) => {
            let ok = callaudio::Layout::from_caps(q.caps()).is_ok();
            q.set_result(ok);
            true
        }
        _ => gst::Pad::query_default(pad, parent, query),
    }
}

fn remove_elements(bin: &gst::Bin, elements: &[gst::Element]) {
    for e in elements {
        let _ = e.set_state(gst::State::Null);
        let _ = bin.remove(e);
    }
}

/// What the converter gives the track's sink: mono S16LE at the
/// recording's rate (any rate until it is fixed).
fn any_rate_caps(rate: Option<u32>) -> gst::Caps {
    let builder = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .channels(1);
    match rate {
        Some(rate) => builder.rate(rate as i32).build(),
        None => builder.build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_numbers_come_from_names() {
        assert_eq!(number_of("sink_0"), Some(0));
        assert_eq!(number_of("sink_17"), Some(17));
        assert_eq!(number_of("sink_"), None);
        assert_eq!(number_of("src_1"), None);
        assert_eq!(number_of("sink_-1"), None);
        assert_eq!(number_of("sink_99999999999"), None);
    }
}
