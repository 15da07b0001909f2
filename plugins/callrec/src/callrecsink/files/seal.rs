// SPDX-License-Identifier: MPL-2.0
//! Encryption at rest: with `recipients` or `recipients-file` set, every
//! file a recording writes is an age v1 file (the `age` crate; Debian's
//! `age -d -i KEY` reads it), and no plaintext audio ever reaches the disk.
//!
//! An age stream only appends, but a WAV's sizes and a FLAC's total are
//! known only at the end. So the `.part` is an age file to the recipients
//! and to an X25519 identity made for this file that lives only in memory;
//! what must be rewritten at the end is kept in memory as patches. At the
//! end, the `.part` is read back with that identity, patched, and encrypted
//! under a fresh file key (age draws one per file, with a random nonce) to
//! the recipients alone, into `<location>.part.seal`, which then replaces
//! the `.part`. Two plaintexts are never encrypted under one key.
//!
//! What a crash leaves is the `.part`: the recipients decrypt every whole
//! 64 KiB chunk of it (age reports the truncation after them).
//!
//! Recipients are age's classic X25519 and SSH ones, which `age` 0.13
//! marks deprecated in favour of post-quantum keys that Debian 12's `age`
//! 1.1.1 cannot decrypt; hence the `allow` below.
#![allow(deprecated)]

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::Recipient;

use super::safe_fs;

/// The most recipients a recording is encrypted to; each costs a stanza in
/// every file's header.
const MAX_RECIPIENTS: usize = 64;
/// The longest `recipients-file` read: a public key is under 1 kB.
const MAX_RECIPIENTS_FILE: u64 = 256 * 1024;

/// The public keys every file of a recording is encrypted to.
#[derive(Clone)]
pub struct Recipients(Arc<Vec<Box<dyn Recipient + Send + Sync>>>);

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} recipient(s)", self.0.len())
    }
}

