// SPDX-License-Identifier: MPL-2.0
//! The fill scheduler: when the next sample is overdue (`deadline`), the
//! deadline armed on the clock's watch (`watch.rs`), and the turn that fills
//! silence once it passes, on the pad's task or a shared worker. What it
//! fills goes out through the same `push_lock` as real data (`imp.rs`).

use super::*;

impl StallFiller {
    /// Clock time at which the next sample is overdue, if the task should be
    /// waiting for it at all. Before the first buffer of a segment that is
    /// the segment's start: a leg that never sends audio is filled too.
    pub(super) fn deadline(&self, state: &State, settings: &Settings) -> Option<gst::ClockTime> {
        if !state.playing
            || state.flushing
            || state.eos
            || state.task_stop
            || state.flow_error.is_some()
            || state.unreachable
        {
            return None;
        }
        let upstream = state.upstream.filter(|u| u.live)?;
        let segment = state.segment.as_ref()?;
        let end = match state.timeline.as_ref() {
            Some(timeline) => timeline.end(),
            None => {
                state.layout.as_ref()?;
                segment.start()?
            }
        };
        let running_time = segment.to_running_time(end)?;
        let base_time = self.obj().base_time()?;
        let deadline = base_time
            .checked_add(running_time)?
            .checked_add(upstream.min_latency)?
            .checked_add(settings.threshold)?;
        // Only a hostile segment puts a deadline this far out; near the top
        // of the range running times saturate and the deadline would stop
        // moving as the output advances, so every turn would be overdue.
        (deadline <= MAX_DEADLINE).then_some(deadline)
    }

    /// One turn of the source pad's task: sleep until the clock reports the
    /// next sample overdue, then push one chunk of silence.
    ///
    /// The deadline is watched by the clock's `Watch`, so while data keeps
    /// coming the deadline moves on in the watch's thread and this task never
    /// wakes: a process with thousands of tracks pays no thread switch per
    /// track for deadlines that real data has already met.
    pub(super) fn fill_loop(&self) {
        let mut state = self.state();
        let due = loop {
            if state.task_stop {
                drop(state);
                let _ = self.srcpad.pause_task();
                return;
            }
            if state.upstream.is_none() && state.playing && state.segment.is_some() {
                drop(state);
                self.ensure_upstream_known();
                state = self.state();
                continue;
            }
            if let Some(due) = state.overdue.take() {
                break due;
            }
            if state.pending_wait.is_none() {
                self.arm_deadline(&mut state);
            }
            state = wait(&self.cond, state);
        };
        drop(state);
        self.fill_if_overdue(due);
    }

    /// With `shared-threads`: one turn of `fill_loop` on a shared worker,
    /// what the task does between two waits, without the wait. The watch
    /// (a deadline passed) or an event queues the next.
    pub(super) fn turn(&self) {
        let mut state = self.state();
        state.turn_queued = false;
        if state.task_stop {
            return;
        }
        if state.upstream.is_none() && state.playing && state.segment.is_some() {
            drop(state);
            self.ensure_upstream_known();
            state = self.state();
        }
        if let Some(due) = state.overdue.take() {
            drop(state);
            self.fill_if_overdue(due);
            state = self.state();
            if state.task_stop {
                return;
            }
        }
        if state.pending_wait.is_none() {
            self.arm_deadline(&mut state);
        }
    }

