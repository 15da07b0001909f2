// SPDX-License-Identifier: MPL-2.0
//! Parallel tracks end together: at EOS a stalled track pads to where a
//! parallel track, fed until that same EOS, ended.
//!
//! Where a stalled track's data would have reached (`reach.rs`) is an
//! estimate: a parallel source started a few milliseconds apart, or one
//! whose last buffer lost the race with EOS on a busy machine, ends up to a
//! buffer away from it. The parallel track's end is a fact, so it is used
//! when there is one.
//!
//! The tracks of one pipeline get one EOS: `send_event(eos)` on a pipeline
//! (`gst-launch-1.0 -e`, an application hanging up) reaches every source,
//! and each pushes that event, seqnum and all. So at EOS every standalone
//! stallfiller notes its end in running time under the EOS's seqnum: a fed
//! track its last real sample, a stalled one its reach. A stalled track
//! then waits, at most `AGREE_WITHIN`, for the other stallfillers of its
//! pipeline to note theirs, and pads to the latest fed end near its reach
//! (or, with no fed track there, the latest stalled reach). A track alone,
//! or ending with an EOS of its own, keeps its reach.
//!
//! The notes are process-wide, bounded in number and age, and taken under
//! one lock that calls nothing out.

use std::collections::VecDeque;
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use callaudio::sync::{lock, wait_timeout};
use gst::ClockTime;

/// The longest a stalled track waits at EOS for its parallel tracks' ends.
/// They come with the same EOS, a thread switch or two apart.
pub const AGREE_WITHIN: Duration = Duration::from_millis(50);
/// Notes older than this are of an EOS long handled.
const KEEP: Duration = Duration::from_secs(2);
/// However many tracks end at once, the notes stay bounded.
const MAX_NOTES: usize = 8192;
/// Ends further from a track's own reach than this, beyond the buffer
/// durations, are not of a parallel track.
const SLACK: ClockTime = ClockTime::from_mseconds(1);

/// One track's end at one EOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// Running time the track ends at.
    pub at: ClockTime,
    /// Its source's buffer duration: how far apart parallel ends may be.
    pub span: ClockTime,
    /// Fed until EOS (its last real sample), or stalled (its reach).
    pub fed: bool,
}

struct Note {
    seqnum: gst::Seqnum,
    who: u64,
    end: End,
    noted: Instant,
}

struct Notes {
    notes: Mutex<VecDeque<Note>>,
    added: Condvar,
}

static NOTES: LazyLock<Notes> = LazyLock::new(|| Notes {
    notes: Mutex::new(VecDeque::new()),
    added: Condvar::new(),
});

/// Notes track `who`'s end at the EOS `seqnum`.
pub fn note(seqnum: gst::Seqnum, who: u64, end: End) {
    let now = Instant::now();
    let mut notes = lock(&NOTES.notes);
    while notes
        .front()
        .is_some_and(|n| now.duration_since(n.noted) > KEEP)
        || notes.len() >= MAX_NOTES
    {
        notes.pop_front();
    }
    notes.push_back(Note {
        seqnum,
        who,
        end,
        noted: now,
    });
    drop(notes);
    NOTES.added.notify_all();
}

/// Where stalled track `who` (already noted as `own`) ends at the EOS
/// `seqnum`: waits until `others` other tracks have noted theirs, at most
/// `within`, then picks (`choose`).
pub fn agree(
    seqnum: gst::Seqnum,
    who: u64,
    own: End,
    others: usize,
    within: Duration,
) -> ClockTime {
    let until = Instant::now() + within;
    let mut notes = lock(&NOTES.notes);
    loop {
        let theirs = || {
            notes
                .iter()
                .filter(move |n| n.seqnum == seqnum && n.who != who)
        };
        let now = Instant::now();
        if theirs().count() >= others || now >= until {
            return choose(own, theirs().map(|n| n.end));
        }
        notes = wait_timeout(&NOTES.added, notes, until - now).0;
    }
}

