//! A differential-drive ground robot: two wheels with speed lag and limits.

/// Parameters of the ground robot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundParams {
    /// Distance between the wheels (m).
    pub track: f64,
    /// Largest wheel speed (m/s).
    pub max_wheel_speed: f64,
    /// Wheel speed time constant (s).
    pub wheel_tau: f64,
    /// Height of the camera above the floor (m).
    pub camera_height: f64,
}

impl Default for GroundParams {
    fn default() -> Self {
        Self {
            track: 0.3,
            max_wheel_speed: 1.5,
            wheel_tau: 0.1,
            camera_height: 0.3,
        }
    }
}

/// State and parameters of a differential-drive robot on the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundRobot {
    /// Parameters.
    pub params: GroundParams,
    /// Position on the floor (m).
    pub position: [f64; 2],
    /// Heading (rad).
    pub yaw: f64,
    /// Actual left and right wheel speeds (m/s).
    pub wheels: [f64; 2],
}

impl GroundRobot {
    /// A robot at rest.
    pub fn new(params: GroundParams, position: [f64; 2], yaw: f64) -> Self {
        Self {
            params,
            position,
            yaw,
            wheels: [0.0; 2],
        }
    }

    /// Forward speed and yaw rate from the wheel speeds.
    pub fn twist(&self) -> (f64, f64) {
        let [l, r] = self.wheels;
        ((l + r) * 0.5, (r - l) / self.params.track)
    }

    /// Advance by `dt` seconds towards the commanded forward speed and yaw rate.
    pub fn step(&mut self, forward: f64, yaw_rate: f64, dt: f64) {
        let p = self.params;
        let half = yaw_rate * p.track * 0.5;
        let target = [
            (forward - half).clamp(-p.max_wheel_speed, p.max_wheel_speed),
            (forward + half).clamp(-p.max_wheel_speed, p.max_wheel_speed),
        ];
        let alpha = 1.0 - (-dt / p.wheel_tau).exp();
        for (w, t) in self.wheels.iter_mut().zip(target) {
            *w += (t - *w) * alpha;
        }
        let (v, w) = self.twist();
        // Exact integration of a unicycle over the step (arc of constant curvature).
        let yaw1 = self.yaw + w * dt;
        if w.abs() > 1e-9 {
            self.position[0] += v / w * (yaw1.sin() - self.yaw.sin());
            self.position[1] -= v / w * (yaw1.cos() - self.yaw.cos());
        } else {
            self.position[0] += v * dt * self.yaw.cos();
            self.position[1] += v * dt * self.yaw.sin();
        }
        self.yaw = yaw1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_straight_and_turns_in_a_circle() {
        let mut g = GroundRobot::new(GroundParams::default(), [0.0, 0.0], 0.0);
        for _ in 0..400 {
            g.step(1.0, 0.0, 0.005);
        }
        assert!(g.position[0] > 1.5 && g.position[1].abs() < 1e-9);
        assert!((g.twist().0 - 1.0).abs() < 1e-3);
        // Constant turn: returns near its start after one revolution of radius v/ω.
        let mut g = GroundRobot::new(GroundParams::default(), [0.0, 0.0], 0.0);
        g.wheels = [0.5 - 0.15, 0.5 + 0.15]; // v = 0.5, ω = 1.0 already reached
        let steps = (std::f64::consts::TAU / 0.001).round() as usize;
        for _ in 0..steps {
            g.step(0.5, 1.0, 0.001);
        }
        assert!(
            g.position[0].abs() < 1e-3 && g.position[1].abs() < 1e-3,
            "{:?}",
            g.position
        );
        // Wheel limits hold.
        g.step(10.0, 0.0, 1.0);
        assert!(g.wheels.iter().all(|w| w.abs() <= 1.5));
    }
}
