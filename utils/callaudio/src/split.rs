// SPDX-License-Identifier: MPL-2.0
//! Cutting buffers at sample positions without copying audio.
//!
//! Both halves share the input's memory (`copy_region` with `MEMORY`); the
//! byte position of a cut is always `sample * bpf`.

use crate::Layout;

/// `GST_BUFFER_OFFSET_NONE`: the buffer has no offset.
pub const OFFSET_NONE: u64 = u64::MAX;

/// Splits `buffer` before sample `at`. A cut at 0 gives `(None, whole)`, a cut
/// at or past the end gives `(whole, None)`. Timestamps, durations and offsets of
/// both halves are derived from the input's with the shared rounding rule.
pub fn split_at_sample(
    buffer: gst::Buffer,
    at: u64,
    layout: &Layout,
) -> (Option<gst::Buffer>, Option<gst::Buffer>) {
    let total = layout.samples_in_bytes(buffer.size());
    if at == 0 {
        return (None, Some(buffer));
    }
    if at >= total {
        return (Some(buffer), None);
    }
    let head = region(&buffer, 0, at, layout);
    let tail = region(&buffer, at, total, layout);
    (Some(head), Some(tail))
}

/// Removes `head` samples from the front and `tail` samples from the back.
/// `None` when nothing remains.
pub fn trim(buffer: gst::Buffer, head: u64, tail: u64, layout: &Layout) -> Option<gst::Buffer> {
    let total = layout.samples_in_bytes(buffer.size());
    if head + tail >= total {
        return None;
    }
    if head == 0 && tail == 0 {
        return Some(buffer);
    }
    Some(region(&buffer, head, total - tail, layout))
}

/// `buffer` cut to whole frames, and how many stray bytes were cut off its
/// end (a buffer whose size is not a multiple of the frame size would put
/// every later sample of the stream off by those bytes).
pub fn whole_frames(buffer: gst::Buffer, layout: &Layout) -> (gst::Buffer, usize) {
    let stray = buffer.size() % layout.bpf.max(1);
    if stray == 0 {
        return (buffer, 0);
    }
    let total = layout.samples_in_bytes(buffer.size());
    (region(&buffer, 0, total, layout), stray)
}

