// SPDX-License-Identifier: MPL-2.0
//! `recipients` / `recipients-file`: every file is an age file that
//! Debian's `age` CLI decrypts to exactly the file the same recording
//! writes unencrypted, no plaintext audio is ever on disk, and a recipient
//! that does not parse is an ERROR before anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// An age X25519 key pair made by `age-keygen`: (identity file, public key).
fn age_key(dir: &Path) -> (PathBuf, String) {
    let identity = dir.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen (scripts/setup.sh installs age)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    let public = text
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("age-keygen prints the public key")
        .to_owned();
    (identity, public)
}

/// An ed25519 SSH key pair made by `ssh-keygen`: (private key, public line).
fn ssh_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// `age -d -i identity file`: the plaintext, and whether age said it was whole.
fn age_decrypt(identity: &Path, file: &Path) -> (Vec<u8>, bool, String) {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .expect("age");
    (
        out.stdout,
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Records two deterministic tracks (1 s each) to `location` with extra
/// properties `props`; the bus messages.
fn record(location: &Path, props: &str) -> Vec<gst::Message> {
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {props} \
         audiotestsrc num-buffers=50 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec. \
         audiotestsrc num-buffers=50 samplesperbuffer=160 freq=660 ! audio/x-raw,rate=8000,channels=1 ! rec.",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = finish(&pipeline);
    assert!(
        error_text(&messages).is_none(),
        "{:?}",
        error_text(&messages)
    );
    messages
}

/// The same recording, plain and encrypted to `public`: each encrypted
/// file is an age file whose plaintext is the plain file, byte for byte.
fn decrypts_to_the_plain_recording(test: &str, format: &str, mode: &str, key: (PathBuf, String)) {
    init();
    let dir = tmp_dir(test);
    let (identity, public) = key;
    let name = if mode == "separate" {
        "call-%u"
    } else {
        "call"
    };
    let plain = dir.join("plain");
    let sealed = dir.join("sealed");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&sealed).unwrap();
    let props = format!("format={format} mode={mode}");
    record(&plain.join(format!("{name}.{format}")), &props);
    record(
        &sealed.join(format!("{name}.{format}")),
        &format!("{props} recipients=\"{public}\""),
    );
    let files = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let names = files(&plain);
    assert_eq!(names.len(), if mode == "separate" { 2 } else { 1 });
    assert_eq!(files(&sealed), names, "the same files, nothing else");
    for name in names {
        let plain = std::fs::read(plain.join(&name)).unwrap();
        let sealed = sealed.join(&name);
        let head = std::fs::read(&sealed).unwrap();
        assert!(
            head.starts_with(b"age-encryption.org/v1\n"),
            "{name:?} is an age file"
        );
        let (decrypted, whole, stderr) = age_decrypt(&identity, &sealed);
        assert!(whole, "{name:?}: {stderr}");
        assert_eq!(decrypted.len(), plain.len(), "{name:?}");
        assert!(decrypted == plain, "{name:?} decrypts to the plain file");
    }
}

#[test]
fn wav_decrypts_with_the_age_cli_to_the_plain_recording() {
    let dir = tmp_dir("wav-key");
    decrypts_to_the_plain_recording("wav", "wav", "interleaved", age_key(&dir));
}

#[test]
fn flac_decrypts_with_the_age_cli_to_the_plain_recording() {
    let dir = tmp_dir("flac-key");
    decrypts_to_the_plain_recording("flac", "flac", "interleaved", age_key(&dir));
}

#[test]
fn separate_files_decrypt_with_an_ssh_key() {
    let dir = tmp_dir("ssh-key");
    decrypts_to_the_plain_recording("separate", "wav", "separate", ssh_key(&dir));
}

#[test]
fn a_recipients_file_is_read_as_age_reads_it() {
    init();
    let dir = tmp_dir("recipients-file");
    let (identity, public) = age_key(&dir);
    let (_, other) = ssh_key(&dir);
    let file = dir.join("recipients.txt");
    std::fs::write(&file, format!("# the archive key\n{public}\n\n{other}\n")).unwrap();
    let location = dir.join("call.wav");
    record(&location, &format!("recipients-file={}", file.display()));
    let (decrypted, whole, stderr) = age_decrypt(&identity, &location);
    assert!(whole, "{stderr}");
    let out = dir.join("decrypted.wav");
    std::fs::write(&out, decrypted).unwrap();
    let (channels, rate, data) = read_wav(&out);
    assert_eq!((channels, rate, data[0].len()), (2, 8000, 8000));
}

/// A run of 16 samples that only the test feeds: the needle.
fn needle() -> Vec<u8> {
    (0..16i16)
        .flat_map(|k| (12_345 + 97 * k).to_le_bytes())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (not the key) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && contains(&std::fs::read(p).unwrap(), needle))
        .collect()
}

/// A live recording of the needle, over and over; scans the directory
/// while it records and after: the files that held the needle.
fn scan_while_recording(dir: &Path, props: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} header-interval=100000000 {props} \
         appsrc name=a is-live=true do-timestamp=true format=time \
         caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 ! rec.",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline
        .by_name("a")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let buffer: Vec<u8> = needle().repeat(10); // 160 samples, 20 ms
    let mut during = Vec::new();
    // 6 s: past one 64 KiB chunk of age's stream (4.1 s of 8 kHz mono).
    for k in 0..300 {
        src.push_buffer(gst::Buffer::from_slice(buffer.clone()))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if k % 50 == 49 {
            during.extend(files_holding(dir, &needle()));
        }
    }
    src.end_of_stream().unwrap();
    let messages = finish(&pipeline);
    assert!(
        error_text(&messages).is_none(),
        "{:?}",
        error_text(&messages)
    );
    assert!(location.exists(), "published");
    (during, files_holding(dir, &needle()))
}

