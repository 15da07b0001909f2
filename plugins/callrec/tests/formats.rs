// SPDX-License-Identifier: MPL-2.0
//! `format=flac`, `opus` and `mp3` keep every guarantee WAV keeps, read
//! back by decoders that are not ours: `claxon` (a FLAC decoder in Rust),
//! libopus through a separate `oggdemux ! opusdec` pipeline, and libmpg123
//! through `mpegaudioparse ! mpg123audiodec`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// Every sample of every channel, and STREAMINFO's total.
fn read_flac(path: &Path) -> (u32, Option<u64>, Vec<Vec<i16>>) {
    let mut reader = claxon::FlacReader::open(path).unwrap();
    let info = reader.streaminfo();
    let channels = info.channels as usize;
    let mut data = vec![Vec::new(); channels];
    for (i, sample) in reader.samples().enumerate() {
        // A killed file may end in the middle of a frame: what came before plays.
        let Ok(sample) = sample else { break };
        data[i % channels].push(sample as i16);
    }
    (info.sample_rate, info.samples, data)
}

/// How often a signal rises from below -2000 to above 2000 per second, in
/// its middle half: the frequency of a loud tone, deaf to a lossy codec's
/// noise near zero and to a decoder's leading and trailing silence.
fn frequency(samples: &[i16], rate: u32) -> f64 {
    let samples = &samples[samples.len() / 4..samples.len() * 3 / 4];
    let mut low = false;
    let mut ups = 0;
    for &s in samples {
        if s < -2000 {
            low = true;
        } else if s > 2000 && low {
            low = false;
            ups += 1;
        }
    }
    ups as f64 * rate as f64 / samples.len() as f64
}

fn tone_track(name: &str, freq: u32) -> String {
    format!(
        "audiotestsrc name={name} num-buffers=100 samplesperbuffer=160 freq={freq} volume=0.5 \
         ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! rec."
    )
}

/// Two tracks of 2 s each, recorded to the end: the file holds both, at
/// the recorded length.
fn record_two_tracks(
    format: &str,
    extension: &str,
    tracks: [String; 2],
) -> (std::path::PathBuf, u64, Vec<gst::Message>) {
    init();
    let dir = tmp_dir(&format!("format-{format}-{extension}"));
    let location = dir.join(format!("call.{extension}"));
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} format={format} {} {}",
        location.display(),
        tracks[0],
        tracks[1]
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    if tracks[0].starts_with("appsrc") {
        feed_ramp(&pipeline, "a", 100, 1);
        feed_ramp(&pipeline, "b", 100, -1);
    }
    let messages = finish(&pipeline);
    assert_eq!(error_text(&messages), None);
    let finalized =
        element_message(&messages, "callrecsink-finalized").expect("callrecsink-finalized");
    assert!(location.exists() && !part(&location).exists());
    (location, finalized.get::<u64>("frames").unwrap(), messages)
}

#[test]
fn flac_is_lossless_and_its_streaminfo_counts_every_sample() {
    let (location, frames, _) = record_two_tracks("flac", "flac", [appsrc("a"), appsrc("b")]);
    assert_eq!(frames, 16000);
    let (rate, total, data) = read_flac(&location);
    assert_eq!(rate, 8000);
    assert_eq!(
        total,
        Some(16000),
        "STREAMINFO's total was written at the end"
    );
    let ramp: Vec<i16> = (0..16000).map(|k| (k % 30000) as i16).collect();
    let down: Vec<i16> = ramp.iter().map(|s| -s).collect();
    assert_eq!(data, vec![ramp, down]);
}

/// GStreamer's warnings in this process that contain `text`.
fn gstreamer_warnings(text: &'static str) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    glib::log_set_handler(
        Some("GStreamer"),
        glib::LogLevels::LEVEL_WARNING,
        false,
        false,
        move |_, _, message| {
            if message.contains(text) {
                keep.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(message.to_owned());
            }
        },
    );
    seen
}

