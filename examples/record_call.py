#!/usr/bin/python3
"""Record a two-track call from Python and read its outcome.

Needs Debian's python3-gst-1.0 (scripts/setup.sh installs it): without its
overrides, PyGObject cannot read the outcome's `tracks` array
(`TypeError: unknown type GstValueArray`).

    GST_PLUGIN_PATH=$PWD/target/release /usr/bin/python3 examples/record_call.py /tmp/call.wav

The outcome is read three ways, as an application may:
  - the `finished` signal, emitted once from the thread that decided it;
  - the bus message, which survives stopping only with auto-flush-bus=False;
  - the exit status: 0 finalized, 1 failed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main() -> int:
    location = sys.argv[1] if len(sys.argv) > 1 else "/tmp/call.wav"
    Gst.init(None)
    # The location is set as a property, never pasted into the launch
    # string: a path with a space or a '!' stays one path.
    pipeline = Gst.parse_launch(
        "callrecsink name=rec overwrite=true "
        "audiotestsrc num-buffers=100 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec. "
        "audiotestsrc num-buffers=100 samplesperbuffer=320 freq=660 ! audio/x-raw,rate=16000,channels=1 ! rec."
    )
    pipeline.set_auto_flush_bus(False)
    rec = pipeline.get_by_name("rec")
    rec.set_property("location", location)
    # callrecsink is a Gst.TagSetter: the title reaches the file (WAV LIST/INFO and bext).
    rec.add_tag_value(Gst.TagMergeMode.REPLACE, Gst.TAG_TITLE, "A call from Python")

    outcomes = []
    rec.connect("finished", lambda _element, outcome: outcomes.append(outcome.copy()))

    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    msg = bus.timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if msg and msg.type == Gst.MessageType.ERROR:
        err, debug = msg.parse_error()
        print(f"error: {err.message} ({debug})", file=sys.stderr)
    pipeline.set_state(Gst.State.NULL)

    if not outcomes:
        print("no outcome", file=sys.stderr)
        return 1
    outcome = outcomes[0]
    if outcome.get_name() != "callrecsink-finalized":
        print(f"recording failed: {outcome.get_value('reason')}", file=sys.stderr)
        return 1
    print(f"finalized {outcome.get_value('location')}: {outcome.get_value('frames')} frames "
          f"at {outcome.get_value('rate')} Hz, started {outcome.get_value('start-time').to_iso8601_string()}")
    for track in outcome.get_value("tracks"):
        print(f"  {track.get_value('pad')}: {track.get_value('received-samples')} samples received")
    return 0


if __name__ == "__main__":
    sys.exit(main())
