//! The loop's settings on the robot: every stage's, none of the twin's. A
//! TOML file (`--config`), every key optional, unknown keys refused; the
//! twin's settings (`agent::fly::FlyConfig`) are these plus the room and the
//! flight.

use super::AvoidConfig;
use crate::device::Backend;
use crate::learner::LearnerConfig;
use crate::mono::MonoShape;
use crate::persist::PersistConfig;
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    /// The mono network's shape (and the depth scan's).
    pub mono: MonoShape,
    /// The online learner.
    pub learner: LearnerConfig,
    /// Stereo matcher.
    pub stereo: stereo::SgmParams,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Cpu,
            persist: PersistConfig::default(),
            avoid: AvoidConfig::default(),
            mono: MonoShape::default(),
            learner: LearnerConfig::default(),
            stereo: stereo::SgmParams {
                max_disp: 32,
                ..stereo::SgmParams::default()
            },
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
    }
}