    /// Arms the watch for the current deadline, if there is one.
    pub(super) fn arm_deadline(&self, state: &mut State) {
        let Some(deadline) = self.deadline(state, &self.settings()) else {
            return;
        };
        let Some(clock) = self.obj().clock() else {
            return;
        };
        if !state.watch.as_ref().is_some_and(|w| w.is_for(&clock)) {
            match Watch::for_clock(&clock) {
                Ok(watch) => state.watch = Some(watch),
                Err(err) => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Thread,
                        ("Could not start the stall deadline watch"),
                        ["{err}"]
                    );
                    return;
                }
            }
        }
        let watch = state.watch.as_ref().unwrap();
        state.waits_armed += 1;
        let seq = state.waits_armed;
        // A strong reference, not a GLib weak one (those share one
        // process-wide lock that thousands of tracks would contend on). It
        // lives until the deadline passes or is cancelled, and every pending
        // deadline is cancelled when the source pad deactivates.
        let this = self.ref_counted();
        gst::trace!(CAT, imp = self, "watching deadline {deadline}");
        let token = watch.arm(deadline, move || this.deadline_passed(seq, deadline));
        state.pending_wait = Some((token, seq));
    }

    /// The watch's callback, in its thread: hand a real stall to the task,
    /// or follow the deadline that data has moved on.
    pub(super) fn deadline_passed(&self, seq: u64, waited_for: gst::ClockTime) {
        let mut state = self.state();
        if state.pending_wait.as_ref().map(|(_, s)| *s) != Some(seq) {
            return;
        }
        state.pending_wait = None;
        match self.deadline(&state, &self.settings()) {
            Some(deadline) if deadline <= waited_for => {
                state.overdue = Some(waited_for);
                state.kick(&self.cond);
            }
            Some(_) => self.arm_deadline(&mut state),
            None => state.kick(&self.cond),
        }
    }

    pub(super) fn fill_if_overdue(&self, waited_for: gst::ClockTime) {
        let settings = self.settings();
        let _push = self.push_guard();
        let out = {
            let mut state = self.state();
            // Data may have arrived while we waited for the lock.
            let deadline = match self.deadline(&state, &settings) {
                Some(deadline) if deadline <= waited_for => deadline,
                _ => return,
            };
            if !state.ensure_timeline(None) {
                return;
            }
            let mut out = Output::default();
            if self.resync_if_far_behind(&mut state, &settings, deadline, &mut out)
                && self.within_clock(&mut state, &settings, &mut out)
            {
                self.note_stall(&mut state, &settings, &mut out);
                let n = Self::chunk_samples(state.timeline.as_ref().unwrap().layout(), &settings);
                Self::emit_silence(&mut state, &settings, n, &mut out);
                let rate = state
                    .segment
                    .as_ref()
                    .map_or(1.0, |s| s.rate().abs().max(f64::EPSILON));
                let filled = state.timeline.as_ref().unwrap().layout().samples_to_time(n);
                state.stall_filled =
                    state
                        .stall_filled
                        .saturating_add(gst::ClockTime::from_nseconds(
                            (filled.nseconds() as f64 / rate) as u64,
                        ));
            }
            out
        };
        let Err(err) = self.push_output(out) else {
            return;
        };
        gst::debug!(CAT, imp = self, "silence push returned {err:?}");
        // Upstream gets it on its next buffer; until then there is no
        // deadline, so the task does not retry against a broken downstream.
        self.state().flow_error = Some(err);
        drop(_push);
        // Upstream may not send a next buffer for as long as it stalls, so a
        // fatal error is posted now, as GST_ELEMENT_FLOW_ERROR does.
        if matches!(
            err,
            gst::FlowError::NotLinked | gst::FlowError::NotNegotiated | gst::FlowError::Error
        ) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                ["streaming stopped while filling a stall, reason {err:?}"]
            );
        }
    }

    /// Whether the task may fill another chunk: during one stall it fills at
    /// most the clock time that passed plus `max-gap` (in running time), as
    /// a real stall does. Past that (segments whose running time does not
    /// follow the clock) filling stops until the stream moves.
    pub(super) fn within_clock(
        &self,
        state: &mut State,
        settings: &Settings,
        out: &mut Output,
    ) -> bool {
        let Some(now) = self.obj().clock().map(|c| c.time()) else {
            return true;
        };
        let started = *state.stall_clock.get_or_insert(now);
        let allowed = now.saturating_sub(started).saturating_add(settings.max_gap);
        if state.stall_filled <= allowed {
            return true;
        }
        out.messages.push(self.warning(
            "Filling ran ahead of the clock by more than max-gap: not filling",
            &format!(
                "{} filled in {} of clock time; the segment's running time does not follow the clock",
                state.stall_filled,
                now.saturating_sub(started)
            ),
        ));
        state.unreachable = true;
        false
    }

    /// The first fill of a stall: counted, logged and posted.
    pub(super) fn note_stall(&self, state: &mut State, settings: &Settings, out: &mut Output) {
        if state.stall_since.is_some() {
            return;
        }
        let since = state.timeline.as_ref().unwrap().end();
        state.stall_since = Some(since);
        state.stats.stalls += 1;
        gst::info!(
            CAT,
            imp = self,
            "upstream stalled at {since}: filling with silence"
        );
        if settings.post_messages {
            let running_time = state
                .segment
                .as_ref()
                .and_then(|s| s.to_running_time(since));
            out.messages.push(
                self.element_message(
                    "stallfiller-stall",
                    gst::Structure::builder("x")
                        .field("timestamp", since)
                        .field("running-time", running_time)
                        .build(),
                ),
            );
        }
    }

    /// A timeline more than `max-gap` behind the clock (its running time
    /// moved back, or the clock jumped) is not caught up chunk by chunk:
    /// it resumes where the clock is, as after a jump in the timestamps. If
    /// the segment cannot express where the clock is, filling stops until
    /// the stream moves. False if nothing is to be filled now.
    pub(super) fn resync_if_far_behind(
        &self,
        state: &mut State,
        settings: &Settings,
        deadline: gst::ClockTime,
        out: &mut Output,
    ) -> bool {
        let obj = self.obj();
        let (Some(clock), Some(base_time)) = (obj.clock(), obj.base_time()) else {
            return true;
        };
        let now = clock.time();
        let behind = now.saturating_sub(deadline);
        if behind <= settings.max_gap {
            return true;
        }
        let latency = state
            .upstream
            .map_or(gst::ClockTime::ZERO, |u| u.min_latency);
        let due = now
            .saturating_sub(base_time)
            .saturating_sub(latency)
            .saturating_sub(settings.threshold);
        let position = state
            .segment
            .as_ref()
            .and_then(|s| s.position_from_running_time(due));
        if let Some(position) = position {
            let before = state.timeline.clone();
            let timeline = before.as_ref().expect("ensured by the caller");
            state.timeline = Some(timeline.continue_at(position));
            // The segment may clamp the position (to its start or stop):
            // a resync that does not land near the clock would repeat
            // every turn.
            let landed = self
                .deadline(state, settings)
                .is_some_and(|d| now.saturating_sub(d) <= settings.max_gap);
            if landed {
                out.messages.push(self.warning(
                    "The stream fell further behind the clock than max-gap: resynchronised instead of filling",
                    &format!("{behind} behind, max-gap is {}", settings.max_gap),
                ));
                state.stats.resyncs += 1;
                state.discont = true;
                return true;
            }
            state.timeline = before;
        }
        out.messages.push(self.warning(
            "The clock is beyond what the segment can express: not filling",
            &format!(
                "running time {due} has no position near the clock in {:?}; filling resumes with the stream",
                state.segment
            ),
        ));
        state.unreachable = true;
        false
    }
}
