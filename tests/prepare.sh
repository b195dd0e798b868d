#!/usr/bin/env bash
# Installs and builds what the tests need besides `cargo test`'s own build; the
# README's test command runs it first. Safe to run again (skips what is there).
#   - rerun's CLI (verifies the .rrd files the agent writes), OpenCV for Python
#     (opencv-python-headless<5: the stereo tests compare against its StereoSGBM)
#     scikit-image (it ships Middlebury's Motorcycle pair with ground truth,
#     a second real pair for the stereo tests) and pymavlink (an autopilot
#     written on another MAVLink implementation, for the MAVLink tests), mcap,
#     mcap-ros2-support and rosbags (ROS 2 readers of the recordings) and
#     eclipse-zenoh (a ROS 2 peer on zenoh for the ros2 bridge's test)
#   - Rust targets thumbv7em-none-eabihf (the flight-controller firmware) and
#     aarch64-unknown-linux-gnu (Jetson-class boards)
#   - system packages (apt-get, with sudo when not root): qemu-system-arm (runs the
#     firmware), gcc-aarch64-linux-gnu (the aarch64 linker) and qemu-user (runs the
#     aarch64 agent's self-test), opencv-doc (OpenCV's sample images: real
#     camera images the calibration is tested on, and Middlebury's Aloe pair with
#     ground truth that stereo matching is tested on)
#   - GStreamer (libgstreamer1.0-dev, libgstreamer-plugins-base1.0-dev for the
#     camera crate's build; gstreamer1.0-plugins-{base,good} for its pipelines:
#     videoconvert, jpegdec/jpegenc, avimux/avidemux, multipart, tcp) and
#     pkg-config, which the GStreamer bindings build with
#   - Vulkan: libvulkan1 (the loader) and mesa-vulkan-drivers (lavapipe, a
#     software Vulkan device), which the GPU backend's suite runs on
#     (tests/tests/backends.rs; it fails, never skips, without an adapter)
#   - Slurm (slurm-wlm, munge): a single-node cluster on localhost, started by
#     tests/slurm/cluster.sh with its own configuration under /tmp/onboard-slurm,
#     for the sweep test (tests/tests/e2e/train.rs, slurm_array_sweep_matches_local_run)
#   - the aarch64 build of the robot's agent with the GPU backend (no `twin`
#     feature, so no simulator; tests/tests/e2e/aarch64.rs runs its self-test, which
#     finds no Vulkan under qemu and says it falls back to the CPU), release
#     profile at opt-level 0 (tests/aarch64-check.toml)
#   - the aarch64 build of the stereo matcher (`stereo` and its unit tests,
#     same profile), whose NEON kernels tests/tests/e2e/aarch64.rs checks under qemu
#     against the generic code
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet rerun-sdk==0.36.3 "opencv-python-headless<5" scikit-image pymavlink \
    mcap mcap-ros2-support rosbags "eclipse-zenoh==1.10.*"
for t in thumbv7em-none-eabihf aarch64-unknown-linux-gnu; do
    if ! rustup target list --installed | grep -qx "$t"; then
        rustup target add "$t"
    fi
done
missing=()
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
[ -f /usr/share/doc/opencv-doc/examples/data/left01.jpg ] || missing+=(opencv-doc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
for p in libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    libvulkan1 mesa-vulkan-drivers slurm-wlm munge; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The single-node Slurm cluster (idempotent; the sweep test starts it too).
if [ "$(id -u)" = 0 ]; then tests/slurm/cluster.sh start >/dev/null; else sudo tests/slurm/cluster.sh start >/dev/null; fi
# .cargo/config.toml names the linker; C parts of dependencies use aarch64-linux-gnu-gcc.
# tests/aarch64-check.toml: the release profile at opt-level 0 (the same code,
# built in about half the time) with the host's build scripts and proc-macros
# shared with the test build.
# The robot's build: the agent without its `twin` feature, which holds no
# simulator (checked first: `cargo tree` fails when `sim` is not in the graph).
if cargo tree -e normal -p agent --no-default-features -i sim >/dev/null 2>&1; then
    echo "prepare.sh: the robot's build (agent --no-default-features) depends on sim" >&2
    exit 1
fi
aarch64=(--release --target aarch64-unknown-linux-gnu --config tests/aarch64-check.toml)
cargo build "${aarch64[@]}" -p agent --no-default-features --features gpu
# The stereo matcher's NEON kernels: the `stereo` command and the crate's unit
# tests for aarch64, the latter copied to a fixed name beside it.
# Without the GPU matcher (`gpu` feature): qemu has no Vulkan, and the NEON
# checks do not need it.
stereo_neon=(-p stereo --no-default-features --features bench)
cargo build "${aarch64[@]}" "${stereo_neon[@]}" --bin stereo
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
unit=$(cargo test "${aarch64[@]}" "${stereo_neon[@]}" --lib --no-run --message-format json |
    python3 -c 'import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]]
print(exes[-1] if exes else "")')
if [ -z "$unit" ]; then
    echo "prepare.sh: cargo named no unit-test executable of stereo for aarch64" >&2
    exit 1
fi
cp "$unit" "$target_dir/aarch64-unknown-linux-gnu/release/stereo-unit-tests"
