#!/usr/bin/env bash
# The plugins as a C media server uses them: cargo-c's static library,
# linked into examples/c/record_call.c, which registers the plugin with
# gst_plugin_callrec_register() and records a call. Also checks that
# `cargo cinstall` lays out the shared plugin and its .pc as GStreamer and
# pkg-config expect (into a staging directory).
set -euo pipefail
cd "$(dirname "$0")/.."

# The newest cargo-c that builds with rustc 1.95.
CARGO_C="cargo-c@0.10.24+cargo-0.98.0"
command -v cargo-cbuild >/dev/null || cargo install --locked "$CARGO_C"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo cbuild --release --locked -p gst-plugin-callrec --library-type staticlib
out=target/x86_64-unknown-linux-gnu/release
pc() { PKG_CONFIG_PATH="$out" pkg-config --static "$@" gstcallrec-uninstalled; }
# The archive by name: a libgstcallrec.so beside it (from cinstall) must
# not be picked instead.
cc examples/c/record_call.c -o "$work/record_call" $(pc --cflags) \
    "$out/libgstcallrec.a" $(pc --libs | sed 's/ -lgstcallrec\b//')
if ldd "$work/record_call" | grep -q libgstcallrec; then
    echo "check-capi: record_call is linked to a shared libgstcallrec" >&2
    exit 1
fi
# GStreamer's own plugins come from the system, ours only from the static
# library: the program checks that callrecsink has no plugin file.
(cd "$work" && env -u GST_PLUGIN_PATH HOME="$work" ./record_call "$work/call.wav")
test -s "$work/call.wav"
echo "check-capi: the statically linked C program recorded $(stat -c %s "$work/call.wav") bytes"

cargo cinstall --release --locked -p gst-plugin-callrec --library-type cdylib \
    --prefix=/usr --libdir=/usr/lib/x86_64-linux-gnu --destdir="$work/stage"
test -f "$work/stage/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstcallrec.so"
test -f "$work/stage/usr/lib/x86_64-linux-gnu/pkgconfig/gstcallrec.pc"
echo "check-capi: cargo cinstall lays out gstreamer-1.0/libgstcallrec.so and gstcallrec.pc"
