//! The loop in process on a recording: the stereo stage, mono inference and
//! the pilot over the camera pairs of an MCAP file, with the vehicle's state
//! at each pair's stamp — what the robot's graph (`stereo`, `mono`, `policy`
//! nodes) answers when the same recording is replayed into it, computed
//! without the bus. It is how a flight can be re-run offline with other
//! settings, and how the graph is checked against the loop.

use super::{FrameCues, Pilot, RigGeometry, ScanShape, StereoStage};
use crate::mono::{MonoNet, MonoShape, infer, preprocess};
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
    let mut stage = StereoStage::new(s.rig, s.stereo, s.scan)?;
    let mut pilot = Pilot::new(s.persist, s.strategy, s.camera_hz, s.avoid);
    let mut out = Vec::new();
    for (topic, _, bytes) in &msgs {
        if Topic::from_suffix(topic) != Some(Topic::CameraStereo) {
            continue;
        }
        let Ok((h, pair)) = decode::<StereoPair>(bytes) else {
            continue;
        };
        let (w, hgt) = (pair.width as usize, pair.height as usize);
        let Ok(d) = stage.process(&pair.left, &pair.right, w, hgt) else {
            continue;
        };
        let mono = match &s.mono {
            Some((net, shape, dev)) => {
                let input = preprocess(&d.left, w, hgt, shape)?;
                Some(infer(net, &input, shape, dev)?.scan)
            }
            None => None,
        };
        // The newest state at or before the pair (the policy node's rule).
        let k = states.partition_point(|(t, _)| *t <= h.stamp_ns);
        let state = k
            .checked_sub(1)
            .map(|i| &states[i].1)
            .or(states.first().map(|x| &x.1));
        let (decided, cmd) = pilot.step(
            FrameCues {
                t: h.stamp_ns as f64 * 1e-9,
                stereo: &d.scan,
                mono: mono.as_deref(),
                train_steps: u64::MAX,
            },
            h.stamp_ns,
            state,
        );
        // No answer: no setpoint, as on the bus.
        let Some(cmd) = cmd else {
            continue;
        };
        out.push(Answer {
            header: h,
            setpoint: Setpoint {
                forward: cmd.forward as f32,
                left: cmd.left as f32,
                up: cmd.up as f32,
                yaw_rate: cmd.yaw_rate as f32,
            },
            mode: decided.mode,
        });
    }
    Ok(out)
}
