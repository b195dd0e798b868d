//! SELFI's inputs in the twin from the loop's own stages (`sensing =
//! "stereo"`): the rendered pair through the stereo stage (the flight loop's
//! matcher, rig and scan), walkers tracked from that depth
//! ([`rl::selfi::tracking::DepthTracker`]), pose and velocity from the
//! flight controller's `state` (the twin's vehicle fills it as an FC does).
//! Nothing of the twin's geometry or walkers reaches the policy.

use crate::fly::{twin_geometry, twin_state};
use crate::pipeline::{LoopConfig, ScanShape, StereoStage};
use rl::RlError;
use rl::selfi::data::SCAN_RANGE;
use rl::selfi::nav::{MakeSenses, Sensed, Senses, TruthSensing, resample_scan};
use rl::selfi::tracking::{DepthTracker, ScanCamera};
use rl::selfi::{SelfiConfig, Sensing};
use sim::env::{EnvConfig, Observation};

/// The senses of `cfg.nav.sensing`.
pub fn senses_for(cfg: &SelfiConfig) -> Box<dyn MakeSenses> {
    match cfg.nav.sensing {
        Sensing::Stereo => Box::new(StereoSensing::default()),
        Sensing::Truth => Box::new(TruthSensing),
    }
}

/// Makes [`StereoSenses`]: the loop's default matcher settings on the CPU.
#[derive(Debug, Clone)]
pub struct StereoSensing {
    /// The matcher's settings (the flight loop's).
    pub params: stereo::SgmParams,
}

impl Default for StereoSensing {
    fn default() -> Self {
        Self {
            params: LoopConfig::default().stereo,
        }
    }
}

impl MakeSenses for StereoSensing {
    fn renders(&self) -> bool {
        true
    }

    fn make(&self, cfg: &SelfiConfig, _seed: u64) -> Result<Box<dyn Senses>, RlError> {
        Ok(Box::new(StereoSenses::new(cfg, self.params)?))
    }

    fn describe(&self) -> String {
        format!(
            "stereo: the loop's stereo stage ({} disparities, {:?} paths), walkers tracked from its depth, pose and velocity from the flight controller's state",
            self.params.max_disp, self.params.paths
        )
    }
}

/// One flight's senses from the stereo pair; see the module's description.
pub struct StereoSenses {
    stage: StereoStage,
    tracker: DepthTracker,
}

fn err(what: &str, e: impl std::fmt::Display) -> RlError {
    RlError::Config(format!("{what}: {e:#}"))
}

impl StereoSenses {
    /// On the twin's rig with matcher settings `params`.
    pub fn new(cfg: &SelfiConfig, params: stereo::SgmParams) -> Result<Self, RlError> {
        let rig = EnvConfig::default().rig;
        let geometry = twin_geometry(&rig).map_err(|e| err("the twin's rig", e))?;
        let k = rig.intrinsics;
        // One scan column per image column: the tracker needs the resolution;
        // the policy's beams are taken from it (nearest reading per beam).
        let shape = ScanShape {
            columns: k.width,
            band: 0.2,
            min_depth: 0.2,
            max_depth: SCAN_RANGE,
        };
        let stage =
            StereoStage::new(geometry, params, shape).map_err(|e| err("the stereo stage", e))?;
        let camera = ScanCamera {
            width: k.width,
            fx: k.fx,
            cx: k.cx,
        };
        Ok(Self {
            stage,
            tracker: DepthTracker::new(cfg.nav.tracker.clone(), camera, cfg.nav.track_range),
        })
    }
}

impl Senses for StereoSenses {
    fn reset(&mut self) {
        self.tracker.reset();
    }

