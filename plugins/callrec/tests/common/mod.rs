// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the callrecsink pipeline tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use gst::prelude::*;

pub fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstcallrec::plugin_register_static().unwrap();
    });
}

/// A fresh directory for one test's files.
pub fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callrec-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn part(location: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.part", location.display()))
}

pub fn launch(desc: &str) -> gst::Pipeline {
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    // Messages posted while stopping must survive READY->NULL for the test to read them.
    pipeline.set_auto_flush_bus(false);
    pipeline
}

/// Every message on the bus until one of `until` (or the timeout).
pub fn messages_until(
    pipeline: &gst::Pipeline,
    until: &[gst::MessageType],
    timeout: Duration,
) -> Vec<gst::Message> {
    let bus = pipeline.bus().unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else {
            break;
        };
        let stop = until.contains(&msg.type_());
        out.push(msg);
        if stop {
            break;
        }
    }
    out
}

/// Whatever is left on the bus right now.
pub fn drain(pipeline: &gst::Pipeline) -> Vec<gst::Message> {
    let bus = pipeline.bus().unwrap();
    std::iter::from_fn(|| bus.pop()).collect()
}

pub fn element_message(messages: &[gst::Message], name: &str) -> Option<gst::Structure> {
    messages.iter().find_map(|m| match m.view() {
        gst::MessageView::Element(e) => e
            .structure()
            .filter(|s| s.name() == name)
            .map(|s| s.to_owned()),
        _ => None,
    })
}

pub fn error_text(messages: &[gst::Message]) -> Option<(String, String)> {
    messages.iter().find_map(|m| match m.view() {
        gst::MessageView::Error(e) => Some((
            e.error().to_string(),
            e.debug().map(|d| d.to_string()).unwrap_or_default(),
        )),
        _ => None,
    })
}

pub fn track_stat(finalized: &gst::Structure, track: usize, field: &str) -> u64 {
    let tracks = finalized.get::<gst::Array>("tracks").unwrap();
    tracks.as_slice()[track]
        .get::<gst::Structure>()
        .unwrap()
        .get::<u64>(field)
        .unwrap()
}

/// Reads a WAV file with hound: (channels, rate, per-channel samples).
pub fn read_wav(path: &std::path::Path) -> (u16, u32, Vec<Vec<i16>>) {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    assert_eq!(
        samples.len() as u64,
        reader.duration() as u64 * spec.channels as u64,
        "header and data disagree"
    );
    let mut channels = vec![Vec::new(); spec.channels as usize];
    for frame in samples.chunks_exact(spec.channels as usize) {
        for (c, s) in frame.iter().enumerate() {
            channels[c].push(*s);
        }
    }
    (spec.channels, spec.sample_rate, channels)
}

/// The byte size the header claims for data must match the file's real size.
pub fn assert_header_matches_file(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    let data_pos = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    let claimed =
        u32::from_le_bytes(bytes[data_pos + 4..data_pos + 8].try_into().unwrap()) as usize;
    assert_eq!(
        claimed,
        bytes.len() - data_pos - 8,
        "data size in header vs file"
    );
    let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff, bytes.len() - 8, "RIFF size in header vs file");
}

/// Pushes `buffers` buffers of 160 samples through appsrc `name`; sample k of
/// the stream has value `sign * (k % 30000)`.
pub fn feed_ramp(pipeline: &gst::Pipeline, name: &str, buffers: usize, sign: i16) {
    let ramp: Vec<i16> = (0..buffers * 160)
        .map(|k| sign * ((k % 30000) as i16))
        .collect();
    feed(pipeline, name, 8000, 0, &ramp);
}

/// Pushes `samples` (mono S16 at `rate`) through appsrc `name` in 20 ms
/// buffers stamped from `from_ms`, then EOS.
pub fn feed(pipeline: &gst::Pipeline, name: &str, rate: usize, from_ms: u64, samples: &[i16]) {
    let src = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    for (b, chunk) in samples.chunks(rate / 50).enumerate() {
        let data: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(from_ms + 20 * b as u64));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
}

/// An Ogg Opus file decoded by libopus (`oggdemux ! opusdec`, a separate
/// pipeline) at `rate`: one vector per channel.
pub fn decode_opus(path: &std::path::Path, rate: u32) -> Vec<Vec<i16>> {
    decode_with(path, "oggdemux ! opusdec", rate)
}

/// An MP3 file decoded by libmpg123 (`mpegaudioparse ! mpg123audiodec`).
pub fn decode_mp3(path: &std::path::Path, rate: u32) -> Vec<Vec<i16>> {
    decode_with(path, "mpegaudioparse ! mpg123audiodec", rate)
}

fn decode_with(path: &std::path::Path, decoder: &str, rate: u32) -> Vec<Vec<i16>> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! {decoder} ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate={rate} ! appsink name=out sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let out = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut data: Vec<Vec<i16>> = Vec::new();
    while let Some(sample) = out.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        let channels = gst_audio::AudioInfo::from_caps(sample.caps().unwrap())
            .unwrap()
            .channels() as usize;
        data.resize(channels, Vec::new());
        let map = sample.buffer().unwrap().map_readable().unwrap();
        for (i, s) in map.chunks_exact(2).enumerate() {
            data[i % channels].push(i16::from_le_bytes([s[0], s[1]]));
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    data
}

pub fn appsrc(name: &str) -> String {
    format!(
        "appsrc name={name} format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 ! rec."
    )
}

/// Waits (at most 10 s) for the recording to end, stops the pipeline and
/// returns every bus message.
pub fn finish(pipeline: &gst::Pipeline) -> Vec<gst::Message> {
    let messages = messages_until(
        pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(10),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    messages
}
