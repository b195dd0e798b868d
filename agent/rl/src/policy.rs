//! A trained twin policy as the onboard `policy` node runs it: the acting
//! network (`policy.bpk`) and a card (`policy.toml`) that says how to build its
//! observation and read its action, so the robot feeds it exactly what the
//! twin did.

use crate::RlError;
use crate::env::{TWIN_SPEED, TWIN_YAW_RATES};
use crate::learner::{load_module, read_state, write_state};
use crate::mlp::{Mlp, argmax, matrix, values};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the exported network maps observations to commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCard {
    /// `dqn` (argmax over the yaw-rate table) or `sac` (tanh of the mean).
    pub learner: String,
    /// Layer widths of the network, input first.
    pub sizes: Vec<usize>,
    /// Beams of the depth scan the network reads.
    pub scan_beams: usize,
    /// Range the scan is divided by (m); farther or invalid reads count as this.
    pub scan_range: f32,
    /// The normalised context is part of the observation.
    pub observe_context: bool,
    /// Discrete actions: forward speed (m/s).
    pub speed: f64,
    /// Discrete actions: yaw rates (rad/s).
    pub yaw_rates: Vec<f64>,
    /// Decisions per second the network was trained at; between decisions the
    /// last command is held (cards written before this field existed: 30).
    #[serde(default = "thirty_hz")]
    pub control_hz: f64,
}

fn thirty_hz() -> f64 {
    30.0
}

/// Write the card for a twin policy beside its network.
pub fn write_card(card: &PolicyCard, net: &Path) -> Result<PathBuf, RlError> {
    let path = net.with_extension("toml");
    write_state(card, &path)?;
    Ok(path)
}

/// The card of a twin policy trained with these settings.
pub fn twin_card(
    learner: &str,
    sizes: Vec<usize>,
    observe_context: bool,
    control_hz: f64,
) -> PolicyCard {
    PolicyCard {
        learner: learner.to_string(),
        sizes,
        scan_beams: 32,
        scan_range: 10.0,
        observe_context,
        speed: TWIN_SPEED,
        yaw_rates: TWIN_YAW_RATES.to_vec(),
        control_hz,
    }
}

/// When to decide anew: the policy decides on the first frame, then on the
/// first frame at least one decision period (less a quarter of a period, for
/// stamp jitter) after its last decision, and holds its command in between,
/// as the twin did in training.
#[derive(Debug, Clone)]
pub struct DecisionClock {
    period_ns: u64,
    last_ns: Option<u64>,
}

impl DecisionClock {
    /// A clock for `control_hz` decisions per second.
    pub fn new(control_hz: f64) -> Self {
        let period_ns = if control_hz.is_finite() && control_hz > 0.0 {
            (1e9 / control_hz) as u64
        } else {
            0
        };
        Self {
            period_ns,
            last_ns: None,
        }
    }

    /// Whether the frame stamped `stamp_ns` gets a new decision (and if so,
    /// it becomes the last one). A stamp that goes backwards (a restarted
    /// source) decides anew.
    pub fn due(&mut self, stamp_ns: u64) -> bool {
        let due = match self.last_ns {
            None => true,
            Some(last) if stamp_ns < last => true,
            Some(last) => stamp_ns - last >= self.period_ns - self.period_ns / 4,
        };
        if due {
            self.last_ns = Some(stamp_ns);
        }
        due
    }
}

/// What the policy sees on the robot.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInput<'a> {
    /// Depth per column, left to right (m); non-finite = nothing seen.
    pub scan: &'a [f32],
    /// Velocity in the heading frame (m/s: forward, left, up).
    pub velocity: [f32; 3],
    /// Goal relative to the vehicle in the heading frame (m).
    pub goal: [f32; 3],
    /// Roll and pitch (rad).
    pub roll_pitch: [f32; 2],
    /// The context, normalised as `sim::Context::to_vector` does.
    pub context: &'a [f32],
}

/// A loaded policy.
pub struct OnboardPolicy {
    card: PolicyCard,
    net: Mlp,
    device: Device,
}

impl OnboardPolicy {
    /// Load `net` (`.bpk`) and its card (same name, `.toml`).
    pub fn load(net: &Path, device: &Device) -> Result<Self, RlError> {
        let card_path = net.with_extension("toml");
        let card: PolicyCard = read_state(&card_path)?;
        if card.sizes.len() < 2
            || card.scan_beams == 0
            || !(card.control_hz.is_finite() && card.control_hz > 0.0)
            || card.scan_range.is_nan()
            || card.scan_range <= 0.0
        {
            return Err(RlError::Checkpoint {
                path: card_path.display().to_string(),
                reason: "card needs at least two layer sizes, scan beams, a positive range and a positive control_hz"
                    .into(),
            });
        }
        let shell = Mlp::seeded(&card.sizes, device, 0);
        let module = load_module(shell, net)?;
        // Weights that load but give no finite output (NaN from a diverged
        // learner, a flipped bit) are refused before anything flies on them.
        let probe =
            values(module.forward(matrix(vec![0.5; card.sizes[0]], 1, card.sizes[0], device)));
        if probe.iter().any(|v| !v.is_finite()) {
            return Err(RlError::Checkpoint {
                path: net.display().to_string(),
                reason: "its weights give non-finite outputs".into(),
            });
        }
        Ok(Self {
            card,
            net: module,
            device: device.clone(),
        })
    }

    /// The card.
    pub fn card(&self) -> &PolicyCard {
        &self.card
    }