/// The latest fed end near `own`, else the latest stalled end near it
/// (`own` among them).
pub fn choose(own: End, theirs: impl Iterator<Item = End>) -> ClockTime {
    let near = |e: &End| {
        let apart = own.span.max(e.span).saturating_mul(2).saturating_add(SLACK);
        e.at.nseconds().abs_diff(own.at.nseconds()) <= apart.nseconds()
    };
    let (mut fed, mut stalled) = (None::<ClockTime>, own.at);
    for e in theirs.filter(near) {
        if e.fed {
            fed = Some(fed.map_or(e.at, |f| f.max(e.at)));
        } else {
            stalled = stalled.max(e.at);
        }
    }
    fed.unwrap_or(stalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> ClockTime {
        ClockTime::from_mseconds(v)
    }

    fn end(at: ClockTime, fed: bool) -> End {
        End {
            at,
            span: ms(20),
            fed,
        }
    }

    #[test]
    fn a_fed_end_near_the_reach_wins_even_when_earlier() {
        let own = end(ms(4020), false);
        assert_eq!(choose(own, [end(ms(4001), true)].into_iter()), ms(4001));
        assert_eq!(
            choose(own, [end(ms(4001), true), end(ms(4003), true)].into_iter()),
            ms(4003)
        );
        // A fed end beats a later stalled reach.
        assert_eq!(
            choose(own, [end(ms(4030), false), end(ms(4001), true)].into_iter()),
            ms(4001)
        );
    }

    #[test]
    fn stalled_tracks_alone_take_the_latest_reach() {
        let own = end(ms(4020), false);
        assert_eq!(choose(own, std::iter::empty()), ms(4020));
        assert_eq!(choose(own, [end(ms(4035), false)].into_iter()), ms(4035));
        assert_eq!(choose(own, [end(ms(4005), false)].into_iter()), ms(4020));
    }

    #[test]
    fn ends_far_from_the_reach_are_not_parallel() {
        let own = end(ms(4020), false);
        // Two of the longer buffer duration, plus a millisecond.
        assert_eq!(choose(own, [end(ms(3978), true)].into_iter()), ms(4020));
        assert_eq!(choose(own, [end(ms(3979), true)].into_iter()), ms(3979));
        assert_eq!(choose(own, [end(ms(9000), true)].into_iter()), ms(4020));
        let far = End {
            at: ClockTime::MAX,
            span: ClockTime::MAX,
            fed: true,
        };
        assert_eq!(choose(own, [far].into_iter()), ClockTime::MAX);
    }

    #[test]
    fn agreement_waits_for_the_others_and_no_longer() {
        let seqnum = gst::Seqnum::next();
        let fed = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            note(seqnum, 2, end(ms(4001), true));
        });
        let own = end(ms(4020), false);
        note(seqnum, 1, own);
        let started = Instant::now();
        assert_eq!(agree(seqnum, 1, own, 1, Duration::from_secs(5)), ms(4001));
        assert!(started.elapsed() < Duration::from_secs(1));
        fed.join().unwrap();
        // Nobody else comes: the own reach, after the bound.
        let seqnum = gst::Seqnum::next();
        note(seqnum, 1, own);
        let started = Instant::now();
        assert_eq!(
            agree(seqnum, 1, own, 1, Duration::from_millis(30)),
            ms(4020)
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        // Another EOS's notes are not this one's.
        let other = gst::Seqnum::next();
        note(other, 3, end(ms(4001), true));
        assert_eq!(agree(seqnum, 1, own, 0, Duration::ZERO), ms(4020));
    }

    #[test]
    fn notes_stay_bounded() {
        let seqnum = gst::Seqnum::next();
        for who in 0..(MAX_NOTES as u64 + 10) {
            note(seqnum, who, end(ms(1), true));
        }
        assert!(lock(&NOTES.notes).len() <= MAX_NOTES);
    }
}