    fn sense(
        &mut self,
        obs: &Observation,
        _world: Option<&sim::world::World>,
        dt: f64,
    ) -> Result<Sensed, RlError> {
        let pair = obs.stereo.as_ref().ok_or_else(|| {
            RlError::Config("stereo sensing needs the twin to render the pair".into())
        })?;
        let depth = self
            .stage
            .match_pair(&pair.left, &pair.right, pair.width, pair.height)
            .map_err(|e| err("stereo matching", e))?;
        // The flight controller's estimate, as it reaches the agent on `state`.
        let state = twin_state(obs);
        let yaw = crate::selfi::yaw_from_quat(state.attitude);
        let pose = [state.position[0], state.position[1], yaw];
        let walkers = self.tracker.update(&depth.scan, pose, dt);
        Ok(Sensed {
            scan: resample_scan(&depth.scan),
            walkers,
            pose,
            velocity: [state.velocity[0], state.velocity[1]],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rl::selfi::nav::NavEnv;

    /// The stereo senses see what the truth senses see, from the pair alone:
    /// the scan within the matcher's error where both see something near, the
    /// same pose, and walkers in the camera's view found where they are.
    #[test]
    fn stereo_senses_see_the_twins_scan_and_walkers_from_the_pair() {
        let cfg = SelfiConfig::default();
        let mut env = NavEnv::new(&cfg, 3, &StereoSensing::default()).unwrap();
        let mut truth = TruthSensing.make(&cfg, 3).unwrap();
        env.reset().unwrap();
        let (mut near, mut close, mut found, mut tracked) = (0, 0, 0, 0);
        let (mut in_view, mut seen) = (0, 0);
        for _ in 0..60 {
            // Hover and turn slowly, so walkers come and go through the view.
            let s = env.step([-1.0, 0.3]).unwrap();
            if s.terminated || s.truncated {
                env.reset().unwrap();
                continue;
            }
            let got = env.sensed().unwrap().clone();
            let o = env.twin_observation().unwrap();
            let t = truth.sense(o, env.world(), cfg.plan.dt()).unwrap();
            let off = got.pose.iter().zip(&t.pose).map(|(a, b)| (a - b).abs());
            assert!(
                off.fold(0.0, f64::max) < 1e-4,
                "pose from the FC's state {:?}, the twin's {:?}",
                got.pose,
                t.pose
            );
            // The ray cast gives range along beams evenly spread over the
            // 90° view; the stereo scan gives depth Z: compare Z.
            let n = t.scan.len();
            for (i, (a, r)) in got.scan.iter().zip(&t.scan).enumerate() {
                let angle = std::f32::consts::FRAC_PI_4 * (1.0 - 2.0 * i as f32 / (n - 1) as f32);
                let b = r * angle.cos();
                if b < 3.0 {
                    near += 1;
                    close += usize::from((a - b).abs() < 0.15 * b);
                }
            }
            // Walkers in view (within 40° of the heading) and range.
            for x in &t.walkers {
                let (dx, dy) = (x.position[0] - got.pose[0], x.position[1] - got.pose[1]);
                let bearing = (dy.atan2(dx) - got.pose[2] + std::f64::consts::PI)
                    .rem_euclid(std::f64::consts::TAU)
                    - std::f64::consts::PI;
                if bearing.abs() < 0.7 && dx.hypot(dy) < cfg.nav.track_range - 0.5 {
                    in_view += 1;
                    seen += usize::from(got.walkers.iter().any(|w| {
                        (w.position[0] - x.position[0]).hypot(w.position[1] - x.position[1]) < 0.6
                    }));
                }
            }
            tracked += got.walkers.len();
            for w in &got.walkers {
                // Every reported walker is near a true one.
                let d = t
                    .walkers
                    .iter()
                    .map(|x| (x.position[0] - w.position[0]).hypot(x.position[1] - w.position[1]))
                    .fold(f64::INFINITY, f64::min);
                found += usize::from(d < 0.6);
            }
        }
        assert!(near > 200, "too few near readings to judge: {near}");
        assert!(
            close as f64 > 0.8 * near as f64,
            "stereo scan within 15 % of the ray cast's depth at {close} of {near} near beams"
        );
        eprintln!(
            "near beams {near}, within 15 %: {close}; reported walkers {tracked}, near a true one {found}; walkers in view {in_view}, reported {seen}"
        );
        assert!(tracked > 0, "no walker tracked from depth in 60 decisions");
        assert!(
            found as f64 >= 0.8 * tracked as f64,
            "{found} of {tracked} reported walkers are near a true one"
        );
        // The scan comes from the pair: the same left image for both eyes
        // (zero disparity everywhere) reads as nothing in range.
        let mut o = env.twin_observation().unwrap().clone();
        let mut senses = StereoSensing::default().make(&cfg, 3).unwrap();
        let real = senses.sense(&o, None, 0.2).unwrap();
        assert!(
            real.scan.iter().any(|d| *d < SCAN_RANGE - 1.0),
            "{:?}",
            real.scan
        );
        let pair = o.stereo.as_mut().unwrap();
        pair.right = pair.left.clone();
        let flat = senses.sense(&o, None, 0.2).unwrap();
        assert!(
            flat.scan.iter().all(|d| *d == SCAN_RANGE),
            "{:?}",
            flat.scan
        );
        // Without a rendered pair it says so.
        o.stereo = None;
        let e = senses.sense(&o, None, 0.2).unwrap_err().to_string();
        assert!(e.contains("render"), "{e}");
    }
}
