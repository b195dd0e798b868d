//! The loop in process on a recording: the stereo stage, mono inference and
//! the pilot over the camera pairs of an MCAP file, with the vehicle's state
//! at each pair's stamp — what the robot's graph (`stereo`, `mono`, `policy`
//! nodes) answers when the same recording is replayed into it, computed
//! without the bus. It is how a flight can be re-run offline with other
//! settings, and how the graph is checked against the loop.

use super::{
    Local, LogObserver, MonoStage, Pilot, PilotInput, RigGeometry, ScanShape, StereoStage,
};
use crate::mono::{MonoNet, MonoShape};
use crate::persist::{Mode, PersistConfig, Strategy};
use crate::pipeline::AvoidConfig;
use anyhow::{Context as _, Result};
use burn::prelude::Device;
use bus::Topic;
use bus::msg::{Setpoint, State, StereoPair};
use bus::wire::{Header, decode};
use std::path::Path;

/// What the loop answered to one recorded pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The pair's header (the setpoint on the bus carries it).
    pub header: Header,
    /// The setpoint.
    pub setpoint: Setpoint,
    /// The cue it flew on.
    pub mode: Mode,
}

/// The stages' settings.
pub struct ReplaySettings<'a> {
    /// Matcher settings.
    pub stereo: stereo::SgmParams,
    /// The rig.
    pub rig: RigGeometry,
    /// The mono network and its shape, or `None` for stereo only.
    pub mono: Option<(&'a MonoNet, MonoShape, &'a Device)>,
    /// The scan's shape.
    pub scan: ScanShape,
    /// The switching rule.
    pub persist: PersistConfig,
    /// How the cue is picked.
    pub strategy: Strategy,
    /// The reactive policy.
    pub avoid: AvoidConfig,
    /// Camera rate (Hz).
    pub camera_hz: f64,
}

/// Run the loop over the pairs of `path`, in recording order. Pairs that do
/// not fit the rig are skipped, as the stereo node skips them.
pub fn run(path: &Path, s: ReplaySettings<'_>) -> Result<Vec<Answer>> {
    let msgs = bus::log::read(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    let mut states: Vec<(u64, State)> = Vec::new();
    for (topic, _, bytes) in &msgs {
        if Topic::from_suffix(topic) == Some(Topic::State)
            && let Ok((h, st)) = decode::<State>(bytes)
        {
            states.push((h.stamp_ns, st));
        }
    }
    states.sort_by_key(|(t, _)| *t);
    // The stages on the in-process executor; what they say goes to the log.
    let mut log = LogObserver;
    let mut stereo = Local::start(StereoStage::new(s.rig, s.stereo, s.scan)?, &mut log)?;
    let mut mono = match &s.mono {
        Some((net, shape, dev)) => {
            let mut m = MonoStage::new(*shape, (*dev).clone());
            m.set_net((*net).clone());
            Some(Local::start(m, &mut log)?)
        }
        None => None,
    };
    let mut pilot = Local::start(
        Pilot::new(s.persist, s.strategy, s.camera_hz, s.avoid),
        &mut log,
    )?;
    let mut out = Vec::new();
    for (topic, _, bytes) in &msgs {
        if Topic::from_suffix(topic) != Some(Topic::CameraStereo) {
            continue;
        }
        let Ok((h, pair)) = decode::<StereoPair>(bytes) else {
            continue;
        };
        let Ok(Some(d)) = stereo.step(&h, &pair, &mut log) else {
            continue;
        };
        let mono = match mono.as_mut() {
            Some(m) => m.step(&h, &pair, &mut log)?.map(|o| o.estimate.scan),
            None => None,
        };
        // The newest state at or before the pair (the policy node's rule).
        let k = states.partition_point(|(t, _)| *t <= h.stamp_ns);
        let state = k
            .checked_sub(1)
            .map(|i| &states[i].1)
            .or(states.first().map(|x| &x.1));
        let input = PilotInput {
            t: h.stamp_ns as f64 * 1e-9,
            stereo: d.scan,
            mono,
            state: state.cloned(),
            goal: None,
            tracks: None,
            external: None,
            train_steps: u64::MAX,
        };
        // No answer: no setpoint, as on the bus.
        let Some((decision, setpoint)) = pilot
            .step(&h, &input, &mut log)?
            .and_then(|d| d.setpoint().map(|sp| (d, sp)))
        else {
            continue;
        };
        out.push(Answer {
            header: h,
            setpoint,
            mode: decision.switch.mode,
        });
    }
    Ok(out)
}
