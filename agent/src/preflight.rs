//! Preflight checks before arming (`agent arm`): the loop must be running end
//! to end before the operator's arm request goes to the flight-controller
//! node. What is checked, over a window of what the bus carries:
//!
//! - **nodes**: the required nodes' liveliness tokens (camera, stereo,
//!   policy, safety and the flight controller, `fc` or `mavlink`);
//! - **camera and stereo**: depth scans arriving (the camera's pairs reach
//!   the stereo stage), the newest one fresh, and on the median scan enough
//!   columns known (a blind or covered camera fails);
//! - **state**: the vehicle's pose arriving;
//! - **flight controller**: its status arriving, the link up, disarmed, no
//!   fault flags;
//! - **setpoints**: the policy's commands arriving (otherwise the
//!   controller's watchdog would fail safe the moment it armed).
//!
//! The checks are a pure function of what was observed ([`evaluate`]), so each
//! can be shown failing in a unit test.

use anyhow::Result;
use bus::msg::{DepthScan, FcStatus, Setpoint, State};
use bus::{Inbox, Presence, Session};
use fclink::faults as fclink_faults;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the checks ask for.
#[derive(Debug, Clone)]
pub struct PreflightConfig {
    /// Nodes that must be alive; `fc` is satisfied by `fc` or `mavlink`.
    pub require: Vec<String>,
    /// The newest scan, state, status and setpoint must be at most this old.
    pub fresh: Duration,
    /// Scans needed in the window.
    pub min_scans: usize,
    /// Known share of the median scan's columns needed.
    pub min_known: f64,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        Self {
            require: ["camera", "stereo", "policy", "safety", "fc"]
                .map(String::from)
                .to_vec(),
            fresh: Duration::from_millis(500),
            min_scans: 5,
            min_known: 0.5,
        }
    }
}

/// What was seen on the bus, with when.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Nodes alive now.
    pub nodes: BTreeSet<String>,
    /// Each scan's arrival and known share of its columns.
    pub scans: Vec<(Instant, f64)>,
    /// The newest state.
    pub state: Option<Instant>,
    /// The newest flight-controller status.
    pub status: Option<(Instant, FcStatus)>,
    /// The newest setpoint.
    pub setpoint: Option<Instant>,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub pass: bool,
    /// What was seen.
    pub detail: String,
}

fn known_share(scan: &DepthScan) -> f64 {
    if scan.depth.is_empty() {
        return 0.0;
    }
    scan.depth.iter().filter(|v| v.is_finite()).count() as f64 / scan.depth.len() as f64
}

fn age(now: Instant, t: Instant) -> String {
    format!(
        "{:.0} ms ago",
        now.saturating_duration_since(t).as_secs_f64() * 1e3
    )
}

