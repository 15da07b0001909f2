// SPDX-License-Identifier: MPL-2.0
//! The bytes of one `.part`, whatever stores them: a plain file, or an age
//! stream (`seal.rs`). Writers append, and rewrite a header at an offset;
//! an encrypted part keeps the rewrite for the end, when it is written
//! into the finished file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::safe_fs;
use super::seal::{Recipients, SealedPart};

pub enum Part {
    /// Unbuffered: writers hand it whole blocks.
    Plain(File),
    Sealed(Box<SealedPart>),
    /// Finished or discarded.
    Closed,
}

impl Part {
    /// Creates `path` exclusively (`safe_fs::create_exclusive`) with
    /// permissions `mode`, encrypted to `recipients` if given.
    pub fn create(path: &Path, mode: u32, recipients: Option<&Recipients>) -> io::Result<Self> {
        let file = safe_fs::create_exclusive(path, mode)?;
        match recipients {
            None => Ok(Part::Plain(file)),
            Some(r) => match SealedPart::create(file, path, mode, r) {
                Ok(sealed) => Ok(Part::Sealed(Box::new(sealed))),
                Err(e) => {
                    let _ = std::fs::remove_file(path);
                    Err(e)
                }
            },
        }
    }

    fn closed() -> io::Error {
        io::Error::other("the file is already closed")
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Part::Plain(f) => f.write_all(bytes),
            Part::Sealed(s) => s.append(bytes),
            Part::Closed => Err(Self::closed()),
        }
    }

    /// Rewrites `bytes` at `offset`: at once in a plain file, in the
    /// finished file of an encrypted one.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        match self {
            Part::Plain(f) => f.write_all_at(bytes, offset),
            Part::Sealed(s) => {
                s.patch(offset, bytes);
                Ok(())
            }
            Part::Closed => Err(Self::closed()),
        }
    }

    /// Whether a rewrite reaches the disk before the end (a crash keeps it).
    pub fn rewrites_in_place(&self) -> bool {
        matches!(self, Part::Plain(_))
    }

    /// The plain file, for hints to the kernel.
    pub fn plain_file(&self) -> Option<&File> {
        match self {
            Part::Plain(f) => Some(f),
            _ => None,
        }
    }

    /// Makes the `.part` at `path` the finished file, durably.
    pub fn finish(&mut self, path: &Path) -> io::Result<()> {
        if let Part::Plain(f) = self {
            return f.sync_all();
        }
        match std::mem::replace(self, Part::Closed) {
            Part::Sealed(s) => s.finish(path),
            _ => Err(Self::closed()),
        }
    }

    /// Closes it and removes whatever it created, `path` (the `.part`)
    /// included.
    pub fn discard(&mut self, path: &Path) -> io::Result<()> {
        if let Part::Sealed(s) = std::mem::replace(self, Part::Closed) {
            s.discard();
        }
        std::fs::remove_file(path)
    }
}