impl PartialEq for Recipients {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// An entry shortened for an error message: public keys, but an operator
/// may have pasted a secret key where a public one goes.
fn shown(entry: &str) -> String {
    if entry.starts_with("AGE-SECRET-KEY-") || entry.contains("PRIVATE KEY") {
        return "a secret key (give the public key: age-keygen -y, or the .pub file)".into();
    }
    let short: String = entry.chars().take(24).collect();
    if short.len() < entry.len() {
        format!("\"{short}...\"")
    } else {
        format!("\"{short}\"")
    }
}

fn parse_one(entry: &str) -> Result<Box<dyn Recipient + Send + Sync>, String> {
    if entry.starts_with("age1pq") {
        Err(format!(
            "{} is a post-quantum age key, which Debian 12's age cannot decrypt: give an age1... X25519 key (age-keygen) or an SSH key",
            shown(entry)
        ))
    } else if entry.starts_with("age1") {
        entry
            .parse::<age::x25519::Recipient>()
            .map(|r| Box::new(r) as _)
            .map_err(|e| format!("{} is not an age X25519 public key: {e}", shown(entry)))
    } else if entry.starts_with("ssh-") {
        entry
            .parse::<age::ssh::Recipient>()
            .map(|r| Box::new(r) as _)
            .map_err(|e| {
                format!(
                    "{} is not an SSH public key age takes (ssh-ed25519, ssh-rsa): {e:?}",
                    shown(entry)
                )
            })
    } else {
        Err(format!(
            "{} is not a public key: give age1... (age-keygen) or ssh-ed25519 / ssh-rsa ...",
            shown(entry)
        ))
    }
}

/// Parses `recipients` (entries separated by commas or new lines) and the
/// contents of `recipients-file` (one per line, `#` comments, as `age -R`
/// reads). `None` when neither is set; an error names the property and
/// the entry.
pub fn parse(recipients: Option<&str>, file: Option<&Path>) -> Result<Option<Recipients>, String> {
    if recipients.is_none() && file.is_none() {
        return Ok(None);
    }
    let mut all = Vec::new();
    let mut add = |entries: &mut dyn Iterator<Item = &str>, from: &str| -> Result<(), String> {
        for entry in entries
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'))
        {
            if all.len() == MAX_RECIPIENTS {
                return Err(format!("{from}: more than {MAX_RECIPIENTS} recipients"));
            }
            all.push(parse_one(entry).map_err(|e| format!("{from}: {e}"))?);
        }
        Ok(())
    };
    if let Some(text) = recipients {
        add(&mut text.split([',', '\n']), "recipients")?;
    }
    if let Some(path) = file {
        // Configuration, not the recording directory: a symlink (a
        // Kubernetes secret mount) is followed.
        let from = format!("recipients-file {}", path.display());
        let mut text = String::new();
        File::open(path)
            .and_then(|f| f.take(MAX_RECIPIENTS_FILE + 1).read_to_string(&mut text))
            .map_err(|e| format!("{from}: cannot be read: {e}"))?;
        if text.len() as u64 > MAX_RECIPIENTS_FILE {
            return Err(format!("{from}: longer than {MAX_RECIPIENTS_FILE} bytes"));
        }
        add(&mut text.lines(), &from)?;
    }
    if all.is_empty() {
        return Err("recipients / recipients-file: set, but no recipient in them".into());
    }
    Ok(Some(Recipients(Arc::new(all))))
}

/// The `.part` of an encrypted file while it is written.
pub struct SealedPart {
    stream: age::stream::StreamWriter<File>,
    /// Opens the `.part` at the end; never leaves memory.
    identity: age::x25519::Identity,
    recipients: Recipients,
    /// Where the finished file is written before it replaces the `.part`,
    /// created with it so nothing can stand there by the end.
    seal: (File, PathBuf),
    /// Bytes rewritten at the end: (offset, bytes), in order.
    patches: Vec<(u64, Vec<u8>)>,
}

/// `<part>.seal`.
fn seal_path(part: &Path) -> PathBuf {
    let mut name = part.as_os_str().to_owned();
    name.push(".seal");
    PathBuf::from(name)
}

fn encryption_failed(e: age::EncryptError) -> io::Error {
    io::Error::other(format!("encrypting: {e}"))
}

impl SealedPart {
    /// Starts the age stream in `file` (the `.part`, created exclusively at
    /// `part` with `mode`).
    pub fn create(file: File, part: &Path, mode: u32, recipients: &Recipients) -> io::Result<Self> {
        let seal_path = seal_path(part);
        let seal = safe_fs::create_exclusive(&seal_path, mode)?;
        let identity = age::x25519::Identity::generate();
        let own = identity.to_public();
        let stream = age::Encryptor::with_recipients(
            recipients
                .0
                .iter()
                .map(|r| r.as_ref() as &dyn Recipient)
                .chain(std::iter::once(&own as &dyn Recipient)),
        )
        .map_err(encryption_failed)
        .and_then(|e| e.wrap_output(file));
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                drop(seal);
                let _ = std::fs::remove_file(&seal_path);
                return Err(e);
            }
        };
        Ok(SealedPart {
            stream,
            identity,
            recipients: recipients.clone(),
            seal: (seal, seal_path),
            patches: Vec::new(),
        })
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// `bytes` replace what was written at `offset`, in the finished file.
    pub fn patch(&mut self, offset: u64, bytes: &[u8]) {
        self.patches.push((offset, bytes.to_vec()));
    }

    /// Ends the `.part`'s stream, writes the finished file (patched, to the
    /// recipients alone) and puts it in the `.part`'s place, durably.
    pub fn finish(self, part: &Path) -> io::Result<()> {
        let seal_path = self.seal.1.clone();
        let finished = self.reseal(part);
        if finished.is_err() {
            let _ = std::fs::remove_file(&seal_path);
        }
        finished
    }

    fn reseal(self, part: &Path) -> io::Result<()> {
        let SealedPart {
            stream,
            identity,
            recipients,
            seal: (seal, seal_path),
            patches,
        } = self;
        let mut file = stream.finish()?;
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
        let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(1 << 16, file))
            .map_err(|e| io::Error::other(format!("reading back the encrypted part: {e}")))?;
        let mut plain = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| io::Error::other(format!("reading back the encrypted part: {e}")))?;
        let mut out = age::Encryptor::with_recipients(
            recipients.0.iter().map(|r| r.as_ref() as &dyn Recipient),
        )
        .map_err(encryption_failed)?
        .wrap_output(io::BufWriter::with_capacity(1 << 16, seal))?;
        copy_patched(&mut plain, &mut out, &patches)?;
        let seal = out.finish()?.into_inner().map_err(|e| e.into_error())?;
        seal.sync_all()?;
        drop(seal);
        std::fs::rename(&seal_path, part)
    }

    /// Removes the file the finished one was to be written to.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.seal.1);
    }
}

