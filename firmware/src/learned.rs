//! The learned position controller: a motor-level policy (trained by `agent
//! learn-to-fly`, flown through [`crate::policy`]) that holds the vehicle on
//! a position target, the target moved by the agent's velocity setpoints as
//! today's setpoints move the cascaded controller's.
//!
//! Each control step builds the trainer's observation from the vehicle's
//! state — position error to the target, attitude as a rotation matrix
//! (row-major), world velocity, body rates, the last motor commands, and the
//! time integral of the position error (clamped to ±[`INTEGRAL_LIMIT`]) — and
//! runs the policy; its four outputs are the motor commands in [−1, 1]. The
//! integral is what lets one policy hover on the spot across vehicles whose
//! hover thrust it does not know (a policy of the state alone settles where
//! its position feedback makes up the thrust error: measured 0.16–0.25 m off
//! the target on randomised vehicles).
//! [`LearnedVehicle`] flies it against the rigid-body model of
//! [`crate::quad`], the vehicle the policy was trained on, for builds with no
//! sensors (QEMU, the host build, tests).

use crate::policy::{Policy, PolicyError};
use crate::quad::{QuadParams, QuadState, rotation_matrix, step as quad_step};

/// Observation length the policy must take.
pub const OBS: usize = 25;
/// Largest magnitude of each axis of the position error's integral (m·s).
pub const INTEGRAL_LIMIT: f32 = 2.0;

/// Add `dt` seconds of position error `error` to `integral`, clamped (the
/// trainer's environment and the controller share it).
pub fn integrate(integral: &mut [f32; 3], error: &[f32; 3], dt: f32) {
    for (i, e) in integral.iter_mut().zip(error) {
        let v = *i + e * dt;
        *i = if v.is_finite() {
            v.clamp(-INTEGRAL_LIMIT, INTEGRAL_LIMIT)
        } else {
            0.0
        };
    }
}
/// Motor commands the policy must give.
pub const MOTORS: usize = 4;

/// The policy's observation of state `s` with position target `target`, last
/// motor commands `last` and position-error integral `integral`: the layout
/// the trainer's environment uses too (it calls this).
pub fn observation(
    s: &QuadState,
    target: &[f32; 3],
    last: &[f32; MOTORS],
    integral: &[f32; 3],
) -> [f32; OBS] {
    let mut o = [0.0f32; OBS];
    for ((o, p), t) in o.iter_mut().zip(s.position).zip(target) {
        *o = p - t;
    }
    let r = rotation_matrix(&s.attitude);
    for (k, row) in r.iter().enumerate() {
        o[3 + 3 * k..6 + 3 * k].copy_from_slice(row);
    }
    o[12..15].copy_from_slice(&s.velocity);
    o[15..18].copy_from_slice(&s.rates);
    o[18..22].copy_from_slice(last);
    o[22..25].copy_from_slice(integral);
    o
}

/// A policy flying toward a position target.
#[derive(Debug, Clone, Copy)]
pub struct LearnedController<'a> {
    policy: Policy<'a>,
    target: [f32; 3],
    last: [f32; MOTORS],
    integral: [f32; 3],
    /// The control period (s), for the integral.
    dt: f32,
    started: bool,
    /// The observation of the last step.
    seen: [f32; OBS],
}

impl<'a> LearnedController<'a> {
    /// A controller for `policy` (25 observations in, 4 motors out) run
    /// every `dt` seconds, its target at `position`, its last command `hover`
    /// on every motor.
    pub fn new(
        policy: Policy<'a>,
        position: [f32; 3],
        hover: f32,
        dt: f32,
    ) -> Result<Self, PolicyError> {
        if policy.inputs() != OBS || policy.outputs() != MOTORS {
            return Err(PolicyError::Shape);
        }
        Ok(Self {
            policy,
            target: position,
            last: [hover; MOTORS],
            integral: [0.0; 3],
            dt,
            started: false,
            seen: [0.0; OBS],
        })
    }

    /// The position target (world frame, m).
    pub fn target(&self) -> [f32; 3] {
        self.target
    }

    /// Put the target at `position`.
    pub fn set_target(&mut self, position: [f32; 3]) {
        self.target = position;
    }

    /// Move the target at `velocity` (world frame, m/s) for `dt` seconds.
    pub fn move_target(&mut self, velocity: [f32; 3], dt: f32) {
        for (t, v) in self.target.iter_mut().zip(velocity) {
            if v.is_finite() {
                *t += v * dt;
            }
        }
    }

    /// The trainer's observation of `s`.
    pub fn observe(&self, s: &QuadState) -> [f32; OBS] {
        observation(s, &self.target, &self.last, &self.integral)
    }

    /// The observation the last [`LearnedController::step`] flew on.
    pub fn last_observation(&self) -> [f32; OBS] {
        self.seen
    }