/// A recording shorter than one FLAC frame (and one just past it) is
/// encoded with its events in order, to the sample.
#[test]
fn a_flac_shorter_than_a_frame_is_encoded_in_order() {
    init();
    let warnings = gstreamer_warnings("Sticky event misordering");
    for buffers in [1, 5, 18] {
        let dir = tmp_dir(&format!("format-flac-short-{buffers}"));
        let location = dir.join("call.flac");
        let pipeline = launch(&format!(
            "callrecsink name=rec location={} format=flac \
             audiotestsrc num-buffers={buffers} samplesperbuffer=160 volume=0.5 \
             ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! rec.",
            location.display()
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        let messages = finish(&pipeline);
        assert_eq!(error_text(&messages), None);
        let (_, total, data) = read_flac(&location);
        assert_eq!(total, Some(160 * buffers), "{buffers} buffers");
        assert_eq!(data[0].len() as u64, 160 * buffers, "{buffers} buffers");
    }
    let warnings = warnings.lock().unwrap().clone();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn opus_decodes_to_the_recorded_length_to_the_sample() {
    let (location, frames, _) = record_two_tracks(
        "opus",
        "opus",
        [tone_track("a", 440), tone_track("b", 1000)],
    );
    assert_eq!(frames, 16000);
    let data = decode_opus(&location, 8000);
    assert_eq!(data.len(), 2);
    assert_eq!(
        data[0].len() as u64,
        frames,
        "pre-skip and end trimming make the decoded length the recorded length"
    );
    let (left, right) = (frequency(&data[0], 8000), frequency(&data[1], 8000));
    println!("decoded tones: left {left:.0} Hz, right {right:.0} Hz");
    assert!((left - 440.0).abs() < 10.0, "left channel is {left} Hz");
    assert!((right - 1000.0).abs() < 10.0, "right channel is {right} Hz");
    // 2 s at 32 kbit/s is about 8 KB; WAV would be 64 KB.
    let size = std::fs::metadata(&location).unwrap().len();
    println!("2 s of stereo Opus: {size} bytes");
    assert!(size < 16_000, "{size} bytes");
}

/// What an MP3 decoder adds to a recording: LAME's encoder delay (576 +
/// 529 samples) and the padding of the last frame (576 at 8 kHz), with room.
const MP3_SLACK: u64 = 2400;

/// MP3 (two channels at most): both tones, at their frequencies, and the
/// recorded length plus no more than the encoder's delay and padding.
#[test]
fn mp3_decodes_with_both_tracks_and_the_encoders_delay_at_most() {
    let (location, frames, _) =
        record_two_tracks("mp3", "mp3", [tone_track("a", 440), tone_track("b", 1000)]);
    assert_eq!(frames, 16000);
    let data = decode_mp3(&location, 8000);
    assert_eq!(data.len(), 2);
    let decoded = data[0].len() as u64;
    println!("mp3: {decoded} frames decoded of {frames} recorded");
    assert!(
        (frames..=frames + MP3_SLACK).contains(&decoded),
        "{decoded}"
    );
    let (left, right) = (frequency(&data[0], 8000), frequency(&data[1], 8000));
    assert!((left - 440.0).abs() < 10.0, "left channel is {left} Hz");
    assert!((right - 1000.0).abs() < 10.0, "right channel is {right} Hz");
}

/// Stopping a live recording without EOS finalizes it: the file decodes to
/// exactly the frames the finalized message counts.
#[test]
fn stop_without_eos_finalizes_every_format() {
    init();
    for format in ["flac", "opus", "mp3"] {
        let dir = tmp_dir(&format!("stop-{format}"));
        let location = dir.join(format!("call.{format}"));
        let pipeline = launch(&format!(
            "callrecsink name=rec location={} format={format} \
             audiotestsrc name=src is-live=true samplesperbuffer=160 freq=440 ! audio/x-raw,rate=8000,channels=1 ! rec.",
            location.display()
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        // Run until a second of audio was recorded, then stop.
        let src = pipeline.by_name("src").unwrap();
        let pad = src.static_pad("src").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if info.buffer().and_then(|b| b.pts()) >= Some(gst::ClockTime::SECOND) {
                let _ = tx.send(());
                return gst::PadProbeReturn::Remove;
            }
            gst::PadProbeReturn::Ok
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        pipeline.set_state(gst::State::Null).unwrap();
        let messages = drain(&pipeline);
        let finalized = element_message(&messages, "callrecsink-finalized")
            .unwrap_or_else(|| panic!("{format}: no finalized message"));
        assert_eq!(finalized.get::<String>("reason").unwrap(), "stopped");
        let frames = finalized.get::<u64>("frames").unwrap();
        assert!(frames >= 8000, "{format}: {frames} frames");
        let decoded = match format {
            "flac" => read_flac(&location).2[0].len() as u64,
            "mp3" => decode_mp3(&location, 8000)[0].len() as u64,
            _ => decode_opus(&location, 8000)[0].len() as u64,
        };
        if format == "mp3" {
            assert!(
                (frames..=frames + MP3_SLACK).contains(&decoded),
                "mp3: decoded {decoded} of {frames} finalized frames"
            );
        } else {
            assert_eq!(decoded, frames, "{format}: decoded vs finalized frames");
        }
    }
}

/// No audio is a failure on the bus, never a file that looks saved.
#[test]
fn no_audio_is_a_failure_in_every_format() {
    init();
    for format in ["flac", "opus", "mp3"] {
        let dir = tmp_dir(&format!("empty-{format}"));
        let location = dir.join(format!("call.{format}"));
        let pipeline = launch(&format!(
            "callrecsink name=rec location={} format={format} {}",
            location.display(),
            appsrc("a")
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        pipeline
            .by_name("a")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap()
            .end_of_stream()
            .unwrap();
        let messages = finish(&pipeline);
        assert!(
            element_message(&messages, "callrecsink-failed").is_some(),
            "{format}: no callrecsink-failed"
        );
        assert!(error_text(&messages).is_some(), "{format}: no ERROR");
        assert!(
            !location.exists() && !part(&location).exists(),
            "{format}: a file was left"
        );
    }
}

/// A location whose extension names another format is a WARNING (the
/// property decides), and the recording is still made.
#[test]
fn an_extension_that_disagrees_is_a_warning() {
    let (location, _, messages) = record_two_tracks("flac", "wav", [appsrc("a"), appsrc("b")]);
    let warning = messages.iter().find_map(|m| match m.view() {
        gst::MessageView::Warning(w) => Some(w.error().to_string()),
        _ => None,
    });
    assert!(
        warning
            .as_deref()
            .is_some_and(|w| w.contains("does not end in .flac")),
        "{warning:?}"
    );
    assert_eq!(read_flac(&location).1, Some(16000));
}

/// Opus holds up to 8 tracks in one file (unpositioned channels, mapping
/// family 255): each decodes back, by libopus, as its own tone, at the
/// recorded length.
#[test]
fn opus_records_up_to_eight_tracks_in_one_file() {
    init();
    for tracks in [3u32, 8] {
        let dir = tmp_dir(&format!("opus-{tracks}"));
        let location = dir.join("call.opus");
        let inputs: String = (0..tracks)
            .map(|i| {
                format!(
                    " {}",
                    tone_track(&format!("t{i}"), 300 + 100 * i)
                        .replace("rec.", &format!("rec.sink_{i}"))
                )
            })
            .collect();
        let pipeline = launch(&format!(
            "callrecsink name=rec location={} format=opus{inputs}",
            location.display()
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        let messages = finish(&pipeline);
        assert_eq!(error_text(&messages), None, "{tracks} tracks");
        let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
        let frames = finalized.get::<u64>("frames").unwrap();
        assert_eq!(frames, 16000);
        let data = decode_opus(&location, 8000);
        assert_eq!(data.len(), tracks as usize);
        for (i, channel) in data.iter().enumerate() {
            assert_eq!(channel.len() as u64, frames, "{tracks} tracks, channel {i}");
            let f = frequency(channel, 8000);
            let want = (300 + 100 * i) as f64;
            assert!(
                (f - want).abs() < 15.0,
                "{tracks} tracks: channel {i} is {f} Hz, not {want}"
            );
        }
    }
}

/// FLAC and Opus hold no more than 8 channels and MP3 no more than 2: more
/// tracks in one such file are refused at start, with a way out in the
/// text that is one (never a format that cannot hold them either).
#[test]
fn formats_refuse_more_tracks_than_their_channels_in_one_file() {
    init();
    for (format, tracks) in [("flac", 9), ("opus", 9), ("mp3", 3)] {
        let dir = tmp_dir(&format!("{format}-{tracks}"));
        let location = dir.join(format!("call.{format}"));
        let inputs: String = (0..tracks)
            .map(|i| {
                format!(
                    " audiotestsrc num-buffers=10 ! audio/x-raw,rate=8000,channels=1 ! rec.sink_{i}"
                )
            })
            .collect();
        let pipeline = launch(&format!(
            "callrecsink name=rec location={} format={format}{inputs}",
            location.display()
        ));
        assert!(pipeline.set_state(gst::State::Playing).is_err(), "{format}");
        let messages = drain(&pipeline);
        pipeline.set_state(gst::State::Null).unwrap();
        let (text, debug) = error_text(&messages).expect("an ERROR");
        assert!(
            text.contains(&format!("format={format} holds at most")),
            "{text}"
        );
        assert!(debug.contains("mode=separate"), "{debug}");
        if tracks > 8 {
            assert!(
                !debug.contains("flac") && !debug.contains("opus"),
                "{debug}"
            );
        }
        assert!(!part(&location).exists());
    }
}
