//! Puts memory.x where the linker finds it, and turns the build-time settings
//! into constants:
//!   FC_VEHICLE      multirotor (default) | ground
//!   FC_WATCHDOG_MS  setpoint watchdog in ms (default 200)
//!   FC_HOVER_MS     multirotor failsafe: hover before landing, ms (default 2000)
//!   FC_HW_WATCHDOG_MS  the MCU's hardware watchdog: last feed to reset, ms
//!                   (default 1000)
use std::{env, fs, path::PathBuf};

fn number(name: &str, default: u32) -> Result<u32, String> {
    match env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a whole number of milliseconds")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::copy("memory.x", out.join("memory.x"))?;
    // cortex-m-rt's `device` feature includes device.x (handler aliases a
    // peripheral crate would provide); the vectors are in src/main.rs.
    fs::write(
        out.join("device.x"),
        "/* interrupt vectors: __INTERRUPTS in src/main.rs */\n",
    )?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    for v in [
        "FC_VEHICLE",
        "FC_WATCHDOG_MS",
        "FC_HOVER_MS",
        "FC_HW_WATCHDOG_MS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let vehicle = match env::var("FC_VEHICLE").as_deref() {
        Err(_) | Ok("multirotor") => "Multirotor",
        Ok("ground") => "Ground",
        Ok(other) => {
            return Err(format!("FC_VEHICLE={other:?}: expected multirotor or ground").into());
        }
    };
    let watchdog = number("FC_WATCHDOG_MS", 200)?;
    let hover = number("FC_HOVER_MS", 2000)?;
    if !(20..=5000).contains(&watchdog) {
        return Err(format!("FC_WATCHDOG_MS={watchdog} is outside 20..=5000").into());
    }
    // The NMI comes halfway; below 10 ms a slow pass of the loop (a burst of
    // frames) could trip it, and the counter (25 MHz / 2) holds 343 s.
    let hw_watchdog = number("FC_HW_WATCHDOG_MS", 1000)?;
    if !(10..=60_000).contains(&hw_watchdog) {
        return Err(format!("FC_HW_WATCHDOG_MS={hw_watchdog} is outside 10..=60000").into());
    }
    fs::write(
        out.join("hw_watchdog.rs"),
        format!(
            "/// The whole hardware watchdog time, from the last feed to the reset\n\
             /// (ms), chosen at build time (`FC_HW_WATCHDOG_MS`, see build.rs).\n\
             const WATCHDOG_MS: u32 = {hw_watchdog};\n"
        ),
    )?;
    fs::write(
        out.join("settings.rs"),
        format!(
            "/// Settings chosen at build time (see build.rs).\n\
             const SETTINGS: fclink::Config = fclink::Config {{\n    \
             vehicle: fclink::Vehicle::{vehicle},\n    \
             watchdog_ms: {watchdog},\n    \
             hover_ms: {hover},\n    \
             ..fclink::Config::MULTIROTOR\n}};\n"
        ),
    )?;
    Ok(())
}
