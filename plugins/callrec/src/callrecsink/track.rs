//! One track inside the bin: `stallfiller ! [mulawdec|alawdec] !
//! audioconvert ! audioresample ! capsfilter ! appsink`, behind the ghost pad
//! `sink_N`. Track N is always pad `sink_N`.

use gst::glib;
use gst::prelude::*;

use super::pad::CallRecSinkPad;

/// The elements of one track.
pub struct Track {
    pub number: u32,
    pub ghost: gst::GhostPad,
    elements: Vec<gst::Element>,
    filler: gst::Element,
    convert: gst::Element,
    capsfilter: gst::Element,
    decoder: Option<(callaudio::Encoding, gst::Element)>,
    /// The track's input rate, once its caps are known in this recording.
    pub input_rate: Option<u32>,
}

/// The pads of a new track the element hooks into.
pub struct Hooks {
    pub appsink: gst_app::AppSink,
    /// Where the track's audio enters (stallfiller's sink pad).
    pub input: gst::Pad,
    /// Where it reaches the converter, for the direct path.
    pub converter_input: gst::Pad,
}

fn make(factory: &str) -> Result<gst::Element, glib::BoolError> {
    gst::ElementFactory::make(factory).build()
}

/// The pad number in a `sink_N` name.
pub fn number_of(name: &str) -> Option<u32> {
    name.strip_prefix("sink_")?.parse().ok()
}

impl Track {
    /// Builds track `number` inside `bin`; on failure nothing is left in it.
    pub fn build(
        bin: &gst::Bin,
        number: u32,
        query: impl Fn(&CallRecSinkPad, Option<&gst::Object>, &mut gst::QueryRef) -> bool
        + Send
        + Sync
        + 'static,
    ) -> Result<(Track, Hooks), glib::BoolError> {
        let filler = make("stallfiller")?;
        let convert = make("audioconvert")?;
        let resample = make("audioresample")?;
        let capsfilter = make("capsfilter")?;
        capsfilter.set_property("caps", track_caps(None));
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .async_(false)
            .max_buffers(0)
            .build();
        let elements: Vec<gst::Element> = vec![
            filler.clone(),
            convert.clone(),
            resample,
            capsfilter.clone(),
            appsink.clone().upcast(),
        ];
        bin.add_many(&elements)?;
        let linked = (|| {
            gst::Element::link_many(&elements)?;
            let input = filler.static_pad("sink").unwrap();
            let templ = bin
                .pad_template("sink_%u")
                .ok_or_else(|| glib::bool_error!("no sink_%u template"))?;
            let ghost = gst::PadBuilder::<CallRecSinkPad>::from_template(&templ)
                .name(format!("sink_{number}"))
                .query_function(query)
                .build();
            ghost.set_target(Some(&input))?;
            let ghost = ghost.upcast::<gst::GhostPad>();
            for e in &elements {
                e.sync_state_with_parent()?;
            }
            Ok::<_, glib::BoolError>((ghost, input))
        })();
        let (ghost, input) = match linked {
            Ok(v) => v,
            Err(err) => {
                remove_elements(bin, &elements);
                return Err(err);
            }
        };
        let hooks = Hooks {
            appsink,
            input,
            converter_input: convert.static_pad("sink").unwrap(),
        };
        let track = Track {
            number,
            ghost,
            elements,
            filler,
            convert,
            capsfilter,
            decoder: None,
            input_rate: None,
        };
        Ok((track, hooks))
    }

    pub fn pad_name(&self) -> String {
        self.ghost.name().to_string()
    }

    /// Takes the track's elements out of `bin`.
    pub fn remove(self, bin: &gst::Bin) {
        let elements: Vec<gst::Element> = self
            .elements
            .into_iter()
            .chain(self.decoder.map(|(_, d)| d))
            .collect();
        remove_elements(bin, &elements);
    }

    /// Forgets what the last recording learnt: its caps, its rate.
    pub fn reset(&mut self) {
        self.input_rate = None;
        self.capsfilter.set_property("caps", track_caps(None));
    }

    /// The timestamp jitter the track's stallfiller absorbs.
    pub fn set_tolerance(&self, tolerance: gst::ClockTime) {
        self.filler.set_property("tolerance", tolerance.nseconds());
    }

    /// Converts to the recording's rate from now on.
    pub fn set_rate(&self, rate: u32) {
        self.capsfilter.set_property("caps", track_caps(Some(rate)));
    }

    /// Puts the decoder `encoding` needs between stallfiller and the
    /// converter, replacing one a previous recording needed. Runs on the
    /// CAPS event, before it leaves stallfiller.
    pub fn use_decoder_for(
        &mut self,
        bin: &gst::Bin,
        encoding: callaudio::Encoding,
    ) -> Result<(), String> {
        let wanted = match encoding {
            callaudio::Encoding::Mulaw => Some("mulawdec"),
            callaudio::Encoding::Alaw => Some("alawdec"),
            callaudio::Encoding::Raw(_) => None,
        };
        let current = self.decoder.as_ref().map(|(e, _)| *e);
        if current == Some(encoding) || (current.is_none() && wanted.is_none()) {
            return Ok(());
        }
        if let Some((_, old)) = self.decoder.take() {
            self.filler.unlink(&old);
            old.unlink(&self.convert);
            remove_elements(bin, &[old]);
            let _ = self.filler.link(&self.convert);
        }
        let Some(factory) = wanted else {
            return Ok(());
        };
        let dec = make(factory)
            .map_err(|err| format!("{err}; {factory} is in gstreamer1.0-plugins-good"))?;
        bin.add(&dec).map_err(|e| e.to_string())?;
        self.filler.unlink(&self.convert);
        gst::Element::link_many([&self.filler, &dec, &self.convert]).map_err(|e| e.to_string())?;
        let _ = dec.sync_state_with_parent();
        self.decoder = Some((encoding, dec));
        Ok(())
    }
}

fn remove_elements(bin: &gst::Bin, elements: &[gst::Element]) {
    for e in elements {
        let _ = e.set_state(gst::State::Null);
        let _ = bin.remove(e);
    }
}

/// What each track is converted to before the mixer: mono S16LE at the
/// recording's rate (any rate until it is fixed).
pub fn track_caps(rate: Option<u32>) -> gst::Caps {
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
