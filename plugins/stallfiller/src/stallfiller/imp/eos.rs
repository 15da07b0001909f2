// SPDX-License-Identifier: MPL-2.0
//! EOS: where the output must end, padded there, then EOS downstream.
//!
//! A live track fed until EOS ends at its last real sample. A stalled one
//! is padded to where its data would have reached by the time EOS came
//! (`reach.rs`), or, standalone in a pipeline, to where a parallel track
//! fed until the same EOS ended (`ending.rs`). A track never fed has
//! nothing to go by: its source's data runs behind the clock by at most the
//! latency it reports now. A non-live stream is padded to its segment stop.

use super::*;
use crate::stallfiller::ending::{self, End};

/// Where a track ends at EOS, before the parallel tracks are heard.
enum Ending {
    /// A live track fed until EOS: nothing is added.
    Fed(End),
    /// A live track stalled or never fed: padded to about here.
    Reach(End),
    /// A non-live stream: padded to this stream position.
    Stop(gst::ClockTime),
}

impl StallFiller {
    pub(super) fn eos(&self, event: gst::Event) -> bool {
        // Read first: the parallel tracks' EOS came at this moment too.
        let now = self.running_time_now();
        // Asked afresh: a source's first answer may predate the caps that
        // fix its buffer size (audiotestsrc answers 1024 samples' worth,
        // then sends 20 ms buffers).
        self.query_upstream();
        let target = self.eos_target(event.seqnum(), now);
        let settings = self.settings();
        let _push = self.push_guard();
        let out = {
            let mut state = self.state();
            let mut out = Output::default();
            if let Some(target) = target
                && state.ensure_timeline(None)
            {
                let timeline = state.timeline.as_ref().unwrap();
                let n = timeline.samples_until(target);
                let max_gap = timeline.layout().time_to_samples(settings.max_gap);
                if n > max_gap {
                    out.messages.push(self.warning(
                        "The tail to pad at EOS is longer than max-gap: not padded",
                        &format!(
                            "output ends at {}, EOS target {target}, max-gap {}",
                            timeline.end(),
                            settings.max_gap
                        ),
                    ));
                } else {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "padding the tail with {n} samples up to {target}"
                    );
                    Self::emit_silence(&mut state, &settings, n, &mut out);
                }
            }
            if let (Some(since), Some(timeline)) =
                (state.stall_since.take(), state.timeline.as_ref())
            {
                let duration = timeline.end().saturating_sub(since);
                state.stats.longest_stall = state.stats.longest_stall.max(duration);
            }
            state.eos = true;
            state.wake_task(&self.cond);
            out
        };
        let _ = self.push_output(out);
        self.srcpad.push_event(event)
    }

    fn running_time_now(&self) -> Option<gst::ClockTime> {
        let state = self.state();
        let (clock, base) = state.clock.as_ref()?;
        clock.time().checked_sub(*base)
    }

    /// The stream position the tail must reach at EOS, if it is padded.
    fn eos_target(
        &self,
        seqnum: gst::Seqnum,
        now: Option<gst::ClockTime>,
    ) -> Option<gst::ClockTime> {
        // An embedding element (callrecsink) ends its tracks together itself.
        let standalone = self.embedded.get().is_none();
        let own = {
            let mut state = self.state();
            match self.ending(&state, now)? {
                Ending::Stop(position) => return Some(position),
                Ending::Fed(end) => {
                    if standalone {
                        ending::note(seqnum, self.id, end);
                    }
                    return None;
                }
                Ending::Reach(own) if standalone => {
                    ending::note(seqnum, self.id, own);
                    // No silence goes out while the others are heard: it
                    // could pass where they ended.
                    state.eos = true;
                    state.wake_task(&self.cond);
                    own
                }
                Ending::Reach(own) => own,
            }
        };
        // Counted only here: it walks the whole pipeline.
        let others = if standalone {
            self.parallel_fillers()
        } else {
            0
        };
        let at = if others > 0 {
            ending::agree(seqnum, self.id, own, others, ending::AGREE_WITHIN)
        } else {
            own.at
        };
        if at != own.at {
            gst::debug!(
                CAT,
                imp = self,
                "ending with a parallel track at {at}, not {}",
                own.at
            );
        }
        self.state()
            .segment
            .as_ref()?
            .position_from_running_time(at)
    }

    fn ending(&self, state: &State, now: Option<gst::ClockTime>) -> Option<Ending> {
        let segment = state.segment.as_ref()?;
        let upstream = state.upstream?;
        if !(upstream.live && state.playing) {
            return segment.stop().map(Ending::Stop);
        }
        let span = state.reach.duration();
        if state.reach.fed() && state.stall_since.is_none() {
            let at = segment.to_running_time(state.timeline.as_ref()?.end())?;
            return Some(Ending::Fed(End {
                at,
                span,
                fed: true,
            }));
        }
        let now = now?;
        Some(Ending::Reach(match state.reach.at(now) {
            Some(at) => End {
                at,
                span,
                fed: false,
            },
            None => End {
                at: now.saturating_sub(upstream.min_latency),
                span: upstream.min_latency,
                fed: false,
            },
        }))
    }

    /// The other standalone stallfillers of this element's pipeline.
    fn parallel_fillers(&self) -> usize {
        let obj = self.obj();
        let Some(mut top) = obj.parent() else {
            return 0;
        };
        while let Some(up) = top.parent() {
            top = up;
        }
        let Ok(bin) = top.downcast::<gst::Bin>() else {
            return 0;
        };
        let mut elements = bin.iterate_recurse();
        let (mut count, mut resyncs) = (0, 0);
        loop {
            match elements.next() {
                Ok(Some(e)) => {
                    count += e
                        .downcast_ref::<super::super::StallFiller>()
                        .is_some_and(|f| f != &*obj && f.imp().embedded.get().is_none())
                        as usize;
                }
                Ok(None) | Err(gst::IteratorError::Error) => return count,
                // A bin changing under us: counted afresh, a few times; a
                // short count only shortens the bounded wait.
                Err(gst::IteratorError::Resync) if resyncs < 8 => {
                    resyncs += 1;
                    elements.resync();
                    count = 0;
                }
                Err(gst::IteratorError::Resync) => return count,
            }
        }
    }
}
