//! The learned position controller: a motor-level policy (trained by `agent
//! learn-to-fly`, flown through [`crate::policy`]) that holds the vehicle on
//! a position target, the target moved by the agent's velocity setpoints as
//! today's setpoints move the cascaded controller's.
//!
//! Each control step builds the trainer's observation from the vehicle's
//! state — position error to the target, attitude as a rotation matrix
//! (row-major), world velocity, body rates, the last [`HISTORY`] motor
//! commands (newest first), and the time integral of the position error
//! (clamped to ±[`INTEGRAL_LIMIT`]) — and
//! runs the policy; its four outputs are the motor commands in [−1, 1]. The
//! integral is what lets one policy hover on the spot across vehicles whose
//! hover thrust it does not know (a policy of the state alone settles where
//! its position feedback makes up the thrust error: measured 0.16–0.25 m off
//! the target on randomised vehicles). The command history stands in for the
//! motors' speeds, which lag the commands (time constant 0.05–0.2 s) and
//! which the firmware cannot measure; "Learning to Fly in Seconds" (Eschmann
//! et al., RA-L 2024) found such a history essential for the same reason.
//! [`LearnedVehicle`] flies it against the rigid-body model of
//! [`crate::quad`], the vehicle the policy was trained on, for builds with no
//! sensors (QEMU, the host build, tests).

use crate::policy::{Policy, PolicyError};
use crate::quad::{QuadParams, QuadState, rotation_matrix, step as quad_step};

/// Motor commands remembered in the observation (one per control step).
pub const HISTORY: usize = 8;
/// Where the command history starts in the observation.
pub const ACTIONS_AT: usize = 18;
/// Where the position-error integral starts in the observation.
pub const INTEGRAL_AT: usize = ACTIONS_AT + MOTORS * HISTORY;
/// Observation length the policy must take.
pub const OBS: usize = INTEGRAL_AT + 3;
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

/// The last [`HISTORY`] motor commands, newest first.
pub type History = [[f32; MOTORS]; HISTORY];

/// Remember `command` as the newest of `history`, forgetting the oldest.
pub fn remember(history: &mut History, command: [f32; MOTORS]) {
    history.copy_within(0..HISTORY - 1, 1);
    history[0] = command;
}

/// The policy's observation of state `s` with position target `target`, the
/// last motor commands `history` (newest first) and position-error integral
/// `integral`: the layout the trainer's environment uses too (it calls this).
pub fn observation(
    s: &QuadState,
    target: &[f32; 3],
    history: &History,
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
    for (k, c) in history.iter().enumerate() {
        o[ACTIONS_AT + MOTORS * k..ACTIONS_AT + MOTORS * (k + 1)].copy_from_slice(c);
    }
    o[INTEGRAL_AT..OBS].copy_from_slice(integral);
    o
}

/// A policy flying toward a position target.
#[derive(Debug, Clone, Copy)]
pub struct LearnedController<'a> {
    policy: Policy<'a>,
    target: [f32; 3],
    history: History,
    integral: [f32; 3],
    /// The control period (s), for the integral.
    dt: f32,
    started: bool,
    /// The target moved since the last step.
    moving: bool,
    /// The observation of the last step.
    seen: [f32; OBS],
}

