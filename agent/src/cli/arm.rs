//! `agent arm`: the operator's arm command. It watches the graph until every
//! preflight check passes ([`agent::preflight`]), then asks the
//! flight-controller node to arm (`cmd/arm`) and waits for its answer.

use super::{BusArgs, above, within};
use agent::preflight::{Check, PreflightConfig, evaluate, observe};
use anyhow::{Result, bail};
use bus::msg::ArmAction;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct ArmArgs {
    /// Robot name, endpoints; on a secured graph the `operator` role's TLS
    /// files (or a ground station's).
    #[command(flatten)]
    bus: BusArgs,
    /// Seconds to wait for every check to pass before giving up.
    #[arg(long, default_value_t = 30.0, value_parser = above(0.0, 3600.0, "s"))]
    wait: f64,
    /// Seconds of the bus each round of checks looks at.
    #[arg(long, default_value_t = 2.0, value_parser = above(0.0, 60.0, "s"))]
    window: f64,
    /// Nodes that must be alive (`fc` also accepts `mavlink`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "camera,stereo,policy,safety,fc"
    )]
    require: Vec<String>,
    /// Share of the depth scan's columns stereo must know (median scan).
    #[arg(long, default_value_t = 0.5, value_parser = within(0.0, 1.0, ""))]
    min_known: f64,
    /// Check only: print the checks and do not arm.
    #[arg(long)]
    dry_run: bool,
}

fn print(checks: &[Check]) {
    for c in checks {
        println!(
            "  {:<18} {}  {}",
            c.name,
            if c.pass { "PASS" } else { "FAIL" },
            c.detail
        );
    }
}

/// `agent arm`.
pub(crate) fn arm(a: ArmArgs, stop: Arc<AtomicBool>) -> Result<()> {
    for (name, v, hi) in [("--wait", a.wait, 3600.0), ("--window", a.window, 60.0)] {
        if !(v.is_finite() && v > 0.0 && v <= hi) {
            bail!("{name} must be in (0, {hi}] seconds, got {v}");
        }
    }
    if !(0.0..=1.0).contains(&a.min_known) {
        bail!("--min-known must be in [0, 1], got {}", a.min_known);
    }
    let cfg = PreflightConfig {
        require: a.require.clone(),
        min_known: a.min_known,
        ..PreflightConfig::default()
    };
    let session = a.bus.open()?;
    let robot = &a.bus.robot;
    // The answer is on `events`: listen before asking.
    let mut events = bus::Inbox::<bus::msg::Event>::new(&session, robot, bus::topics::EVENTS, 64)?;
    let t0 = Instant::now();
    let checks = loop {
        let obs = observe(&session, robot, Duration::from_secs_f64(a.window), &stop)?;
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted before the preflight checks passed; nothing was armed");
        }
        let checks = evaluate(&obs, &cfg, Instant::now());
        if checks.iter().all(|c| c.pass) || t0.elapsed().as_secs_f64() >= a.wait {
            break checks;
        }
    };
    println!("preflight of `{robot}`:");
    print(&checks);
    let failed: Vec<&str> = checks.iter().filter(|c| !c.pass).map(|c| c.name).collect();
    if !failed.is_empty() {
        bail!(
            "preflight failed ({}) after {:.0} s; nothing was armed",
            failed.join(", "),
            t0.elapsed().as_secs_f64()
        );
    }
    if a.dry_run {
        println!("preflight passed (--dry-run: not arming)");
        return Ok(());
    }
    request(&session, robot, &mut events, ArmAction::Arm, &stop)
}

/// Send an arm, disarm or emergency-stop request on `cmd/arm` and wait (5 s)
/// for the flight-controller node's answer on `events`, which names its nonce.
fn request(
    session: &bus::Session,
    robot: &str,
    events: &mut bus::Inbox<bus::msg::Event>,
    action: ArmAction,
    stop: &AtomicBool,
) -> Result<()> {
    let nonce = bus::now_ns() ^ (u64::from(std::process::id()) << 32);
    let mut out = bus::Outbox::<bus::msg::ArmRequest>::new(session, robot, bus::topics::CMD_ARM)?;
    let mut send = || {
        out.send(
            bus::now_ns(),
            "operator",
            &bus::msg::ArmRequest { nonce, action },
        )
    };
    send()?;
    let what = action.name();
    let done: &[&str] = match action {
        ArmAction::Arm => &[": armed", ": already armed"],
        ArmAction::Disarm => &[": disarmed"],
        ArmAction::EmergencyStop => &[": motors stopped"],
    };
    let tag = format!("{what} request {nonce:016x}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last_sent = Instant::now();
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // Sent again (the same nonce: the node acts on it once) until
        // answered: the first may go out before the route to the node formed.
        if last_sent.elapsed() >= Duration::from_millis(250) {
            send()?;
            last_sent = Instant::now();
        }
        if let Some((_, e)) = events.recv_timeout(Duration::from_millis(50))?
            && e.text.contains(&tag)
        {
            println!("{}", e.text);
            if done.iter().any(|d| e.text.ends_with(d)) {
                return Ok(());
            }
            bail!("{what} not done: {}", e.text);
        }
    }
    bail!(
        "no answer from the flight-controller node within 5 s (is it running with access to `cmd/arm`?)"
    )
}

#[derive(clap::Args)]
pub(crate) struct DisarmArgs {
    /// Robot name, endpoints; on a secured graph the `operator` role's TLS
    /// files (or a ground station's).
    #[command(flatten)]
    bus: BusArgs,
}

/// `agent disarm`: ask the flight-controller node to disarm. Our firmware
/// takes it on the ground only (it also acknowledges latched faults there: a
/// failsafe that ended in a landing, an emergency stop, an MCU reset); in the
/// air it is refused.
pub(crate) fn disarm(a: DisarmArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let session = a.bus.open()?;
    let robot = &a.bus.robot;
    let mut events = bus::Inbox::<bus::msg::Event>::new(&session, robot, bus::topics::EVENTS, 64)?;
    // A moment for the fc node's subscription to be known to this session.
    std::thread::sleep(Duration::from_millis(500));
    request(&session, robot, &mut events, ArmAction::Disarm, &stop)
}

/// `agent estop`: ask the flight-controller node to stop the motors now, in
/// the air too (the vehicle falls). Latched by the firmware until a disarm on
/// the ground acknowledges it.
pub(crate) fn estop(a: DisarmArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let session = a.bus.open()?;
    let robot = &a.bus.robot;
    let mut events = bus::Inbox::<bus::msg::Event>::new(&session, robot, bus::topics::EVENTS, 64)?;
    std::thread::sleep(Duration::from_millis(500));
    request(
        &session,
        robot,
        &mut events,
        ArmAction::EmergencyStop,
        &stop,
    )
}
