#!/usr/bin/env bash
# Builds the Debian package of the three plugins and checks that GStreamer
# finds every element from it, with no GST_PLUGIN_PATH, from a clean
# directory. Under CI (CI=true, a throw-away root machine) the package is
# really installed with dpkg; elsewhere it is unpacked into a temporary
# root and GStreamer is pointed at that root's plugin directory only, so
# running the tests never changes the machine's installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0
cargo build --release --locked --workspace --lib
deb=$(cargo deb -p gst-plugin-callrec --no-build --no-strip 2>/dev/null | tail -n1)
echo "package: $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\):/  \1:/p'

elements=(callrecsink stallfiller pipecatwsrc pipecatwssharedsrc pipecatwssink)
clean=$(mktemp -d)
trap 'rm -rf "$clean"' EXIT
if [ "${CI:-}" = "true" ] && [ "$(id -u)" -eq 0 ]; then
    dpkg -i "$deb" >/dev/null
    clean_run() { (cd "$clean" && env -u GST_PLUGIN_PATH HOME="$clean" "$@"); }
else
    dpkg-deb -x "$deb" "$clean/root"
    plugins="$clean/root/usr/lib/x86_64-linux-gnu/gstreamer-1.0"
    clean_run() {
        (cd "$clean" && env -u GST_PLUGIN_PATH HOME="$clean" \
            GST_PLUGIN_SYSTEM_PATH="$plugins:/usr/lib/x86_64-linux-gnu/gstreamer-1.0" \
            "$@")
    }
fi
inspect() { clean_run gst-inspect-1.0 "$1"; }
for e in "${elements[@]}"; do
    file=$(inspect "$e" | sed -n 's/^  Filename *//p')
    case "$file" in
        */lib/x86_64-linux-gnu/gstreamer-1.0/libgst*.so) echo "  $e: $file" ;;
        *) echo "check-packages: $e not found from the package (got '$file')" >&2; exit 1 ;;
    esac
done
echo "check-packages: every element loads from the package"

# Both plugins in one process: callrecsink's tracks use its own copy of the
# stallfiller type beside the stallfiller plugin's (the second registers
# under a suffixed name instead of failing).
clean_run gst-launch-1.0 -q audiotestsrc num-buffers=25 samplesperbuffer=160 \
    ! audio/x-raw,rate=8000,channels=1 ! stallfiller ! callrecsink location="$clean/call.wav"
frames=$(python3 -c 'import sys, wave; print(wave.open(sys.argv[1]).getnframes())' "$clean/call.wav")
[ "$frames" -eq 4000 ] || {
    echo "check-packages: stallfiller ! callrecsink from the package recorded $frames frames, not 4000" >&2
    exit 1
}
echo "check-packages: stallfiller ! callrecsink from the package recorded 0.5 s"