    /// One control step: the motor commands for state `s`. Every state but
    /// the first adds its error to the integral (the first is where the
    /// trainer's episodes start, at zero).
    pub fn step(&mut self, s: &QuadState) -> [f32; MOTORS] {
        if self.started {
            let mut e = [0.0f32; 3];
            for (k, v) in e.iter_mut().enumerate() {
                *v = s.position[k] - self.target[k];
            }
            integrate(&mut self.integral, &e, self.dt);
        }
        self.started = true;
        let obs = self.observe(s);
        self.seen = obs;
        let mut out = [0.0f32; MOTORS];
        // The shapes were checked in `new`.
        if self.policy.forward(&obs, &mut out).is_err() {
            out = [-1.0; MOTORS];
        }
        for v in &mut out {
            *v = if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                -1.0
            };
        }
        self.last = out;
        out
    }
}

/// The learned controller flying the rigid-body quadrotor: the policy at
/// its control rate, the body integrated over each control period in one
/// Runge-Kutta step (the trainer's `task.substeps = 1`).
#[derive(Debug, Clone, Copy)]
pub struct LearnedVehicle<'a> {
    /// The vehicle.
    pub params: QuadParams,
    /// Its state.
    pub state: QuadState,
    /// The controller.
    pub controller: LearnedController<'a>,
    motors: [f32; MOTORS],
}

impl<'a> LearnedVehicle<'a> {
    /// Hovering at `position` (motors at hover speed), the target there, the
    /// policy run every `dt` seconds.
    pub fn hovering(
        params: QuadParams,
        policy: Policy<'a>,
        position: [f32; 3],
        dt: f32,
    ) -> Result<Self, PolicyError> {
        let rpm = params.hover_rpm().ok_or(PolicyError::Vehicle)?;
        let hover = params.action_for_rpm(rpm);
        let mut state = QuadState::at_rest(position);
        state.rpm = [rpm; 4];
        Ok(Self {
            params,
            state,
            controller: LearnedController::new(policy, position, hover, dt)?,
            motors: [hover; MOTORS],
        })
    }

    /// A control step (the policy picks the motor commands) then a control
    /// period of flight under them.
    pub fn step(&mut self) {
        self.motors = self.controller.step(&self.state);
        quad_step(
            &self.params,
            &mut self.state,
            &self.motors,
            self.controller.dt,
        );
    }

    /// Distance from the target (m).
    pub fn error(&self) -> f32 {
        let t = self.controller.target();
        let mut sq = 0.0;
        for (p, t) in self.state.position.iter().zip(t) {
            let d = p - t;
            sq += d * d;
        }
        crate::quad::sqrt(sq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::param_count;

    /// A policy that commands `hover` on every motor whatever it sees: zero
    /// weights, output bias atanh(hover).
    fn constant(hover: f32) -> ([usize; 3], std::vec::Vec<f32>) {
        let sizes = [OBS, 8, MOTORS];
        let mut p = std::vec![0.0f32; param_count(&sizes)];
        let n = p.len();
        for b in &mut p[n - MOTORS..] {
            *b = 0.5 * ((1.0 + hover) / (1.0 - hover)).ln();
        }
        (sizes, p)
    }

    #[test]
    fn the_hover_command_keeps_the_vehicle_on_its_target() {
        let q = QuadParams::CRAZYFLIE;
        let hover = q.action_for_rpm(q.hover_rpm().unwrap());
        let (sizes, p) = constant(hover);
        let pol = Policy::new(&sizes, &p).unwrap();
        let mut v = LearnedVehicle::hovering(q, pol, [0.0, 0.0, 1.0], 0.01).unwrap();
        for _ in 0..300 {
            v.step();
        }
        assert!(v.error() < 1e-3, "drifted {} m", v.error());
        // The target moves with velocity setpoints; a policy that ignores it
        // stays behind by the distance moved.
        v.controller.move_target([0.5, 0.0, 0.0], 1.0);
        assert!((v.error() - 0.5).abs() < 2e-3, "{}", v.error());
        v.step();
        let o = v.controller.last_observation();
        assert!((o[0] + 0.5).abs() < 2e-3, "position error seen {}", o[0]);
    }

    #[test]
    fn a_vehicle_that_cannot_hover_or_a_wrong_policy_is_refused() {
        let (sizes, p) = constant(0.0);
        let pol = Policy::new(&sizes, &p).unwrap();
        let mut weak = QuadParams::CRAZYFLIE;
        weak.thrust = [0.0, 0.0, 1e-12];
        assert_eq!(
            LearnedVehicle::hovering(weak, pol, [0.0; 3], 0.01).err(),
            Some(PolicyError::Vehicle)
        );
        let small = [3usize, 2];
        let q = [0.0f32; 8];
        let wrong = Policy::new(&small, &q).unwrap();
        assert_eq!(
            LearnedController::new(wrong, [0.0; 3], 0.0, 0.01).err(),
            Some(PolicyError::Shape)
        );
    }
}