/// Copies `from` to `to`, the bytes at each patch's offset replaced.
fn copy_patched(
    from: &mut impl Read,
    to: &mut impl Write,
    patches: &[(u64, Vec<u8>)],
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let chunk = &mut buf[..n];
        let end = at + n as u64;
        for (offset, bytes) in patches {
            let (start, stop) = (*offset, offset.saturating_add(bytes.len() as u64));
            if stop <= at || start >= end {
                continue;
            }
            let from_chunk = start.max(at);
            let to_chunk = stop.min(end);
            let src = (from_chunk - start) as usize..(to_chunk - start) as usize;
            chunk[(from_chunk - at) as usize..(to_chunk - at) as usize]
                .copy_from_slice(&bytes[src]);
        }
        to.write_all(chunk)?;
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_land_across_chunk_boundaries() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let patches = vec![
            (3, vec![9; 4]),
            ((1 << 16) - 2, vec![7; 5]),
            (199_998, vec![5; 2]),
        ];
        let mut out = Vec::new();
        copy_patched(&mut &data[..], &mut out, &patches).unwrap();
        let mut expected = data.clone();
        for (offset, bytes) in &patches {
            let o = *offset as usize;
            expected[o..o + bytes.len()].copy_from_slice(bytes);
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn entries_are_checked_and_named() {
        assert!(parse(None, None).unwrap().is_none());
        let key = age::x25519::Identity::generate().to_public().to_string();
        let r = parse(Some(&format!(" {key} ,\n")), None).unwrap().unwrap();
        assert_eq!(r.0.len(), 1);
        let err = parse(Some(&format!("{key},age1nope")), None).unwrap_err();
        assert!(
            err.starts_with("recipients: \"age1nope\" is not an age X25519"),
            "{err}"
        );
        let err = parse(Some("AGE-SECRET-KEY-1QQQQ"), None).unwrap_err();
        assert!(
            err.contains("a secret key") && !err.contains("QQQQ"),
            "{err}"
        );
        let err = parse(Some(" , "), None).unwrap_err();
        assert!(err.contains("no recipient"), "{err}");
        let err = parse(None, Some(Path::new("/nonexistent/keys.txt"))).unwrap_err();
        assert!(
            err.starts_with("recipients-file /nonexistent/keys.txt: cannot be read"),
            "{err}"
        );
        let many = vec![key.as_str(); MAX_RECIPIENTS + 1].join(",");
        assert!(parse(Some(&many), None).unwrap_err().contains("more than"));
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore = "a measurement"]
    fn encrypts_fast() {
        let key = age::x25519::Identity::generate().to_public();
        let mut w = age::Encryptor::with_recipients(std::iter::once(&key as &dyn Recipient))
            .unwrap()
            .wrap_output(io::sink())
            .unwrap();
        let block = vec![7u8; 4096];
        let t = std::time::Instant::now();
        for _ in 0..25_000 {
            w.write_all(&block).unwrap();
        }
        w.finish().unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("{:.0} MB/s", 102.4 / s);
    }

    /// The end of a 1-hour 8 kHz stereo WAV (115.2 MB): read back,
    /// re-encrypted, fsynced.
    #[test]
    #[ignore = "a measurement"]
    fn finishes_an_hour() {
        let dir = std::env::temp_dir().join(format!("callrec-seal-hour-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let part = dir.join("call.wav.part");
        let key = age::x25519::Identity::generate().to_public();
        let recipients = Recipients(Arc::new(vec![Box::new(key)]));
        let file = safe_fs::create_exclusive(&part, 0o600).unwrap();
        let mut sealed = SealedPart::create(file, &part, 0o600, &recipients).unwrap();
        let block = vec![3u8; 32_000];
        for _ in 0..3600 {
            sealed.append(&block).unwrap();
        }
        sealed.patch(0, b"RIFF");
        let t = std::time::Instant::now();
        sealed.finish(&part).unwrap();
        println!("finished 115.2 MB in {:.2} s", t.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
