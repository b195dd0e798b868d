//! Puts memory.x where the linker finds it, and turns the build-time settings
//! into constants:
//!   FC_VEHICLE      multirotor (default) | ground
//!   FC_WATCHDOG_MS  setpoint watchdog in ms (default 200)
//!   FC_HOVER_MS     multirotor failsafe: hover before landing, ms (default 2000)
//!   FC_HW_WATCHDOG_MS  the MCU's hardware watchdog: last feed to reset, ms
//!                   (default 1000)
//!   FC_POLICY       a learned policy's weight table (`agent learn-to-fly`
//!                   writes them; e.g. ../policies/crazyflie-hover.txt): the
//!                   firmware then flies the learned position controller on
//!                   the rigid-body quadrotor model (multirotor only); unset,
//!                   the cascaded stand-in
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
        "FC_POLICY",
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
    fs::write(out.join("policy.rs"), policy(vehicle)?)?;
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

/// The learned policy compiled in, from the weight table `FC_POLICY` names:
/// `POLICY` is `Some((sizes, parameters))`, or `None` without one.
fn policy(vehicle: &str) -> Result<String, Box<dyn std::error::Error>> {
    let Ok(path) = env::var("FC_POLICY") else {
        return Ok("/// No learned policy in this build (FC_POLICY unset).\n\
                   static POLICY: Option<(&[usize], &[f32])> = None;\n"
            .into());
    };
    if vehicle != "Multirotor" {
        return Err(format!("FC_POLICY={path}: a learned policy flies a multirotor only").into());
    }
    println!("cargo:rerun-if-changed={path}");
    let text = fs::read_to_string(&path).map_err(|e| format!("FC_POLICY={path}: {e}"))?;
    let mut sizes = [0usize; fclink::policy::MAX_LAYERS];
    let mut params = vec![0.0f32; text.lines().count()];
    let (layers, n) = fclink::policy::parse_table(&text, &mut sizes, &mut params)
        .map_err(|e| format!("FC_POLICY={path}: not a weight table the firmware flies: {e:?}"))?;
    let sizes = &sizes[..layers];
    if sizes[0] != fclink::learned::OBS || sizes[layers - 1] != fclink::learned::MOTORS {
        return Err(format!(
            "FC_POLICY={path}: sizes {sizes:?} must start with {} observations and end with {} motors",
            fclink::learned::OBS,
            fclink::learned::MOTORS
        )
        .into());
    }
    let mut s = format!(
        "/// The learned policy compiled in from {path:?} (FC_POLICY).\n\
         static POLICY_SIZES: [usize; {layers}] = {sizes:?};\n\
         static POLICY_PARAMS: [f32; {n}] = ["
    );
    for p in &params[..n] {
        // `{:e}` prints each f32 so that it reads back to the same value.
        s.push_str(&format!("{p:e}, "));
    }
    s.push_str(
        "];\nstatic POLICY: Option<(&[usize], &[f32])> = Some((&POLICY_SIZES, &POLICY_PARAMS));\n",
    );
    Ok(s)
}
