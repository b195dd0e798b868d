#!/usr/bin/env bash
# The GPU backend on a machine with a real GPU: the backend suite (every
# network, and the stereo matcher, against the CPU), `agent bench` side by side,
# CPU and GPU, for the default mono network and the larger U-Net, and `stereo
# bench` on both at 640x480/128 and 1024x440/128.
#
# Build here (the GPU machine needs no Rust), then carry the binaries:
#   cargo build --release -p agent --no-default-features --features twin,gpu   # no GStreamer needed there
#   cargo test --release -p e2e-tests --test backends --no-run   # prints the test binary's path
#   cargo build --release -p stereo                               # the matcher's bench (CPU and GPU)
#   mkdir -p shared/gpu && cp target/release/agent target/release/stereo <that path> shared/gpu/
#   (cd shared/gpu && apt-get download libvulkan1)               # the Vulkan loader, if the machine lacks one
# and run `tests/device/gpu_check.sh shared/gpu` there. Figures go to stdout and,
# where $OUT is set, to $OUT/gpu_check.txt.
#
# Vulkan on an NVIDIA machine needs the loader (libvulkan.so.1) and NVIDIA's
# ICD, which the driver ships inside libGLX_nvidia.so.0; containers often carry
# the driver's libraries without the ICD's JSON file, so one is written here.
set -uo pipefail
dir=${1:-shared/gpu}
out=${OUT:-/tmp}/gpu_check.txt
: > "$out"
say() { echo "$@" | tee -a "$out"; }

libs=$(ldconfig -p 2>/dev/null)
if ! grep -qF 'libvulkan.so.1' <<<"$libs"; then
    deb=$(ls "$dir"/libvulkan1_*.deb 2>/dev/null | head -1)
    if [ -z "$deb" ]; then
        say "gpu_check: no libvulkan.so.1 on this machine and no libvulkan1 .deb in $dir"
        exit 1
    fi
    mkdir -p /tmp/vk && dpkg -x "$deb" /tmp/vk
    export LD_LIBRARY_PATH=/tmp/vk/usr/lib/x86_64-linux-gnu:/tmp/vk/usr/lib/aarch64-linux-gnu:${LD_LIBRARY_PATH:-}
    say "gpu_check: Vulkan loader unpacked from $(basename "$deb")"
fi
if ! compgen -G '/usr/share/vulkan/icd.d/nvidia_icd*.json' >/dev/null \
    && ! compgen -G '/etc/vulkan/icd.d/nvidia_icd*.json' >/dev/null; then
    glx=$(awk '/libGLX_nvidia.so.0/ {print $NF; exit}' <<<"$libs")
    if [ -n "$glx" ]; then
        printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' "$glx" > /tmp/nvidia_icd.json
        export VK_ICD_FILENAMES=/tmp/nvidia_icd.json VK_DRIVER_FILES=/tmp/nvidia_icd.json
        say "gpu_check: NVIDIA ICD written for $glx"
    else
        say "gpu_check: no NVIDIA ICD file and no libGLX_nvidia.so.0; wgpu will take whatever Vulkan device it finds"
    fi
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu_check: /' | tee -a "$out"

rc=0
# First, and short: the whole script must fit one 600 s command.
if [ -x "$dir/stereo" ]; then
    say "== stereo bench, CPU and GPU (twin 640x480/128 and 1024x440/128)"
    timeout 120 "$dir/stereo" bench --backend cpu,gpu --no-opencv --seconds 1 --sizes 640,1024 \
        --real /nonexistent --python /bin/false 2>&1 | tee -a "$out" || rc=1
else
    say "gpu_check: no stereo binary in $dir"; rc=1
fi
suite=$(ls "$dir"/backends-* 2>/dev/null | grep -v '\.d$' | head -1)
if [ -n "$suite" ]; then
    say "== backend suite ($suite)"
    timeout 240 "$suite" --test-threads 1 --nocapture 2>&1 | tee -a "$out" || rc=1
else
    say "gpu_check: no backend-suite binary (backends-*) in $dir"; rc=1
fi
threads=$(nproc)
say "== agent bench, patch network ($threads training threads)"
timeout 110 "$dir/agent" bench --backend cpu,gpu --seconds 3 --train-threads "$threads" 2>&1 | tee -a "$out" || rc=1
# The U-Net on the CPU backend takes ~35 s per training step on 2 cores (README),
# so its CPU column is left to `agent bench --backend cpu --mono-arch unet`.
say "== agent bench, U-Net 160x120, GPU"
timeout 110 "$dir/agent" bench --backend gpu --seconds 3 --train-threads "$threads" --mono-arch unet 2>&1 | tee -a "$out" || rc=1
exit $rc
