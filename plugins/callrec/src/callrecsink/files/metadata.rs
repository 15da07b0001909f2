// SPDX-License-Identifier: MPL-2.0
//! What a recording says about itself: the tags set on the element
//! (GstTagSetter: title, artist, comment, date, ...) and when its first
//! sample was recorded.
//!
//! - WAV: a `LIST`/`INFO` chunk for the tags RIFF has names for, and a
//!   `bext` chunk (EBU Tech 3285) with the origination date and time, UTC,
//!   and the time reference in samples since midnight.
//! - FLAC and Opus: every tag, as Vorbis comments, by the encoder's own
//!   GstTagSetter.
//! - MP3: every tag ID3v2 has a frame for, in an ID3v2 header at the start
//!   (`id3v2mux`).

use std::time::SystemTime;

use gst::glib;
use gst::glib::translate::IntoGlib;

/// The tags of a recording, as the application set them.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub tags: Option<gst::TagList>,
}

/// `bext`'s fixed part: description to reserved, no coding history.
const BEXT_BYTES: usize = 602;

impl Metadata {
    /// RIFF INFO entries for the tags RIFF names.
    fn info(&self) -> Vec<(&'static [u8; 4], String)> {
        use gst::tags::*;
        let Some(tags) = &self.tags else {
            return Vec::new();
        };
        let text = |name: &str| {
            tags.generic(name)
                .and_then(|v| v.get::<String>().ok())
                .filter(|s| !s.is_empty())
        };
        let mut entries = Vec::new();
        for (id, name) in [
            (b"INAM", Title::TAG_NAME),
            (b"IART", Artist::TAG_NAME),
            (b"ICMT", Comment::TAG_NAME),
            (b"ICOP", Copyright::TAG_NAME),
            (b"IGNR", Genre::TAG_NAME),
            (b"IPRD", Album::TAG_NAME),
        ] {
            if let Some(value) = text(name) {
                entries.push((id, value));
            }
        }
        let date = tags
            .get::<DateTime>()
            .and_then(|d| d.get().to_iso8601_string().ok().map(|s| s.to_string()))
            .or_else(|| {
                tags.get::<Date>().map(|d| {
                    let d = d.get();
                    format!(
                        "{:04}-{:02}-{:02}",
                        d.year(),
                        d.month().into_glib(),
                        d.day()
                    )
                })
            });
        if let Some(date) = date {
            entries.push((b"ICRD", date));
        }
        entries.push((b"ISFT", "GStreamer callrecsink".to_owned()));
        entries
    }

    /// The chunks a WAV holds between `fmt ` and `data`: `bext`, then
    /// `LIST`. Their size never changes; `origination` (once known) only
    /// fills bytes already there.
    pub fn wav_chunks(&self, origination: Option<SystemTime>, rate: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"bext");
        out.extend_from_slice(&(BEXT_BYTES as u32).to_le_bytes());
        out.extend_from_slice(&self.bext(origination, rate));
        let info = self.info();
        let mut list = b"INFO".to_vec();
        for (id, value) in info {
            let mut bytes = value.into_bytes();
            bytes.retain(|&b| b != 0);
            bytes.push(0);
            list.extend_from_slice(id);
            list.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            list.extend_from_slice(&bytes);
            if bytes.len() % 2 == 1 {
                list.push(0);
            }
        }
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        out.extend_from_slice(&list);
        out
    }

    fn bext(&self, origination: Option<SystemTime>, rate: u32) -> [u8; BEXT_BYTES] {
        let mut b = [0u8; BEXT_BYTES];
        let description = self
            .tags
            .as_ref()
            .and_then(|t| t.get::<gst::tags::Title>().map(|v| v.get().to_owned()))
            .unwrap_or_default();
        put(&mut b[0..256], &description);
        put(&mut b[256..288], "GStreamer callrecsink");
        if let Some(at) = origination.and_then(utc) {
            let (date, time, since_midnight) = at;
            put(&mut b[320..330], &date);
            put(&mut b[330..338], &time);
            let samples = since_midnight.saturating_mul(u64::from(rate));
            b[338..346].copy_from_slice(&samples.to_le_bytes());
        }
        // Version 1: UMID and reserved bytes stay zero.
        b[346..348].copy_from_slice(&1u16.to_le_bytes());
        b
    }
}

/// ASCII into a fixed field, cut to fit, the rest zero.
fn put(field: &mut [u8], text: &str) {
    let bytes: Vec<u8> = text.bytes().filter(|b| b.is_ascii() && *b != 0).collect();
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

/// ("yyyy-mm-dd", "hh:mm:ss", seconds since midnight), UTC.
fn utc(at: SystemTime) -> Option<(String, String, u64)> {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let dt = glib::DateTime::from_unix_utc(secs as i64).ok()?;
    Some((
        dt.format("%Y-%m-%d").ok()?.to_string(),
        dt.format("%H:%M:%S").ok()?.to_string(),
        secs % 86_400,
    ))
}

/// When the first sample was recorded, for the outcome: UTC.
pub fn date_time(at: SystemTime) -> Option<gst::DateTime> {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let dt = glib::DateTime::from_unix_utc(i64::try_from(since.as_secs()).ok()?)
        .ok()?
        .add(glib::TimeSpan::from_microseconds(i64::from(
            since.subsec_micros(),
        )))
        .ok()?;
    Some(gst::DateTime::from_g_date_time(dt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_chunks_hold_the_tags_and_the_origination() {
        gst::init().unwrap();
        let mut tags = gst::TagList::new();
        {
            let tags = tags.get_mut().unwrap();
            tags.add::<gst::tags::Title>(&"Call 42", gst::TagMergeMode::Append);
            tags.add::<gst::tags::Artist>(&"Acme support", gst::TagMergeMode::Append);
        }
        let meta = Metadata { tags: Some(tags) };
        // 2026-11-30 12:00:01 UTC
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_040_001);
        let chunks = meta.wav_chunks(Some(at), 8000);
        assert_eq!(&chunks[0..4], b"bext");
        let bext = &chunks[8..8 + BEXT_BYTES];
        assert!(bext.starts_with(b"Call 42\0"));
        assert_eq!(&bext[320..330], b"2026-11-30");
        assert_eq!(&bext[330..338], b"12:00:01");
        assert_eq!(
            u64::from_le_bytes(bext[338..346].try_into().unwrap()),
            (12 * 3600 + 1) * 8000
        );
        let list = &chunks[8 + BEXT_BYTES..];
        assert_eq!(&list[0..4], b"LIST");
        assert_eq!(
            u32::from_le_bytes(list[4..8].try_into().unwrap()) as usize,
            list.len() - 8
        );
        assert_eq!(&list[8..12], b"INFO");
        assert_eq!(&list[12..16], b"INAM");
        assert_eq!(&list[20..28], b"Call 42\0");
        // The size never depends on the origination.
        assert_eq!(meta.wav_chunks(None, 8000).len(), chunks.len());
    }
}
