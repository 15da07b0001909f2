// SPDX-License-Identifier: MPL-2.0
//! Every name in the recording directory is treated as hostile: anyone who
//! can write there may have put a symlink, a hard link, a FIFO, a socket or
//! a device where a recording is about to go.
//!
//! - A `.part` is created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`): nothing
//!   that is already there is ever opened, followed, truncated or blocked on.
//!   A `.part` left behind is refused, not removed: it is what a killed
//!   recording leaves, and it plays, so deleting it would lose a recording.
//! - A final name is only ever replaced by `rename(2)`, which replaces the
//!   name itself and never writes through it, and only with `overwrite`;
//!   otherwise `renameat2(RENAME_NOREPLACE)`, so a file that appears there
//!   during the call is not replaced either.
//! - Publishing several files is all or nothing: if any rename or the
//!   directory sync fails, what was renamed is renamed back to `.part`.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What kind of thing stands at a path, in words for an error message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a file"
    }
}

/// The path a recording is written under until it is finished.
pub fn part_path(location: &Path) -> PathBuf {
    let mut name = location.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Creates `path` for writing with permissions exactly `mode`; fails if
/// anything at all is there already, without opening it.
pub fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    // Readable too: an encrypted part is read back at the end (`seal.rs`)
    // through this descriptor, never by its name again.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => {
                let what = std::fs::symlink_metadata(path)
                    .map(|m| kind_of(&m))
                    .unwrap_or("something");
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{what} is already there (a .part is what an unfinished recording \
                         leaves: recover or remove it; nothing there is opened or replaced)"
                    ),
                )
            }
            _ => err,
        })?;
    // The umask may have taken bits away; recordings get exactly `mode`.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Checks, before any audio, that a finished recording can be published at
/// `location`: not a directory, and (without `overwrite`) nothing there.
pub fn check_destination(location: &Path, overwrite: bool) -> io::Result<()> {
    match std::fs::symlink_metadata(location) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory; location must name a file",
        )),
        Ok(_) if overwrite => Ok(()),
        Ok(meta) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is already there; set overwrite=true to replace it",
                kind_of(&meta)
            ),
        )),
    }
}

/// A rename failure, with the path it concerned.
#[derive(Debug)]
pub struct PublishError {
    pub path: PathBuf,
    pub err: io::Error,
}

/// Renames every `(part, location)` pair, then syncs their directories.
/// All or nothing: on any failure the renames already done are undone, so
/// no file is left at a location looking finished.
pub fn publish(pairs: &[(PathBuf, PathBuf)], overwrite: bool) -> Result<(), PublishError> {
    let mut done: Vec<&(PathBuf, PathBuf)> = Vec::with_capacity(pairs.len());
    let result = (|| {
        for pair in pairs {
            let (part, location) = pair;
            rename(part, location, overwrite).map_err(|err| PublishError {
                path: location.clone(),
                err,
            })?;
            done.push(pair);
        }
        let mut dirs: Vec<&Path> = pairs.iter().map(|(_, l)| parent_of(l)).collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            // Makes the renames themselves durable.
            sync_dir(dir).map_err(|err| PublishError {
                path: dir.to_owned(),
                err,
            })?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (part, location) in done.into_iter().rev() {
            // Back under the partial name: the audio stays, unpublished.
            let _ = std::fs::rename(location, part);
        }
    }
    result
}

fn parent_of(location: &Path) -> &Path {
    location
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Opens a directory without following a link or blocking on a FIFO.
fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?
        .sync_all()
}

fn rename(from: &Path, to: &Path, overwrite: bool) -> io::Result<()> {
    if overwrite {
        return std::fs::rename(from, to);
    }
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::AlreadyExists => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file appeared there during the recording; set overwrite=true to replace it",
            )),
            _ => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("callrec-safefs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn creation_never_follows_or_reuses_anything_already_there() {
        let d = dir("create");
        let target = d.join("precious.wav");
        std::fs::write(&target, b"keep me").unwrap();
        let link = d.join("a.part");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = create_exclusive(&link, 0o600).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        let hard = d.join("b.part");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(create_exclusive(&hard, 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        let fresh = d.join("c.part");
        let mut f = create_exclusive(&fresh, 0o640).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn publish_is_all_or_nothing() {
        let d = dir("publish");
        let pairs: Vec<(PathBuf, PathBuf)> = (0..3)
            .map(|i| (d.join(format!("{i}.wav.part")), d.join(format!("{i}.wav"))))
            .collect();
        for (part, _) in &pairs {
            std::fs::write(part, b"audio").unwrap();
        }
        // Someone put a file at the last location during the call.
        std::fs::write(&pairs[2].1, b"theirs").unwrap();
        let err = publish(&pairs, false).unwrap_err();
        assert_eq!(err.path, pairs[2].1);
        for (part, location) in &pairs[..2] {
            assert!(!location.exists(), "{} left published", location.display());
            assert!(part.exists());
        }
        assert_eq!(std::fs::read(&pairs[2].1).unwrap(), b"theirs");
        std::fs::remove_file(&pairs[2].1).unwrap();
        publish(&pairs, false).unwrap();
        assert!(pairs.iter().all(|(p, l)| l.exists() && !p.exists()));
    }

    #[test]
    fn destinations_are_checked_up_front() {
        let d = dir("dest");
        assert!(check_destination(&d.join("new.wav"), false).is_ok());
        let err = check_destination(&d, true).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        std::fs::write(d.join("old.wav"), b"old").unwrap();
        let err = check_destination(&d.join("old.wav"), false).unwrap_err();
        assert!(err.to_string().contains("overwrite"), "{err}");
        assert!(check_destination(&d.join("old.wav"), true).is_ok());
    }
}
