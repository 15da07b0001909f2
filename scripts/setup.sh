#!/usr/bin/env bash
# Installs what building and testing these plugins needs on Debian 12:
# GStreamer's development files and tools, meson, sox, python3-gst-1.0 (to
# use the plugins from Python), and a Python venv
# with pipecat-ai for the test bot. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    meson ninja-build pkg-config sox python3-venv python3-gst-1.0
    # age: the tests decrypt encrypted recordings with Debian's own CLI.
    age openssh-client
    # cargo-c (scripts/check-capi.sh) builds cargo itself, which links these.
    libssl-dev zlib1g-dev
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Pipecat test bot runs on the real pipecat-ai package.
PIPECAT="pipecat-ai[websocket,runner]==1.14.0"
if ! .venv/bin/python -c "import pipecat, websockets" 2>/dev/null; then
    echo "setup: creating .venv with $PIPECAT"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "$PIPECAT"
fi
echo "setup: done"