    /// The observation vector, laid out as the twin's `Observation::vector`; the
    /// scan is resampled (nearest-obstacle pooling) to the card's beam count.
    pub fn observation(&self, input: &PolicyInput<'_>) -> Result<Vec<f32>, RlError> {
        let c = &self.card;
        if input.scan.is_empty() {
            return Err(RlError::Action("empty depth scan".into()));
        }
        let n = input.scan.len();
        let mut v = Vec::with_capacity(c.sizes[0]);
        for b in 0..c.scan_beams {
            let lo = b * n / c.scan_beams;
            let hi = ((b + 1) * n / c.scan_beams).max(lo + 1).min(n);
            let d = input.scan[lo..hi]
                .iter()
                .map(|d| {
                    if d.is_finite() && *d > 0.0 {
                        d.min(c.scan_range)
                    } else {
                        c.scan_range
                    }
                })
                .fold(c.scan_range, f32::min);
            v.push(d / c.scan_range);
        }
        v.extend(input.velocity.iter().map(|x| x / 3.0));
        v.extend(input.goal.iter().map(|x| (x / 10.0).clamp(-3.0, 3.0)));
        v.extend(input.roll_pitch);
        if c.observe_context {
            v.extend_from_slice(input.context);
        }
        if v.len() != c.sizes[0] {
            return Err(RlError::Action(format!(
                "observation of {} values, the network takes {} (context of {} values given)",
                v.len(),
                c.sizes[0],
                input.context.len()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(RlError::Action(
                "non-finite velocity, goal or attitude".into(),
            ));
        }
        Ok(v)
    }

    /// Forward speed (m/s) and yaw rate (rad/s) for one observation.
    pub fn act(&self, input: &PolicyInput<'_>) -> Result<(f64, f64), RlError> {
        let obs = self.observation(input)?;
        let n = obs.len();
        let out = values(self.net.forward(matrix(obs, 1, n, &self.device)));
        if out.iter().any(|v| !v.is_finite()) {
            return Err(RlError::Action(
                "the network gave non-finite outputs".into(),
            ));
        }
        match self.card.learner.as_str() {
            // Q-values or action logits: the greedy action is the largest.
            "dqn" | "ppo" => {
                let best = argmax(&out);
                let yaw = self.card.yaw_rates.get(best).copied().ok_or_else(|| {
                    RlError::Action(format!("action {best} has no yaw rate in the card"))
                })?;
                Ok((self.card.speed, yaw))
            }
            "sac" => {
                let a0 = f64::from(out.first().copied().unwrap_or(0.0)).tanh();
                let a1 = f64::from(out.get(1).copied().unwrap_or(0.0)).tanh();
                Ok((a0 + 1.0, 1.5 * a1))
            }
            other => Err(RlError::Action(format!(
                "unknown learner `{other}` in the policy card"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_decides_once_per_period_and_holds_in_between() {
        // A 10 Hz policy fed 30 Hz frames decides on every third frame.
        let mut clock = DecisionClock::new(10.0);
        let frame_ns = 1_000_000_000 / 30;
        let due: Vec<bool> = (0..9u64).map(|k| clock.due(k * frame_ns)).collect();
        assert_eq!(
            due,
            [true, false, false, true, false, false, true, false, false]
        );
        // A source that restarts its clock gets a decision at once.
        assert!(clock.due(0));
        // At the frame rate itself every frame decides, jitter or not.
        let mut clock = DecisionClock::new(30.0);
        assert!((0..30u64).all(|k| clock.due(k * frame_ns + (k % 3) * 1_000_000)));
    }

    #[test]
    fn a_ppo_policy_flies_its_greedy_action() {
        use crate::learner::Learner;
        let d = crate::cpu();
        let dir = std::env::temp_dir().join(format!("ppo-card-{}", std::process::id()));
        // 32 beams, velocity, goal, roll and pitch; no context.
        let ppo = crate::ppo::Ppo::new(crate::ppo::PpoConfig::default(), 40, 5, &d, 7).unwrap();
        let net = dir.join("policy.bpk");
        ppo.export_policy(&net).unwrap();
        write_card(
            &twin_card(ppo.kind(), ppo.policy_sizes(), false, 10.0),
            &net,
        )
        .unwrap();
        let policy = OnboardPolicy::load(&net, &d).unwrap();
        let scan: Vec<f32> = (0..64).map(|i| if i < 20 { 0.8 } else { 8.0 }).collect();
        let input = PolicyInput {
            scan: &scan,
            velocity: [1.5, 0.0, 0.0],
            goal: [10.0, 0.0, 0.0],
            roll_pitch: [0.0, 0.0],
            context: &[],
        };
        let (speed, yaw) = policy.act(&input).unwrap();
        // The greedy action is the network's largest logit.
        let obs = policy.observation(&input).unwrap();
        let logits = values(policy.net.forward(matrix(obs, 1, 40, &d)));
        let best = (0..5).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
        assert_eq!((speed, yaw), (TWIN_SPEED, TWIN_YAW_RATES[best]));
        // The same file with NaN (0xFFFFFFFF) over the second half of its
        // bytes, where the tensor data lies: refused at load.
        let good = std::fs::read(&net).unwrap();
        let mut bad = good.clone();
        let from = (good.len() / 2) & !3;
        bad[from..].iter_mut().for_each(|b| *b = 0xFF);
        std::fs::write(&net, &bad).unwrap();
        match OnboardPolicy::load(&net, &d) {
            Err(RlError::Checkpoint { reason, .. }) => {
                assert!(reason.contains("non-finite"), "{reason}")
            }
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("NaN weights loaded"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cards_without_a_rate_read_as_thirty_hertz() {
        let text = "learner = \"dqn\"\nsizes = [43, 8, 5]\nscan_beams = 32\nscan_range = 10.0\nobserve_context = true\nspeed = 1.5\nyaw_rates = [-1.5, -0.6, 0.0, 0.6, 1.5]\n";
        let card: PolicyCard = toml::from_str(text).unwrap();
        assert_eq!(card.control_hz, 30.0);
    }
}