/// Samples `[from, to)` of `buffer` as a new buffer sharing its memory.
fn region(buffer: &gst::BufferRef, from: u64, to: u64, layout: &Layout) -> gst::Buffer {
    let bytes = layout.byte_offset(from)..layout.byte_offset(to);
    let mut out = buffer
        .copy_region(
            gst::BufferCopyFlags::FLAGS | gst::BufferCopyFlags::META | gst::BufferCopyFlags::MEMORY,
            bytes,
        )
        .expect("region inside the buffer");
    {
        let out = out.get_mut().unwrap();
        // Only the first piece of a buffer may start a discontinuity.
        if from > 0 {
            out.unset_flags(gst::BufferFlags::DISCONT);
        }
        if let Some(pts) = buffer.pts() {
            let start = pts + layout.samples_to_time(from);
            out.set_pts(start);
            out.set_duration(pts + layout.samples_to_time(to) - start);
        } else {
            out.set_pts(gst::ClockTime::NONE);
            out.set_duration(layout.samples_to_time(to) - layout.samples_to_time(from));
        }
        out.set_dts(gst::ClockTime::NONE);
        if buffer.offset() != OFFSET_NONE {
            out.set_offset(buffer.offset() + from);
            out.set_offset_end(buffer.offset() + to);
        } else {
            out.set_offset(OFFSET_NONE);
            out.set_offset_end(OFFSET_NONE);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::ClockTime;

    fn init() {
        gst::init().unwrap();
    }

    fn raw_layout(format: gst_audio::AudioFormat, channels: i32) -> Layout {
        let caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(format)
            .rate(8000)
            .channels(channels)
            .build();
        Layout::from_caps(&caps).unwrap()
    }

    /// A buffer whose bytes count up, so any misplaced cut shows in the values.
    fn counting_buffer(layout: &Layout, samples: u64) -> gst::Buffer {
        let data: Vec<u8> = (0..layout.byte_offset(samples))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(ClockTime::from_seconds(1));
            b.set_duration(layout.samples_to_time(samples));
            b.set_offset(8000);
            b.set_offset_end(8000 + samples);
        }
        buffer
    }

    fn bytes(buffer: &gst::BufferRef) -> Vec<u8> {
        buffer.map_readable().unwrap().as_slice().to_vec()
    }

    /// Every raw format GStreamer 1.22 lists that has a fixed frame size.
    fn every_raw_format() -> Vec<gst_audio::AudioFormat> {
        gst_audio::AudioFormat::iter_raw()
            .filter(|f| gst_audio::AudioFormatInfo::from_format(*f).width() > 0)
            .collect()
    }

    #[test]
    fn split_then_concatenate_is_lossless() {
        init();
        let formats = every_raw_format();
        assert!(
            formats.len() >= 30,
            "expected GStreamer's full list, got {}",
            formats.len()
        );
        for format in formats {
            for channels in [1, 2, 6] {
                let layout = raw_layout(format, channels);
                let total = 37;
                let input = counting_buffer(&layout, total);
                for at in 0..=total + 3 {
                    let (head, tail) = split_at_sample(input.clone(), at, &layout);
                    let head_len = head
                        .as_ref()
                        .map_or(0, |b| layout.samples_in_bytes(b.size()));
                    assert_eq!(head_len, at.min(total), "{format:?} x{channels} at {at}");
                    let mut joined = head.as_ref().map(|b| bytes(b)).unwrap_or_default();
                    joined.extend(tail.as_ref().map(|b| bytes(b)).unwrap_or_default());
                    assert_eq!(joined, bytes(&input), "{format:?} x{channels} at {at}");
                    if let (Some(h), Some(t)) = (&head, &tail) {
                        assert_eq!(h.pts().unwrap() + h.duration().unwrap(), t.pts().unwrap());
                        assert_eq!(
                            h.duration().unwrap() + t.duration().unwrap(),
                            input.duration().unwrap()
                        );
                        assert_eq!(h.offset_end(), t.offset());
                        assert_eq!(t.offset(), 8000 + at);
                    }
                }
            }
        }
    }

    #[test]
    fn split_at_edges_gives_empty_half_and_whole() {
        init();
        let layout = raw_layout(gst_audio::AudioFormat::S16le, 2);
        let input = counting_buffer(&layout, 10);
        let (head, tail) = split_at_sample(input.clone(), 0, &layout);
        assert!(head.is_none());
        assert_eq!(bytes(&tail.unwrap()), bytes(&input));
        let (head, tail) = split_at_sample(input.clone(), 10, &layout);
        assert!(tail.is_none());
        assert_eq!(bytes(&head.unwrap()), bytes(&input));
        let (head, tail) = split_at_sample(input.clone(), 1000, &layout);
        assert!(tail.is_none());
        assert_eq!(bytes(&head.unwrap()), bytes(&input));
    }

    #[test]
    fn split_indexes_frames_not_bytes() {
        // The production bug this crate exists for: an int16 stereo buffer cut
        // "at sample 3" must cut at byte 12, not byte 3 or 6.
        init();
        let layout = raw_layout(gst_audio::AudioFormat::S16le, 2);
        let input = counting_buffer(&layout, 8);
        let (head, tail) = split_at_sample(input, 3, &layout);
        assert_eq!(head.unwrap().size(), 12);
        assert_eq!(bytes(&tail.unwrap())[0], 12);
    }

    #[test]
    fn split_shares_memory() {
        init();
        let layout = raw_layout(gst_audio::AudioFormat::S16le, 1);
        let input = counting_buffer(&layout, 100);
        let input_ptr = input.map_readable().unwrap().as_ptr();
        let (_, tail) = split_at_sample(input, 10, &layout);
        let tail = tail.unwrap();
        assert_eq!(tail.map_readable().unwrap().as_ptr(), unsafe {
            input_ptr.add(20)
        });
    }

    #[test]
    fn trim_cuts_head_and_tail() {
        init();
        let layout = raw_layout(gst_audio::AudioFormat::S24le, 6);
        let input = counting_buffer(&layout, 20);
        let all = bytes(&input);
        let out = trim(input.clone(), 3, 4, &layout).unwrap();
        assert_eq!(
            bytes(&out),
            all[layout.byte_offset(3)..layout.byte_offset(16)]
        );
        assert_eq!(
            out.pts().unwrap(),
            input.pts().unwrap() + layout.samples_to_time(3)
        );
        assert_eq!(out.offset(), 8003);
        assert!(trim(input.clone(), 10, 10, &layout).is_none());
        assert!(trim(input, 25, 0, &layout).is_none());
    }

    #[test]
    fn every_format_fills_its_own_silence() {
        init();
        for format in every_raw_format() {
            let layout = raw_layout(format, 2);
            let silence = layout.silence_buffer(4);
            assert!(silence.flags().contains(gst::BufferFlags::GAP));
            let mut expected = vec![0u8; layout.byte_offset(4)];
            gst_audio::AudioFormatInfo::from_format(format).fill_silence(&mut expected);
            assert_eq!(bytes(&silence), expected, "{format:?}");
        }
        let u8_layout = raw_layout(gst_audio::AudioFormat::U8, 1);
        assert_eq!(bytes(&u8_layout.silence_buffer(3)), vec![0x80; 3]);
        let s16 = raw_layout(gst_audio::AudioFormat::S16le, 1);
        assert_eq!(bytes(&s16.silence_buffer(3)), vec![0; 6]);
        let u16be = raw_layout(gst_audio::AudioFormat::U16be, 1);
        assert_eq!(bytes(&u16be.silence_buffer(1)), vec![0x80, 0x00]);

        let mulaw = gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000)
            .field("channels", 1)
            .build();
        let mulaw = Layout::from_caps(&mulaw).unwrap();
        assert_eq!(bytes(&mulaw.silence_buffer(3)), vec![0xFF; 3]);
        let alaw = gst::Caps::builder("audio/x-alaw")
            .field("rate", 8000)
            .field("channels", 2)
            .build();
        let alaw = Layout::from_caps(&alaw).unwrap();
        assert_eq!(alaw.bpf, 2);
        assert_eq!(bytes(&alaw.silence_buffer(2)), vec![0xD5; 4]);
    }

    #[test]
    fn stray_bytes_are_cut_to_whole_frames() {
        init();
        let layout = raw_layout(gst_audio::AudioFormat::S16le, 2);
        let mut buffer = gst::Buffer::from_mut_slice(vec![1u8; 4 * 10 + 3]);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_seconds(1));
        let (whole, stray) = whole_frames(buffer, &layout);
        assert_eq!((whole.size(), stray), (40, 3));
        assert_eq!(whole.pts(), Some(gst::ClockTime::from_seconds(1)));
        let (same, stray) = whole_frames(whole, &layout);
        assert_eq!((same.size(), stray), (40, 0));
    }

    #[test]
    fn refuses_non_audio_and_planar() {
        init();
        assert!(Layout::from_caps(&gst::Caps::builder("video/x-raw").build()).is_err());
        let planar = gst_audio::AudioCapsBuilder::new()
            .format(gst_audio::AudioFormat::S16le)
            .rate(8000)
            .channels(2)
            .layout(gst_audio::AudioLayout::NonInterleaved)
            .build();
        assert!(Layout::from_caps(&planar).is_err());
        let huge = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate(i32::MAX)
            .channels(64)
            .build();
        let err = Layout::from_caps(&huge).unwrap_err();
        assert!(err.0.contains("2147483647"), "{err}");
        let mulaw = gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000)
            .field("channels", 65)
            .build();
        assert!(
            Layout::from_caps(&mulaw)
                .unwrap_err()
                .0
                .contains("65 channels")
        );
    }
}
