#!/usr/bin/env bash
# meson's custom_target: builds the workspace with cargo and copies the plugin
# libraries to where meson expects its outputs.
# Usage: meson-cargo-build.sh SOURCE_ROOT TARGET_DIR PROFILE OUT_DIR LIB...
set -euo pipefail
src=$1 target=$2 profile=$3 out=$4
shift 4
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build --locked --workspace --lib "${flag[@]}" --manifest-path "$src/Cargo.toml" --target-dir "$target"
for lib in "$@"; do
    cp "$target/$profile/$lib" "$out/$lib"
done
