#!/usr/bin/env bash
# Installs what the tests need besides cargo, then returns; the README's test
# command runs it before `cargo test`. Safe to run again (skips what is there).
#   - rerun's CLI (verifies the .rrd files the agent writes)
#   - the thumbv7em-none-eabihf Rust target (the flight-controller firmware)
#   - qemu-system-arm (runs that firmware; apt-get, with sudo when not root)
set -euo pipefail
python3 -m pip install --quiet rerun-sdk==0.36.3
if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    rustup target add thumbv7em-none-eabihf
fi
if ! command -v qemu-system-arm >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq qemu-system-arm
fi
