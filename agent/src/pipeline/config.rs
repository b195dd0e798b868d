//! The loop's settings on the robot: every stage's, none of the twin's. A
//! TOML file (`--config`), every key optional, unknown keys refused; the
//! twin's settings (`agent::fly::FlyConfig`) are these plus the room and the
//! flight.

use super::{AvoidConfig, ExternalConfig};
use crate::device::Backend;
use crate::learner::LearnerConfig;
use crate::mono::MonoShape;
use crate::persist::PersistConfig;
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The most memory the learner's replay may take (2 GiB: a quarter of an
/// 8 GB Jetson).
pub const MAX_REPLAY_BYTES: u128 = 2 << 30;

/// Settings of the loop's stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Backend of the networks.
    pub backend: Backend,
    /// Switching rule and training wheels.
    pub persist: PersistConfig,
    /// The reactive policy.
    pub avoid: AvoidConfig,
    /// Limits on velocity commands from outside the agent (`agent node policy --external`).
    pub external: ExternalConfig,
    /// The mono network's shape (and the depth scan's).
    pub mono: MonoShape,
    /// The online learner.
    pub learner: LearnerConfig,
    /// Stereo matcher.
    pub stereo: stereo::SgmParams,
    /// Where the stereo matcher runs: `cpu`, `gpu` (the same matcher on
    /// Vulkan compute, equal disparities) or `auto` (a hardware GPU when one
    /// opens, else the CPU).
    pub stereo_backend: Backend,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Cpu,
            persist: PersistConfig::default(),
            avoid: AvoidConfig::default(),
            external: ExternalConfig::default(),
            mono: MonoShape::default(),
            learner: LearnerConfig::default(),
            stereo: stereo::SgmParams {
                max_disp: 32,
                ..stereo::SgmParams::default()
            },
            stereo_backend: Backend::Cpu,
        }
    }
}

impl LoopConfig {
    /// Read and check a settings file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let c: LoopConfig = toml::from_str(&text)
            .with_context(|| format!("malformed config {}", path.display()))?;
        c.validate(f64::INFINITY)
            .with_context(|| format!("invalid config {}", path.display()))?;
        Ok(c)
    }

    /// Check ranges; `ceiling` bounds the hold altitude (the room's height in
    /// the twin). The message names the key.
    pub fn validate(&self, ceiling: f64) -> Result<()> {
        self.avoid.validate(ceiling).map_err(anyhow::Error::msg)?;
        self.external.validate().map_err(anyhow::Error::msg)?;
        self.persist.validate().map_err(anyhow::Error::msg)?;
        self.mono.plan()?;
        let l = &self.learner;
        if l.batch == 0
            || l.recent == 0
            || l.publish_every == 0
            || !(l.learning_rate > 0.0 && l.learning_rate < 1.0)
        {
            bail!(
                "learner: batch, recent and publish_every must be positive and learning_rate in (0, 1)"
            );
        }
        // The replay memory is allocated as it fills: bound it before a
        // flight's worth of frames exhausts the board's memory. A sample holds
        // the network's input image and a coarse map no larger than it.
        let per_sample = 8 * self.mono.width * self.mono.height + 16 * self.mono.columns;
        let bytes = (l.recent as u128 + l.reservoir as u128) * per_sample as u128;
        if bytes > MAX_REPLAY_BYTES {
            bail!(
                "learner: recent + reservoir = {} samples of about {per_sample} bytes need {:.1} GiB; at most {:.0} GiB (lower `recent` or `reservoir`)",
                l.recent as u128 + l.reservoir as u128,
                bytes as f64 / (1u64 << 30) as f64,
                MAX_REPLAY_BYTES as f64 / (1u64 << 30) as f64
            );
        }
        if l.batch > l.recent + l.reservoir {
            bail!(
                "learner: batch {} is larger than the replay memory ({} samples)",
                l.batch,
                l.recent + l.reservoir
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_keys_are_refused_and_ranges_checked() {
        let e = toml::from_str::<LoopConfig>("[context]\nlight = 1.0").unwrap_err();
        assert!(e.to_string().contains("context"), "{e}");
        let mut c = LoopConfig::default();
        c.validate(f64::INFINITY).unwrap();
        c.avoid.unknown_ahead = 2.0;
        let e = c.validate(f64::INFINITY).unwrap_err().to_string();
        assert!(e.contains("avoid.unknown_ahead"), "{e}");
        // A replay memory no board holds is refused before anything allocates.
        let mut c = LoopConfig::default();
        c.learner.reservoir = usize::MAX / 2;
        let e = c.validate(f64::INFINITY).unwrap_err().to_string();
        assert!(e.contains("lower `recent` or `reservoir`"), "{e}");
        c.learner.reservoir = 1024;
        c.learner.batch = 100_000;
        let e = c.validate(f64::INFINITY).unwrap_err().to_string();
        assert!(e.contains("larger than the replay memory"), "{e}");
    }
}
