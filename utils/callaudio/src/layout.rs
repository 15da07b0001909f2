// SPDX-License-Identifier: MPL-2.0
//! What a stream's caps mean for sample arithmetic: rate, bytes per frame and
//! the byte pattern of silence.

use gst::ClockTime;

/// How samples are encoded. `audio/x-raw` covers every interleaved raw format;
/// the two G.711 companded formats are listed on their own because SIP audio
/// arrives that way and their silence is not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Raw(gst_audio::AudioFormat),
    Mulaw,
    Alaw,
}

/// Why caps could not be used for sample arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

/// The frame layout of an interleaved audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub encoding: Encoding,
    pub rate: u32,
    pub channels: u32,
    /// Bytes per frame: one sample of every channel.
    pub bpf: usize,
}

/// The highest rate any element of this set accepts: above every rate audio
/// hardware or a codec uses (768 kHz), far below what would make one
/// buffer's arithmetic or allocation a hazard.
pub const MAX_RATE: u32 = 768_000;
/// The most channels: GStreamer's own limit for positioned audio.
pub const MAX_CHANNELS: u32 = 64;

/// G.711 mu-law encodes a zero amplitude as 0xFF.
const MULAW_SILENCE: u8 = 0xFF;
/// G.711 A-law encodes a zero amplitude as 0xD5 (0x55 with even bits inverted).
const ALAW_SILENCE: u8 = 0xD5;

/// `AudioInfo` refuses more than two channels without a `channel-mask`; for
/// sample arithmetic positions do not matter, so such caps are read as unpositioned.
fn raw_info(caps: &gst::CapsRef) -> Result<gst_audio::AudioInfo, LayoutError> {
    gst_audio::AudioInfo::from_caps(caps)
        .or_else(|e| {
            let mut unpositioned = caps.to_owned();
            let s = unpositioned
                .make_mut()
                .structure_mut(0)
                .expect("checked above");
            if s.has_field("channel-mask") {
                return Err(e);
            }
            s.set("channel-mask", gst::Bitmask::new(0));
            gst_audio::AudioInfo::from_caps(&unpositioned)
        })
        .map_err(|e| LayoutError(format!("unusable raw audio caps {caps}: {e}")))
}

impl Layout {
    /// Reads fixed caps. Non-interleaved raw audio is refused: every helper here
    /// cuts a buffer at one byte position, which only an interleaved layout allows.
    /// So are rates above `MAX_RATE` and more than `MAX_CHANNELS` channels.
    pub fn from_caps(caps: &gst::CapsRef) -> Result<Self, LayoutError> {
        let layout = Self::from_caps_unbounded(caps)?;
        if layout.rate == 0 || layout.rate > MAX_RATE {
            return Err(LayoutError(format!(
                "rate {} Hz is outside 1..={MAX_RATE} Hz",
                layout.rate
            )));
        }
        if layout.channels == 0 || layout.channels > MAX_CHANNELS {
            return Err(LayoutError(format!(
                "{} channels is outside 1..={MAX_CHANNELS}",
                layout.channels
            )));
        }
        Ok(layout)
    }

    fn from_caps_unbounded(caps: &gst::CapsRef) -> Result<Self, LayoutError> {
        let s = caps
            .structure(0)
            .ok_or_else(|| LayoutError(format!("empty caps {caps}")))?;
        match s.name().as_str() {
            "audio/x-raw" => {
                let info = raw_info(caps)?;
                if info.layout() != gst_audio::AudioLayout::Interleaved && info.channels() > 1 {
                    return Err(LayoutError(format!(
                        "non-interleaved audio is not supported: {caps}"
                    )));
                }
                Ok(Layout {
                    encoding: Encoding::Raw(info.format()),
                    rate: info.rate(),
                    channels: info.channels(),
                    bpf: info.bpf() as usize,
                })
            }
            name @ ("audio/x-mulaw" | "audio/x-alaw") => {
                let rate = s.get::<i32>("rate").map_err(|_| {
                    LayoutError(format!("{name} caps without a fixed rate: {caps}"))
                })?;
                let channels = s.get::<i32>("channels").map_err(|_| {
                    LayoutError(format!("{name} caps without fixed channels: {caps}"))
                })?;
                if rate <= 0 || channels <= 0 {
                    return Err(LayoutError(format!("invalid rate or channels in {caps}")));
                }
                Ok(Layout {
                    encoding: if name == "audio/x-mulaw" {
                        Encoding::Mulaw
                    } else {
                        Encoding::Alaw
                    },
                    rate: rate as u32,
                    channels: channels as u32,
                    bpf: channels as usize,
                })
            }
            other => Err(LayoutError(format!("not an audio format: {other}"))),
        }
    }

    /// Whole frames in `bytes`; a trailing partial frame does not count.
    pub fn samples_in_bytes(&self, bytes: usize) -> u64 {
        (bytes / self.bpf) as u64
    }

    pub fn samples_to_time(&self, n: u64) -> ClockTime {
        crate::samples_to_time(n, self.rate)
    }

    pub fn time_to_samples(&self, t: ClockTime) -> u64 {
        crate::time_to_samples(t, self.rate)
    }

    /// Byte offset of sample `n`: the only conversion from samples to bytes.
    pub fn byte_offset(&self, n: u64) -> usize {
        n as usize * self.bpf
    }

    /// Fills `dest` (a whole number of frames) with this format's silence.
    pub fn fill_silence(&self, dest: &mut [u8]) {
        match self.encoding {
            Encoding::Raw(format) => {
                gst_audio::AudioFormatInfo::from_format(format).fill_silence(dest)
            }
            Encoding::Mulaw => dest.fill(MULAW_SILENCE),
            Encoding::Alaw => dest.fill(ALAW_SILENCE),
        }
    }

    /// Caps of any interleaved raw audio or G.711 within the bounds above.
    pub fn template_caps() -> gst::Caps {
        let mut caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .rate_range(1..=MAX_RATE as i32)
            .channels_range(1..=MAX_CHANNELS as i32)
            .build();
        {
            let caps = caps.get_mut().unwrap();
            for name in ["audio/x-mulaw", "audio/x-alaw"] {
                caps.append_structure(
                    gst::Structure::builder(name)
                        .field("rate", gst::IntRange::new(1, MAX_RATE as i32))
                        .field("channels", gst::IntRange::new(1, MAX_CHANNELS as i32))
                        .build(),
                );
            }
        }
        caps
    }

    /// A new buffer of `n` frames of silence, flagged GAP, without timestamps.
    pub fn silence_buffer(&self, n: u64) -> gst::Buffer {
        let mut buffer = gst::Buffer::with_size(self.byte_offset(n)).expect("allocating silence");
        {
            let buffer = buffer.get_mut().unwrap();
            {
                let mut map = buffer.map_writable().expect("mapping a new buffer");
                self.fill_silence(map.as_mut_slice());
            }
            buffer.set_flags(gst::BufferFlags::GAP);
        }
        buffer
    }
}
