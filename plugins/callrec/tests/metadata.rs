// SPDX-License-Identifier: MPL-2.0
//! Tags set on callrecsink (GstTagSetter) reach the file in each format's
//! own way, and the outcome says when the first sample was recorded.

mod common;

use common::*;
use gst::prelude::*;

fn record_tagged(format: &str) -> (std::path::PathBuf, gst::Structure) {
    init();
    let dir = tmp_dir(&format!("tags-{format}"));
    let location = dir.join(format!("call.{format}"));
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} format={format} \
         audiotestsrc num-buffers=50 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec.",
        location.display()
    ));
    let setter = pipeline
        .by_name("rec")
        .unwrap()
        .dynamic_cast::<gst::TagSetter>()
        .unwrap();
    setter.add_tag::<gst::tags::Title>(&"Call 42", gst::TagMergeMode::Replace);
    setter.add_tag::<gst::tags::Artist>(&"Acme support", gst::TagMergeMode::Replace);
    setter.add_tag::<gst::tags::Comment>(&"agent: bot-7", gst::TagMergeMode::Replace);
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = finish(&pipeline);
    assert_eq!(error_text(&messages), None);
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    (location, finalized)
}

/// A RIFF chunk's body, found by walking the chunks (not by searching bytes).
fn riff_chunk<'a>(bytes: &'a [u8], id: &[u8; 4]) -> Option<&'a [u8]> {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
        if &bytes[at..at + 4] == id {
            return Some(body);
        }
        at += 8 + size + size % 2;
    }
    None
}

fn info_entry(list: &[u8], id: &[u8; 4]) -> Option<String> {
    assert_eq!(&list[0..4], b"INFO");
    let mut at = 4;
    while at + 8 <= list.len() {
        let size = u32::from_le_bytes(list[at + 4..at + 8].try_into().unwrap()) as usize;
        let value = &list[at + 8..at + 8 + size];
        if &list[at..at + 4] == id {
            return Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_owned(),
            );
        }
        at += 8 + size + size % 2;
    }
    None
}

#[test]
fn wav_has_list_info_and_bext_and_still_reads_back() {
    let (location, finalized) = record_tagged("wav");
    let bytes = std::fs::read(&location).unwrap();
    let list = riff_chunk(&bytes, b"LIST").expect("a LIST chunk");
    assert_eq!(info_entry(list, b"INAM").as_deref(), Some("Call 42"));
    assert_eq!(info_entry(list, b"IART").as_deref(), Some("Acme support"));
    assert_eq!(info_entry(list, b"ICMT").as_deref(), Some("agent: bot-7"));
    let bext = riff_chunk(&bytes, b"bext").expect("a bext chunk");
    assert_eq!(bext.len(), 602);
    assert!(bext.starts_with(b"Call 42"));
    let start = finalized
        .get::<gst::DateTime>("start-time")
        .expect("start-time in the outcome");
    let date = format!(
        "{:04}-{:02}-{:02}",
        start.year(),
        start.month().unwrap(),
        start.day().unwrap()
    );
    assert_eq!(&bext[320..330], date.as_bytes(), "origination date (UTC)");
    // An independent reader still finds the audio, and all of it.
    let (_, _, data) = read_wav(&location);
    assert_eq!(data[0].len(), 8000);
    assert_header_matches_file(&location);
    // The first sample was recorded a moment ago.
    let now = gst::DateTime::from_g_date_time(gst::glib::DateTime::now_utc().unwrap());
    let age = now
        .to_g_date_time()
        .unwrap()
        .difference(&start.to_g_date_time().unwrap());
    assert!(
        (0..60_000_000).contains(&age.as_microseconds()),
        "start-time {start}"
    );
}

#[test]
fn flac_has_vorbis_comments() {
    let (location, _) = record_tagged("flac");
    let reader = claxon::FlacReader::open(&location).unwrap();
    let tags: Vec<(String, String)> = reader
        .tags()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.to_owned()))
        .collect();
    assert!(
        tags.contains(&("TITLE".into(), "Call 42".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("ARTIST".into(), "Acme support".into())),
        "{tags:?}"
    );
}

#[test]
fn opus_has_opus_tags() {
    let (location, _) = record_tagged("opus");
    let comments = opus_comments(&std::fs::read(&location).unwrap());
    assert!(
        comments.contains(&"TITLE=Call 42".to_owned()),
        "{comments:?}"
    );
    assert!(
        comments.contains(&"ARTIST=Acme support".to_owned()),
        "{comments:?}"
    );
}

#[test]
fn mp3_has_an_id3v2_header_and_still_decodes() {
    let (location, finalized) = record_tagged("mp3");
    let bytes = std::fs::read(&location).unwrap();
    assert_eq!(&bytes[..3], b"ID3", "no ID3v2 header");
    // The header's size: four 7-bit bytes (ID3v2.4 section 3.1).
    let size = bytes[6..10]
        .iter()
        .fold(0usize, |a, &b| (a << 7) | b as usize);
    let header = &bytes[10..10 + size];
    let frame = |id: &[u8; 4]| -> Option<String> {
        let at = header.windows(4).position(|w| w == id)?;
        let len = header[at + 4..at + 8]
            .iter()
            .fold(0usize, |a, &b| (a << 7) | b as usize);
        // The frame's text after its encoding byte.
        let text = &header[at + 11..at + 10 + len];
        Some(
            String::from_utf8_lossy(text)
                .trim_end_matches('\0')
                .to_owned(),
        )
    };
    assert_eq!(frame(b"TIT2").as_deref(), Some("Call 42"));
    assert_eq!(frame(b"TPE1").as_deref(), Some("Acme support"));
    let frames = finalized.get::<u64>("frames").unwrap();
    let decoded = decode_mp3(&location, 8000)[0].len() as u64;
    assert!(decoded >= frames, "{decoded} of {frames} frames decoded");
}

/// The comments of the OpusTags header (RFC 7845 5.2), read straight from
/// the file: it fits in the second Ogg page, whole.
fn opus_comments(file: &[u8]) -> Vec<String> {
    let at = file
        .windows(8)
        .position(|w| w == b"OpusTags")
        .expect("an OpusTags header");
    let mut p = at + 8;
    let u32_at = |p: usize| u32::from_le_bytes(file[p..p + 4].try_into().unwrap()) as usize;
    let vendor = u32_at(p);
    p += 4 + vendor;
    let count = u32_at(p);
    p += 4;
    (0..count)
        .map(|_| {
            let len = u32_at(p);
            let comment = String::from_utf8_lossy(&file[p + 4..p + 4 + len]).into_owned();
            p += 4 + len;
            // Vorbis comment field names are case-insensitive.
            match comment.split_once('=') {
                Some((k, v)) => format!("{}={v}", k.to_ascii_uppercase()),
                None => comment,
            }
        })
        .collect()
}