impl<'a> LearnedController<'a> {
    /// A controller for `policy` ([`OBS`] observations in, 4 motors out) run
    /// every `dt` seconds, its target at `position`, its past commands `hover`
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
            history: [[hover; MOTORS]; HISTORY],
            integral: [0.0; 3],
            dt,
            started: false,
            moving: false,
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
            if v.is_finite() && v != 0.0 {
                *t += v * dt;
                self.moving = true;
            }
        }
    }

    /// The trainer's observation of `s`.
    pub fn observe(&self, s: &QuadState) -> [f32; OBS] {
        observation(s, &self.target, &self.history, &self.integral)
    }

    /// The observation the last [`LearnedController::step`] flew on.
    pub fn last_observation(&self) -> [f32; OBS] {
        self.seen
    }

    /// One control step: the motor commands for state `s`. Every state but
    /// the first adds its error to the integral (the first is where the
    /// trainer's episodes start, at zero) — except while the target moves:
    /// the trainer's targets never move, and an error that only says the
    /// vehicle lags a moving target would wind the integral up, away from
    /// the thrust error it stands for (measured: a 2 s climb at 0.5 m/s left
    /// one policy 0.42 m off its target for the next 30 s).
    pub fn step(&mut self, s: &QuadState) -> [f32; MOTORS] {
        let moving = core::mem::take(&mut self.moving);
        if self.started && !moving {
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
        remember(&mut self.history, out);
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

/// Battery model of the simulated vehicle: full (mV)...
const BATTERY_FULL_MV: f32 = 12_600.0;
/// ...and drawn this fast while armed (mV/s: about 10 minutes to 10.5 V).
const BATTERY_DRAW_MV_S: f32 = 3.5;
const G: f32 = 9.81;

/// The firmware's vehicle under the learned controller, for builds with no
/// sensors (QEMU, the host build): the rigid-body quadrotor of
/// [`crate::quad`] on the ground at boot, flown by the policy while armed.
///
/// - Armed, the agent's velocity setpoints (body frame: forward, left, up)
///   move the controller's position target, turned into the world frame by
///   the heading; the failsafe's hover (zero velocity) holds it and its
///   descent lowers it, as they do today's cascaded controller's.
/// - On the ground and not asked to climb, the motors idle and the target
///   follows the vehicle; the ground stops a descent (contact levels the
///   vehicle and stops it).
/// - Disarmed (motors off), the controller starts afresh at the next arming:
///   target where the vehicle is, integral zero, command history at hover.
/// - Attitude demands hold the target; motor demands drive the motors
///   directly (0..1).
#[derive(Debug, Clone, Copy)]
pub struct LearnedFlight<'a> {
    policy: Policy<'a>,
    params: QuadParams,
    state: QuadState,
    controller: LearnedController<'a>,
    hover: f32,
    dt: f32,
    /// World acceleration of the last step (m/s²).
    accel: [f32; 3],
    battery_mv: f32,
    /// The MCU's cycle counter, when it has one to read.
    clock: Option<fn() -> u32>,
    /// Cycles of the last controller step (0 unmeasured).
    policy_cycles: u32,
}

impl<'a> LearnedFlight<'a> {
    /// `policy` flying `params` every `dt` seconds (the rate it was trained
    /// at), at rest on the ground at the origin.
    pub fn new(policy: Policy<'a>, params: QuadParams, dt: f32) -> Result<Self, PolicyError> {
        let rpm = params.hover_rpm().ok_or(PolicyError::Vehicle)?;
        let hover = params.action_for_rpm(rpm);
        let state = QuadState::at_rest([0.0; 3]);
        Ok(Self {
            controller: LearnedController::new(policy, state.position, hover, dt)?,
            policy,
            params,
            state,
            hover,
            dt,
            accel: [0.0; 3],
            battery_mv: BATTERY_FULL_MV,
            clock: None,
            policy_cycles: 0,
        })
    }

    /// Time each controller step on `clock` (a free-running cycle counter).
    pub fn set_clock(&mut self, clock: fn() -> u32) {
        self.clock = Some(clock);
    }

    /// Cycles of the last controller step (its observation and forward
    /// pass) on the clock of [`LearnedFlight::set_clock`]; 0 unmeasured.
    pub fn policy_cycles(&self) -> u32 {
        self.policy_cycles
    }

    /// A controller step, timed when there is a clock.
    fn control(&mut self) -> [f32; MOTORS] {
        let start = self.clock.map(|c| c());
        let out = self.controller.step(&self.state);
        if let (Some(c), Some(t0)) = (self.clock, start) {
            self.policy_cycles = c().wrapping_sub(t0);
        }
        out
    }

    /// The vehicle's state.
    pub fn state(&self) -> &QuadState {
        &self.state
    }

    /// The controller (its target).
    pub fn controller(&self) -> &LearnedController<'a> {
        &self.controller
    }

    fn on_ground(&self) -> bool {
        self.state.position[2] <= 0.01
    }

    fn heading(&self) -> f32 {
        let r = rotation_matrix(&self.state.attitude);
        crate::trig::atan2(r[1][0], r[0][0])
    }

    /// One control period under `demand`.
    pub fn step(&mut self, demand: &crate::autopilot::Demand) {
        use crate::autopilot::Demand;
        let idle = [-1.0f32; MOTORS];
        let motors = match *demand {
            Demand::Off => {
                self.restart();
                idle
            }
            Demand::Velocity { velocity, .. } => {
                if self.on_ground() && velocity[2] <= 0.0 {
                    self.restart();
                    idle
                } else {
                    let (s, c) = {
                        let h = self.heading();
                        (crate::trig::sin(h), crate::trig::cos(h))
                    };
                    let world = [
                        c * velocity[0] - s * velocity[1],
                        s * velocity[0] + c * velocity[1],
                        velocity[2],
                    ];
                    self.controller.move_target(world, self.dt);
                    self.control()
                }
            }
            Demand::Attitude { .. } => self.control(),
            Demand::Motors(m) => m.map(|v| {
                if v.is_finite() {
                    2.0 * v.clamp(0.0, 1.0) - 1.0
                } else {
                    -1.0
                }
            }),
        };
        let before = self.state.velocity;
        quad_step(&self.params, &mut self.state, &motors, self.dt);
        if !self.state.is_finite() {
            // Nothing sensible to fly on: down and still where it was.
            let p = self.state.position;
            self.state = QuadState::at_rest([0.0; 3]);
            for (d, v) in self.state.position.iter_mut().zip(p) {
                if v.is_finite() {
                    *d = v;
                }
            }
        }
        if self.state.position[2] < 0.0 {
            // Ground contact: stopped, level, heading kept.
            let h = self.heading();
            let s = &mut self.state;
            s.position[2] = 0.0;
            s.velocity = [0.0; 3];
            s.rates = [0.0; 3];
            s.attitude = [
                crate::trig::cos(0.5 * h),
                0.0,
                0.0,
                crate::trig::sin(0.5 * h),
            ];
        }
        for ((a, v), b) in self.accel.iter_mut().zip(self.state.velocity).zip(before) {
            *a = (v - b) / self.dt;
        }
        if !matches!(demand, Demand::Off) {
            self.battery_mv -= BATTERY_DRAW_MV_S * self.dt;
        }
    }

    /// The controller afresh: target here, integral zero, history at hover.
    fn restart(&mut self) {
        if let Ok(c) = LearnedController::new(self.policy, self.state.position, self.hover, self.dt)
        {
            self.controller = c;
        }
    }

    /// What the sensors would read now.
    pub fn sensors(&self) -> crate::autopilot::Sensors {
        use crate::trig::{asin, atan2};
        let [w, x, y, z] = self.state.attitude;
        let roll = atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y));
        let pitch = asin(2.0 * (w * y - z * x));
        let yaw = atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z));
        let r = rotation_matrix(&self.state.attitude);
        // Body = Rᵀ world: the velocity as forward, left, up; the
        // accelerometer's specific force (acceleration minus gravity).
        let body = |v: [f32; 3]| {
            let mut b = [0.0f32; 3];
            for (k, o) in b.iter_mut().enumerate() {
                *o = r[0][k] * v[0] + r[1][k] * v[1] + r[2][k] * v[2];
            }
            b
        };
        let a = self.accel;
        crate::autopilot::Sensors {
            attitude: [roll, pitch, yaw],
            rates: self.state.rates,
            accel: body([a[0], a[1], a[2] + G]),
            velocity: body(self.state.velocity),
            altitude: self.state.position[2],
            position: self.state.position,
            target: self.controller.target(),
            on_ground: self.on_ground(),
            battery_mv: self.battery_mv.max(0.0) as u16,
            imu_ok: true,
        }
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

    /// The policy shipped in `firmware/policies/` (trained by `agent
    /// learn-to-fly`, seed 2 of the shipped settings).
    const SHIPPED: &str = include_str!("../policies/crazyflie-hover.txt");

    fn shipped() -> (
        [usize; crate::policy::MAX_LAYERS],
        usize,
        std::vec::Vec<f32>,
    ) {
        let mut sizes = [0usize; crate::policy::MAX_LAYERS];
        let mut params = std::vec![0.0f32; 8192];
        let (layers, n) = crate::policy::parse_table(SHIPPED, &mut sizes, &mut params).unwrap();
        params.truncate(n);
        (sizes, layers, params)
    }

    fn fly(f: &mut LearnedFlight, velocity: [f32; 3], seconds: f32) -> f32 {
        let demand = crate::autopilot::Demand::Velocity {
            velocity,
            yaw_rate: 0.0,
        };
        let mut worst = 0.0f32;
        for _ in 0..(seconds * 100.0).round() as usize {
            f.step(&demand);
            let s = f.sensors();
            let mut sq = 0.0;
            for (p, t) in s.position.iter().zip(s.target) {
                sq += (p - t) * (p - t);
            }
            worst = worst.max(crate::quad::sqrt(sq));
        }
        worst
    }

    #[test]
    fn the_shipped_policy_takes_off_holds_30_s_and_returns_after_a_step() {
        let (sizes, layers, params) = shipped();
        let pol = Policy::new(&sizes[..layers], &params).unwrap();
        let mut f = LearnedFlight::new(pol, QuadParams::CRAZYFLIE, 0.01).unwrap();
        // On the ground, not asked to climb: it stays there.
        fly(&mut f, [0.0; 3], 1.0);
        assert!(f.sensors().on_ground);
        // Climb at 0.5 m/s for 2 s, then hold: the target stops at 1 m.
        fly(&mut f, [0.0, 0.0, 0.5], 2.0);
        fly(&mut f, [0.0; 3], 5.0);
        let s = f.sensors();
        assert!(!s.on_ground && (s.target[2] - 1.0).abs() < 0.02, "{s:?}");
        let hold = fly(&mut f, [0.0; 3], 30.0);
        assert!(hold <= 0.1, "30 s hover: {hold} m from the target");
        // A 0.5 m step forward (the target moves 0.5 m in 0.1 s).
        let before = f.sensors().target;
        fly(&mut f, [5.0, 0.0, 0.0], 0.1);
        // Forward is the body's: turned by whatever heading the vehicle holds.
        let t = f.sensors().target;
        let moved = crate::quad::sqrt((t[0] - before[0]).powi(2) + (t[1] - before[1]).powi(2));
        assert!((moved - 0.5).abs() < 1e-3, "target moved {moved}");
        fly(&mut f, [0.0; 3], 4.0);
        let last = fly(&mut f, [0.0; 3], 1.0);
        assert!(last <= 0.1, "{last} m from the stepped target");
        // Down: the ground stops the descent.
        fly(&mut f, [0.0, 0.0, -0.5], 4.0);
        assert!(f.sensors().on_ground && f.sensors().velocity[2].abs() < 1e-3);
    }

    /// The autopilot's failsafe wraps the learned controller as it wraps the
    /// cascaded one: the agent goes quiet, the vehicle hovers on its target
    /// for the hover time, descends, lands and is disarmed.
    #[test]
    fn the_failsafe_hovers_lands_and_disarms_the_learned_controller() {
        use crate::autopilot::{Autopilot, Config};
        use crate::frame::Frame;
        use crate::msg::{AckStatus, FcState, FromFc, Setpoint, ToFc};
        let (sizes, layers, params) = shipped();
        let pol = Policy::new(&sizes[..layers], &params).unwrap();
        let cfg = Config::MULTIROTOR;
        let mut ap = Autopilot::new(cfg);
        let mut f = LearnedFlight::new(pol, QuadParams::CRAZYFLIE, 0.01).unwrap();
        let arm = ap.handle(
            0,
            &Frame {
                seq: 1,
                msg: ToFc::Arm,
            },
            &f.sensors(),
        );
        assert!(matches!(
            arm,
            Some(FromFc::Ack {
                status: AckStatus::Accepted,
                ..
            })
        ));
        let climb = ToFc::Setpoint(Setpoint::Velocity {
            forward: 0.0,
            left: 0.0,
            up: 0.5,
            yaw_rate: 0.0,
        });
        let hold = ToFc::Setpoint(Setpoint::Velocity {
            forward: 0.0,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.0,
        });
        let (mut t, mut seq) = (0u32, 2u16);
        let mut states = std::vec::Vec::new();
        let (mut hover_worst, mut touchdown) = (0.0f32, None);
        while t < 30_000 {
            let sp = match t {
                0..2000 => Some(climb),
                2000..5000 => Some(hold),
                _ => None,
            };
            if let Some(sp) = sp
                && t.is_multiple_of(20)
            {
                ap.handle(t, &Frame { seq, msg: sp }, &f.sensors());
                seq += 1;
            }
            let d = ap.tick(t, &f.sensors());
            let was_airborne = !f.sensors().on_ground;
            let vz = f.state().velocity[2];
            f.step(&d);
            let s = f.sensors();
            if ap.state() == FcState::FailsafeHover {
                let e = crate::quad::sqrt(
                    s.position
                        .iter()
                        .zip(s.target)
                        .map(|(p, q)| (p - q) * (p - q))
                        .sum(),
                );
                hover_worst = hover_worst.max(e);
            }
            if was_airborne && s.on_ground && touchdown.is_none() {
                touchdown = Some((t, vz));
            }
            if states.last() != Some(&ap.state()) {
                states.push(ap.state());
            }
            t += 10;
        }
        assert_eq!(
            states,
            [
                FcState::Armed,
                FcState::FailsafeHover,
                FcState::FailsafeLand,
                FcState::Disarmed
            ]
        );
        assert!(hover_worst <= 0.1, "hovered up to {hover_worst} m off");
        let (at, vz) = touchdown.expect("landed");
        std::println!(
            "failsafe hover within {hover_worst:.3} m; touchdown at {at} ms, {vz:.2} m/s"
        );
        assert!(vz.abs() < 1.0, "touched down at {vz} m/s (t = {at} ms)");
        assert!(f.sensors().on_ground);
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