/// The checks on `obs` at `now`.
pub fn evaluate(obs: &Observations, cfg: &PreflightConfig, now: Instant) -> Vec<Check> {
    let fresh =
        |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) <= cfg.fresh);
    let mut checks = Vec::new();
    let missing: Vec<&str> = cfg
        .require
        .iter()
        .map(String::as_str)
        .filter(|n| match *n {
            "fc" => !obs.nodes.contains("fc") && !obs.nodes.contains("mavlink"),
            n => !obs.nodes.contains(n),
        })
        .collect();
    checks.push(Check {
        name: "nodes",
        pass: missing.is_empty(),
        detail: if missing.is_empty() {
            format!(
                "alive: {}",
                obs.nodes.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("not alive: {}", missing.join(", "))
        },
    });
    let mut shares: Vec<f64> = obs.scans.iter().map(|(_, k)| *k).collect();
    shares.sort_by(f64::total_cmp);
    let median = shares.get(shares.len() / 2).copied();
    let newest = obs.scans.iter().map(|(t, _)| *t).max();
    let (pass, detail) = match (median, newest) {
        (None, _) | (_, None) => (
            false,
            "no depth scans: no pairs reach the stereo stage".into(),
        ),
        (Some(m), Some(t)) => {
            let enough = obs.scans.len() >= cfg.min_scans;
            let seen = m >= cfg.min_known;
            let detail = format!(
                "{} scans, newest {}, median known {:.0} % of columns (need {} scans, {:.0} %, within {} ms)",
                obs.scans.len(),
                age(now, t),
                100.0 * m,
                cfg.min_scans,
                100.0 * cfg.min_known,
                cfg.fresh.as_millis()
            );
            (enough && seen && fresh(Some(t)), detail)
        }
    };
    checks.push(Check {
        name: "camera and stereo",
        pass,
        detail,
    });
    checks.push(Check {
        name: "state",
        pass: fresh(obs.state),
        detail: obs.state.map_or("no state received".into(), |t| {
            format!("newest {}", age(now, t))
        }),
    });
    let (pass, detail) = match obs.status {
        None => (false, "no fc/status received".to_string()),
        Some((t, s)) => {
            let link = s.state != FcStatus::LINK_DOWN;
            let disarmed = s.state == 0;
            let ok = fresh(Some(t)) && link && disarmed && s.faults == 0;
            let latched = s.faults
                & (fclink_faults::WATCHDOG
                    | fclink_faults::EMERGENCY_STOP
                    | fclink_faults::BATTERY_FAILSAFE
                    | fclink_faults::MCU_RESET);
            let what = match s.state {
                FcStatus::LINK_DOWN => "link down".to_string(),
                0 => "disarmed".to_string(),
                1 => "already armed".to_string(),
                n => format!("in failsafe (state {n})"),
            };
            (
                ok,
                format!(
                    "{what}, faults {:#06x}{}, battery {:.2} V, newest {}",
                    s.faults,
                    if latched != 0 {
                        " (latched: `agent disarm` on the ground acknowledges them)"
                    } else {
                        ""
                    },
                    f64::from(s.battery_mv) * 1e-3,
                    age(now, t)
                ),
            )
        }
    };
    checks.push(Check {
        name: "flight controller",
        pass,
        detail,
    });
    // The flight-controller node refuses to arm without a setpoint this
    // fresh: a check that passed at the looser limit would announce an arm
    // that is then refused.
    let setpoint_limit = cfg.fresh.min(crate::fcnode::SETPOINTS_FRESH);
    checks.push(Check {
        name: "setpoints",
        pass: obs
            .setpoint
            .is_some_and(|t| now.saturating_duration_since(t) <= setpoint_limit),
        detail: obs
            .setpoint
            .map_or("no setpoints: the policy is not commanding".into(), |t| {
                format!(
                    "newest {} (arming needs one within {} ms)",
                    age(now, t),
                    setpoint_limit.as_millis()
                )
            }),
    });
    checks
}

/// A rolling view of the bus for the checks: the nodes alive and the depth
/// scans of the last `window`, and — when watching everything — the newest
/// state, flight-controller status and setpoint. The flight-controller node
/// keeps one to check every arm request itself (it is the source of state and
/// status, and it receives the setpoints: it notes those).
pub struct Monitor {
    presence: Presence,
    scans: Inbox<DepthScan>,
    rest: Option<(Inbox<State>, Inbox<FcStatus>, Inbox<Setpoint>)>,
    window: Duration,
    obs: Observations,
}

impl Monitor {
    /// Watch `robot`'s nodes and depth scans over `window`; with `everything`,
    /// also its state, status and setpoints (else the caller notes them).
    pub fn new(session: &Session, robot: &str, window: Duration, everything: bool) -> Result<Self> {
        let rest = if everything {
            Some((
                Inbox::new(session, robot, bus::topics::STATE, 64)?,
                Inbox::new(session, robot, bus::topics::FC_STATUS, 64)?,
                Inbox::new(session, robot, bus::topics::CMD_SETPOINT, 64)?,
            ))
        } else {
            None
        };
        Ok(Self {
            presence: Presence::watch(session, robot)?,
            scans: Inbox::new(session, robot, bus::topics::DEPTH_STEREO, 64)?,
            rest,
            window,
            obs: Observations::default(),
        })
    }

    /// Take in what arrived; forget scans older than the window.
    pub fn poll(&mut self) -> Result<()> {
        let obs = &mut self.obs;
        while let Some(c) = self.presence.recv_timeout(Duration::ZERO)? {
            match c {
                bus::Change::Up(n) => obs.nodes.insert(n),
                bus::Change::Down(n) => obs.nodes.remove(&n),
            };
        }
        let now = Instant::now();
        while let Some((_, s)) = self.scans.recv_timeout(Duration::ZERO)? {
            obs.scans.push((now, known_share(&s)));
        }
        obs.scans
            .retain(|(t, _)| now.saturating_duration_since(*t) <= self.window);
        if let Some((states, status, setpoints)) = &mut self.rest {
            while states.recv_timeout(Duration::ZERO)?.is_some() {
                obs.state = Some(now);
            }
            while let Some((_, s)) = status.recv_timeout(Duration::ZERO)? {
                obs.status = Some((now, s));
            }
            while setpoints.recv_timeout(Duration::ZERO)?.is_some() {
                obs.setpoint = Some(now);
            }
        }
        Ok(())
    }

    /// A state was sent or seen now.
    pub fn note_state(&mut self) {
        self.obs.state = Some(Instant::now());
    }