#[test]
fn no_plaintext_audio_reaches_the_disk() {
    init();
    let dir = tmp_dir("no-plaintext");
    let (identity, public) = age_key(&dir);
    // The scan finds the needle where it is: in a plain recording.
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let (during, after) = scan_while_recording(&plain, "");
    assert!(
        !during.is_empty() && !after.is_empty(),
        "the scan finds plain audio"
    );
    let sealed = dir.join("sealed");
    std::fs::create_dir_all(&sealed).unwrap();
    let (during, after) = scan_while_recording(&sealed, &format!("recipients={public}"));
    assert_eq!(
        during,
        Vec::<PathBuf>::new(),
        "plaintext on disk while recording"
    );
    assert_eq!(after, Vec::<PathBuf>::new(), "plaintext on disk after");
    // And the audio is in there, for the key's holder.
    let (decrypted, whole, stderr) = age_decrypt(&identity, &sealed.join("call.wav"));
    assert!(whole, "{stderr}");
    assert!(contains(&decrypted, &needle()));
}

/// A recipient that cannot be used fails the start, names the property and
/// the entry, and writes nothing.
fn refused(test: &str, props: &str, expected: &[&str]) {
    init();
    let dir = tmp_dir(test);
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {props} \
         audiotestsrc num-buffers=5 ! audio/x-raw,rate=8000,channels=1 ! rec.",
        dir.join("call.wav").display()
    ));
    assert!(pipeline.set_state(gst::State::Paused).is_err());
    let messages = drain(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let (text, _) = error_text(&messages).expect("an ERROR");
    for e in expected {
        assert!(text.contains(e), "{text:?} names {e:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "nothing written");
}

#[test]
fn a_bad_recipient_is_an_error_before_anything_is_written() {
    refused(
        "bad-recipient",
        "recipients=age1notakey",
        &[
            "recipients",
            "\"age1notakey\"",
            "not an age X25519 public key",
        ],
    );
}

#[test]
fn a_secret_key_given_as_recipient_is_refused_without_echoing_it() {
    init();
    let dir = tmp_dir("secret-given");
    let (identity, _) = age_key(&dir);
    let secret = std::fs::read_to_string(&identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    std::fs::remove_file(&identity).unwrap();
    refused(
        "secret-given",
        &format!("recipients={secret}"),
        &["a secret key"],
    );
}

#[test]
fn an_unreadable_recipients_file_is_an_error() {
    refused(
        "unreadable-file",
        "recipients-file=/nonexistent/recipients.txt",
        &[
            "recipients-file /nonexistent/recipients.txt",
            "cannot be read",
        ],
    );
}

#[test]
fn an_empty_recipient_list_is_an_error() {
    refused("empty-list", "recipients=\",\"", &["no recipient"]);
}

#[test]
fn a_stop_without_eos_publishes_an_encrypted_file_and_no_audio_publishes_none() {
    init();
    let dir = tmp_dir("stop-and-silence");
    let (identity, public) = age_key(&dir);
    // Stopped while live, without EOS: finalized, encrypted, whole.
    let location = dir.join("stopped.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} recipients={public} \
         audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec.",
        location.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    pipeline.set_state(gst::State::Null).unwrap();
    let messages = drain(&pipeline);
    assert!(element_message(&messages, "callrecsink-finalized").is_some());
    let (decrypted, whole, stderr) = age_decrypt(&identity, &location);
    assert!(whole, "{stderr}");
    let out = dir.join("stopped-decrypted.wav");
    std::fs::write(&out, decrypted).unwrap();
    let (_, _, data) = read_wav(&out);
    assert!(data[0].len() >= 4000, "{} frames", data[0].len());
    // No audio at all: an ERROR, and nothing left, encrypted or not.
    let silent = dir.join("silent");
    std::fs::create_dir_all(&silent).unwrap();
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} recipients={public} start-timeout=300000000 \
         appsrc name=a is-live=true format=time \
         caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 ! rec.",
        silent.join("call.wav").display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = finish(&pipeline);
    assert!(error_text(&messages).is_some(), "no audio is an ERROR");
    let left: Vec<_> = std::fs::read_dir(&silent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "nothing published, nothing left"
    );
}

#[test]
fn an_encrypted_recording_is_given_the_time_to_rewrite_it_at_the_end() {
    init();
    let dir = tmp_dir("seal-time");
    let (identity, public) = age_key(&dir);
    let location = dir.join("long.wav");
    // 8 MB (500 s of 8 kHz mono): read back and re-encrypted at the end,
    // far longer than a 20 ms finalize-timeout.
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} recipients={public} finalize-timeout=20000000 {}",
        location.display(),
        appsrc("a")
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples: Vec<i16> = (0..4_000_000).map(|k| ((k % 2000) as i16) - 1000).collect();
    feed(&pipeline, "a", 8000, 0, &samples);
    let messages = finish(&pipeline);
    assert!(
        error_text(&messages).is_none(),
        "{:?}",
        error_text(&messages)
    );
    let (decrypted, whole, stderr) = age_decrypt(&identity, &location);
    assert!(whole, "{stderr}");
    let out = dir.join("long-decrypted.wav");
    std::fs::write(&out, decrypted).unwrap();
    let (_, _, data) = read_wav(&out);
    assert_eq!(data[0].len(), samples.len());
}