    /// A flight-controller status was sent or seen now.
    pub fn note_status(&mut self, s: FcStatus) {
        self.obs.status = Some((Instant::now(), s));
    }

    /// A setpoint arrived now.
    pub fn note_setpoint(&mut self) {
        self.obs.setpoint = Some(Instant::now());
    }

    /// What was observed.
    pub fn observations(&self) -> &Observations {
        &self.obs
    }
}

/// Watch the bus of `robot` for `window` (or until `stop`), collecting what
/// the checks need.
pub fn observe(
    session: &Session,
    robot: &str,
    window: Duration,
    stop: &AtomicBool,
) -> Result<Observations> {
    let mut monitor = Monitor::new(session, robot, window, true)?;
    let t0 = Instant::now();
    while t0.elapsed() < window && !stop.load(Ordering::Relaxed) {
        monitor.poll()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    monitor.poll()?;
    Ok(monitor.obs)
}

/// Why the checks refuse to arm: the failed ones with what was seen, one
/// line; `None` when every check passes.
pub fn refusal(checks: &[Check]) -> Option<String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    (!failed.is_empty()).then(|| format!("preflight failed: {}", failed.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: u8, faults: u16) -> FcStatus {
        FcStatus {
            state,
            faults,
            attitude: [0.0; 3],
            velocity: [0.0; 3],
            altitude: 0.0,
            battery_mv: 12_400,
            setpoint_age_ms: 0,
            link_errors: 0,
            reconnects: 0,
        }
    }

    /// A graph running end to end, seen at `now`.
    fn healthy(now: Instant) -> Observations {
        let recent = now - Duration::from_millis(50);
        Observations {
            nodes: ["camera", "stereo", "policy", "safety", "fc", "mono"]
                .map(String::from)
                .into(),
            scans: (0..10).map(|_| (recent, 0.9)).collect(),
            state: Some(recent),
            status: Some((recent, status(0, 0))),
            setpoint: Some(recent),
        }
    }

    fn failing(obs: &Observations, now: Instant) -> Vec<&'static str> {
        evaluate(obs, &PreflightConfig::default(), now)
            .into_iter()
            .filter(|c| !c.pass)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn each_preflight_check_fails_for_its_own_reason() {
        let now = Instant::now() + Duration::from_secs(10);
        let ok = healthy(now);
        assert!(
            failing(&ok, now).is_empty(),
            "{:?}",
            evaluate(&ok, &PreflightConfig::default(), now)
        );
        // MAVLink stands in for our link.
        let mut o = ok.clone();
        o.nodes.remove("fc");
        o.nodes.insert("mavlink".into());
        assert!(failing(&o, now).is_empty());
        let stale = now - Duration::from_secs(2);
        type Spoil = Box<dyn Fn(&mut Observations)>;
        let cases: Vec<(&str, Spoil)> = vec![
            (
                "nodes",
                Box::new(|o| {
                    o.nodes.remove("safety");
                }),
            ),
            ("camera and stereo", Box::new(|o| o.scans.clear())),
            ("camera and stereo", Box::new(|o| o.scans.truncate(2))),
            // A covered lens: scans arrive, but nearly every column is unknown.
            (
                "camera and stereo",
                Box::new(|o| {
                    for s in &mut o.scans {
                        s.1 = 0.1;
                    }
                }),
            ),
            (
                "camera and stereo",
                Box::new(move |o| {
                    for s in &mut o.scans {
                        s.0 = stale;
                    }
                }),
            ),
            // Fresh enough for the other checks (500 ms), too old for the fc
            // node's arming gate (200 ms).
            (
                "setpoints",
                Box::new(move |o| o.setpoint = Some(now - Duration::from_millis(300))),
            ),
            ("state", Box::new(|o| o.state = None)),
            ("state", Box::new(move |o| o.state = Some(stale))),
            ("flight controller", Box::new(|o| o.status = None)),
            (
                "flight controller",
                Box::new(move |o| {
                    o.status = Some((o.status.unwrap().0, status(FcStatus::LINK_DOWN, 0)))
                }),
            ),
            (
                "flight controller",
                Box::new(move |o| o.status = Some((o.status.unwrap().0, status(2, 4)))),
            ),
            (
                "flight controller",
                Box::new(move |o| o.status = Some((o.status.unwrap().0, status(0, 1)))),
            ),
            ("setpoints", Box::new(|o| o.setpoint = None)),
        ];
        for (which, spoil) in cases {
            let mut o = healthy(now);
            spoil(&mut o);
            assert_eq!(
                failing(&o, now),
                vec![which],
                "{:?}",
                evaluate(&o, &PreflightConfig::default(), now)
            );
        }
    }
}
