//! A quadrotor as a rigid body driven by its four motors: the vehicle that a
//! motor-level policy is trained on and that the firmware flies it against.
//! `no_std`, `f32`, no allocation and no `libm` (quaternions are renormalised
//! with a Newton step, square roots by Newton's iteration), so the MCU build
//! runs the same numbers as the trainer.
//!
//! Frames: world ENU (x east, y north, z up; gravity along −z), body FLU (x
//! forward, y left, z up), attitude the unit quaternion (w, x, y, z) that
//! rotates body vectors into the world.
//!
//! Model (the quadrotor model of "Learning to Fly in Seconds", Eschmann et al.,
//! RA-L 2024, with its published Crazyflie 2.x parameters as the default):
//! - each motor's speed follows its command with a first-order lag,
//!   d rpm / dt = (rpm_cmd − rpm) / τ, the command mapped linearly from an
//!   action in [−1, 1] to [0, rpm_max];
//! - thrust per motor c0 + c1 rpm + c2 rpm² along body z, and a reaction
//!   torque about body z of ±k_τ times that thrust (the sign is the rotor's
//!   spin direction);
//! - translation m dv/dt = R f_body + m g − d v (linear drag d), rotation
//!   J dω/dt = τ − ω × J ω with J diagonal, dq/dt = ½ q ⊗ (0, ω);
//! - integrated with the classical fourth-order Runge–Kutta step.
//!
//! The twin's vehicle (`sim::quadrotor`) is another airframe (250 class) in
//! `f64` behind a cascaded controller that takes velocity or attitude
//! setpoints; this model takes motor commands and must run on the MCU.

/// The physical parameters of a quadrotor in X configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuadParams {
    /// Mass (kg).
    pub mass: f32,
    /// Diagonal of the inertia tensor in the body frame (kg m²).
    pub inertia: [f32; 3],
    /// Each rotor's position in the body frame, x and y (m).
    pub rotors: [[f32; 2]; 4],
    /// Each rotor's reaction torque direction about body z (+1 or −1).
    pub spin: [f32; 4],
    /// Thrust per motor (N) = c0 + c1 rpm + c2 rpm².
    pub thrust: [f32; 3],
    /// Reaction torque per newton of thrust (m).
    pub torque: f32,
    /// Largest motor speed (rpm); an action of +1 commands it, −1 commands 0.
    pub rpm_max: f32,
    /// Motor time constant (s).
    pub motor_tau: f32,
    /// Gravity (m/s², positive).
    pub gravity: f32,
    /// Linear drag (N per m/s), world frame.
    pub drag: f32,
}

impl QuadParams {
    /// The Crazyflie 2.x parameters published with "Learning to Fly in
    /// Seconds" (27 g, rotors at ±28 mm, thrust 3.16e-10 rpm² N, up to 21 702
    /// rpm: thrust to weight 2.25, 0.15 s motor time constant), no drag.
    pub const CRAZYFLIE: Self = Self {
        mass: 0.027,
        inertia: [3.85e-6, 3.85e-6, 5.9675e-6],
        // Front right, back right, back left, front left.
        rotors: [
            [0.028, -0.028],
            [-0.028, -0.028],
            [-0.028, 0.028],
            [0.028, 0.028],
        ],
        spin: [-1.0, 1.0, -1.0, 1.0],
        thrust: [0.0, 0.0, 3.16e-10],
        torque: 0.005964552,
        rpm_max: 21_702.0,
        motor_tau: 0.15,
        gravity: 9.81,
        drag: 0.0,
    };

    /// One motor's thrust (N) at `rpm` (never negative).
    pub fn motor_thrust(&self, rpm: f32) -> f32 {
        let [c0, c1, c2] = self.thrust;
        (c0 + c1 * rpm + c2 * rpm * rpm).max(0.0)
    }

    /// The motor speed at which the four motors together carry the vehicle
    /// (rpm), by bisection on the thrust curve; `None` when even `rpm_max`
    /// cannot.
    pub fn hover_rpm(&self) -> Option<f32> {
        let need = self.mass * self.gravity / 4.0;
        if self.motor_thrust(self.rpm_max) < need {
            return None;
        }
        let (mut lo, mut hi) = (0.0f32, self.rpm_max);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if self.motor_thrust(mid) < need {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(0.5 * (lo + hi))
    }

    /// The action (−1 to 1) that commands `rpm`.
    pub fn action_for_rpm(&self, rpm: f32) -> f32 {
        2.0 * rpm / self.rpm_max - 1.0
    }

    /// Total thrust over weight at full speed.
    pub fn thrust_to_weight(&self) -> f32 {
        4.0 * self.motor_thrust(self.rpm_max) / (self.mass * self.gravity)
    }

    /// Whether every value is finite and physical (positive mass, inertia,
    /// speed range, time constant and gravity; drag not negative).
    pub fn is_valid(&self) -> bool {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        finite(&[
            self.mass,
            self.torque,
            self.rpm_max,
            self.motor_tau,
            self.gravity,
            self.drag,
        ]) && finite(&self.inertia)
            && finite(&self.thrust)
            && finite(&self.spin)
            && self.rotors.iter().all(|r| finite(r))
            && self.mass > 0.0
            && self.inertia.iter().all(|&j| j > 0.0)
            && self.rpm_max > 0.0
            && self.motor_tau > 0.0
            && self.gravity > 0.0
            && self.drag >= 0.0
    }
}

/// The vehicle's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuadState {
    /// Position (m, world ENU).
    pub position: [f32; 3],
    /// Velocity (m/s, world ENU).
    pub velocity: [f32; 3],
    /// Attitude: the unit quaternion (w, x, y, z) from body to world.
    pub attitude: [f32; 4],
    /// Angular velocity (rad/s, body frame).
    pub rates: [f32; 3],
    /// Motor speeds (rpm).
    pub rpm: [f32; 4],
}

impl QuadState {
    /// At rest at `position`, level, motors stopped.
    pub fn at_rest(position: [f32; 3]) -> Self {
        Self {
            position,
            velocity: [0.0; 3],
            attitude: [1.0, 0.0, 0.0, 0.0],
            rates: [0.0; 3],
            rpm: [0.0; 4],
        }
    }

    /// Whether every component is finite.
    pub fn is_finite(&self) -> bool {
        self.position
            .iter()
            .chain(&self.velocity)
            .chain(&self.attitude)
            .chain(&self.rates)
            .chain(&self.rpm)
            .all(|v| v.is_finite())
    }
}

/// The rotation matrix (row-major) of the unit quaternion `q` = (w, x, y, z):
/// body vectors to world vectors.
pub fn rotation_matrix(q: &[f32; 4]) -> [[f32; 3]; 3] {
    let [w, x, y, z] = *q;
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// The state as one vector for the integrator: position, velocity,
/// quaternion, rates, motor speeds.
type Flat = [f32; 17];

fn flatten(s: &QuadState) -> Flat {
    let mut f = [0.0; 17];
    f[0..3].copy_from_slice(&s.position);
    f[3..6].copy_from_slice(&s.velocity);
    f[6..10].copy_from_slice(&s.attitude);
    f[10..13].copy_from_slice(&s.rates);
    f[13..17].copy_from_slice(&s.rpm);
    f
}

fn unflatten(f: &Flat) -> QuadState {
    let mut s = QuadState::at_rest([0.0; 3]);
    s.position.copy_from_slice(&f[0..3]);
    s.velocity.copy_from_slice(&f[3..6]);
    s.attitude.copy_from_slice(&f[6..10]);
    s.rates.copy_from_slice(&f[10..13]);
    s.rpm.copy_from_slice(&f[13..17]);
    s
}

/// The time derivative of the state `f` with the motors commanded to `cmd` (rpm).
fn derivative(p: &QuadParams, f: &Flat, cmd: &[f32; 4]) -> Flat {
    let v = [f[3], f[4], f[5]];
    let q = [f[6], f[7], f[8], f[9]];
    let w = [f[10], f[11], f[12]];
    let mut d = [0.0; 17];
    // Motors.
    let mut total = 0.0;
    let mut tau = [0.0f32; 3];
    for i in 0..4 {
        d[13 + i] = (cmd[i] - f[13 + i]) / p.motor_tau;
        let t = p.motor_thrust(f[13 + i]);
        total += t;
        // r × (0, 0, t) = (r_y t, −r_x t, 0), plus the reaction torque.
        tau[0] += p.rotors[i][1] * t;
        tau[1] -= p.rotors[i][0] * t;
        tau[2] += p.spin[i] * p.torque * t;
    }
    // Translation: thrust along body z, rotated into the world.
    let r = rotation_matrix(&q);
    for k in 0..3 {
        d[k] = v[k];
        d[3 + k] = (r[k][2] * total - p.drag * v[k]) / p.mass;
    }
    d[5] -= p.gravity;
    // Attitude: dq/dt = ½ q ⊗ (0, ω).
    let [qw, qx, qy, qz] = q;
    d[6] = 0.5 * (-qx * w[0] - qy * w[1] - qz * w[2]);
    d[7] = 0.5 * (qw * w[0] + qy * w[2] - qz * w[1]);
    d[8] = 0.5 * (qw * w[1] - qx * w[2] + qz * w[0]);
    d[9] = 0.5 * (qw * w[2] + qx * w[1] - qy * w[0]);
    // Rotation: J dω/dt = τ − ω × J ω.
    let j = p.inertia;
    let jw = [j[0] * w[0], j[1] * w[1], j[2] * w[2]];
    let gyro = [
        w[1] * jw[2] - w[2] * jw[1],
        w[2] * jw[0] - w[0] * jw[2],
        w[0] * jw[1] - w[1] * jw[0],
    ];
    for k in 0..3 {
        d[10 + k] = (tau[k] - gyro[k]) / j[k];
    }
    d
}

/// Advances `s` by `dt` seconds with the four motors commanded by `action`
/// (each −1 to 1, clamped; a non-finite value commands 0 rpm): one
/// fourth-order Runge–Kutta step, the quaternion renormalised after it.
pub fn step(p: &QuadParams, s: &mut QuadState, action: &[f32; 4], dt: f32) {
    let mut cmd = [0.0f32; 4];
    for (c, &a) in cmd.iter_mut().zip(action) {
        let a = if a.is_finite() {
            a.clamp(-1.0, 1.0)
        } else {
            -1.0
        };
        *c = 0.5 * (a + 1.0) * p.rpm_max;
    }
    let x = flatten(s);
    let add = |a: &Flat, b: &Flat, h: f32| -> Flat {
        let mut o = [0.0; 17];
        for k in 0..17 {
            o[k] = a[k] + h * b[k];
        }
        o
    };
    let k1 = derivative(p, &x, &cmd);
    let k2 = derivative(p, &add(&x, &k1, 0.5 * dt), &cmd);
    let k3 = derivative(p, &add(&x, &k2, 0.5 * dt), &cmd);
    let k4 = derivative(p, &add(&x, &k3, dt), &cmd);
    let mut n = [0.0; 17];
    for k in 0..17 {
        n[k] = x[k] + dt / 6.0 * (k1[k] + 2.0 * k2[k] + 2.0 * k3[k] + k4[k]);
    }
    *s = unflatten(&n);
    s.attitude = normalised(s.attitude);
}

/// `q` scaled to unit length. One Newton step for 1/|q| from 1 suffices after
/// an integration step (|q|² stays within about 1e-6 of 1); a quaternion
/// further off is scaled by 1/|q| from Newton's square root.
fn normalised(q: [f32; 4]) -> [f32; 4] {
    let n2: f32 = q.iter().map(|v| v * v).sum();
    let off = n2 - 1.0;
    let scale = if off < 1e-3 && off > -1e-3 {
        0.5 * (3.0 - n2)
    } else if n2 > 0.0 && n2.is_finite() {
        1.0 / sqrt(n2)
    } else {
        return [1.0, 0.0, 0.0, 0.0];
    };
    q.map(|v| v * scale)
}

/// √x by Newton's iteration (the MCU build has no `libm`): 0 for 0, NaN for a
/// negative, infinite or NaN x.
pub fn sqrt(x: f32) -> f32 {
    if x == 0.0 {
        return 0.0;
    }
    if x.is_nan() || x < 0.0 || x.is_infinite() {
        return f32::NAN;
    }
    // A start within a factor of two: halve the exponent.
    let mut r = f32::from_bits((x.to_bits() >> 1) + 0x1fc0_0000);
    for _ in 0..5 {
        r = 0.5 * (r + x / r);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: QuadParams = QuadParams::CRAZYFLIE;
    const DT: f32 = 0.002;

    fn fly(s: &mut QuadState, action: [f32; 4], seconds: f32) {
        for _ in 0..(seconds / DT).round() as usize {
            step(&P, s, &action, DT);
        }
    }

    fn hovering() -> QuadState {
        let mut s = QuadState::at_rest([0.0, 0.0, 1.0]);
        s.rpm = [P.hover_rpm().unwrap(); 4];
        s
    }

    #[test]
    fn crazyflie_parameters_give_the_published_thrust_to_weight() {
        assert!(P.is_valid());
        assert!(
            (P.thrust_to_weight() - 2.25).abs() < 0.01,
            "{}",
            P.thrust_to_weight()
        );
        // √(m g / 4 / c2) = 14 476 rpm.
        assert!((P.hover_rpm().unwrap() - 14_476.0).abs() < 2.0);
        let heavy = QuadParams { mass: 0.1, ..P };
        assert_eq!(heavy.hover_rpm(), None);
    }

    #[test]
    fn hover_thrust_holds_the_vehicle_where_it_is() {
        let mut s = hovering();
        let a = P.action_for_rpm(P.hover_rpm().unwrap());
        fly(&mut s, [a; 4], 2.0);
        assert!(s.is_finite());
        for k in 0..3 {
            assert!((s.position[k] - [0.0, 0.0, 1.0][k]).abs() < 1e-3, "{s:?}");
            assert!(s.rates[k].abs() < 1e-3, "{s:?}");
        }
    }

    #[test]
    fn stopped_motors_fall_freely() {
        let mut s = QuadState::at_rest([0.0, 0.0, 10.0]);
        fly(&mut s, [-1.0; 4], 1.0);
        // z = 10 − g t² / 2, the attitude untouched.
        assert!((s.position[2] - (10.0 - 0.5 * 9.81)).abs() < 1e-3, "{s:?}");
        assert!((s.velocity[2] + 9.81).abs() < 1e-3);
        assert_eq!(s.attitude, [1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn motors_follow_their_command_with_the_time_constant() {
        let mut s = QuadState::at_rest([0.0, 0.0, 0.0]);
        fly(&mut s, [1.0; 4], P.motor_tau);
        // 1 − 1/e of the step after one time constant.
        let want = (1.0 - (-1.0f32).exp()) * P.rpm_max;
        for r in s.rpm {
            assert!((r - want).abs() < 1e-3 * P.rpm_max, "{r} against {want}");
        }
    }

    #[test]
    fn torques_turn_the_vehicle_the_right_way() {
        let hover = P.action_for_rpm(P.hover_rpm().unwrap());
        let more = hover + 0.05;
        // [front right, back right, back left, front left]
        // Left rotors faster: roll right (about +x), then drift right (−y).
        let mut s = hovering();
        fly(&mut s, [hover, hover, more, more], 0.1);
        assert!(s.rates[0] > 0.1, "{s:?}");
        fly(&mut s, [hover; 4], 0.3);
        assert!(s.velocity[1] < -0.01, "{s:?}");
        // Back rotors faster: nose down (about +y), then forward (+x).
        let mut s = hovering();
        fly(&mut s, [hover, more, more, hover], 0.1);
        assert!(s.rates[1] > 0.1, "{s:?}");
        fly(&mut s, [hover; 4], 0.3);
        assert!(s.velocity[0] > 0.01, "{s:?}");
        // The rotors whose reaction torque is +z faster: yaw left (about +z).
        let mut s = hovering();
        fly(&mut s, [hover, more, hover, more], 0.1);
        assert!(s.rates[2] > 0.1, "{s:?}");
        assert!(s.rates[0].abs() < 1e-3 && s.rates[1].abs() < 1e-3, "{s:?}");
    }

    #[test]
    fn attitude_stays_a_rotation_under_tumbling() {
        let mut s = hovering();
        s.rates = [20.0, -13.0, 7.0];
        let mut seed = 0x2545_f491u32;
        for _ in 0..20_000 {
            let mut a = [0.0; 4];
            for v in &mut a {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *v = (seed % 2001) as f32 / 1000.0 - 1.0;
            }
            step(&P, &mut s, &a, DT);
        }
        assert!(s.is_finite());
        let n: f32 = s.attitude.iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-5, "|q|² = {n}");
        let r = rotation_matrix(&s.attitude);
        for i in 0..3 {
            for j in 0..3 {
                let dot: f32 = (0..3).map(|k| r[i][k] * r[j][k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-4, "R Rᵀ[{i}][{j}] = {dot}");
            }
        }
    }

    #[test]
    fn a_free_rotation_keeps_its_angular_momentum() {
        // No thrust, no gravity's torque: |J ω| in the world is conserved.
        let mut s = QuadState::at_rest([0.0; 3]);
        s.rates = [3.0, 1.0, 5.0];
        let momentum = |s: &QuadState| {
            let r = rotation_matrix(&s.attitude);
            let l = [
                P.inertia[0] * s.rates[0],
                P.inertia[1] * s.rates[1],
                P.inertia[2] * s.rates[2],
            ];
            let w: [f32; 3] = core::array::from_fn(|i| (0..3).map(|k| r[i][k] * l[k]).sum());
            w
        };
        let l0 = momentum(&s);
        fly(&mut s, [-1.0; 4], 2.0);
        let l1 = momentum(&s);
        for k in 0..3 {
            assert!((l1[k] - l0[k]).abs() < 1e-3 * 2e-5, "{l0:?} -> {l1:?}");
        }
    }

    #[test]
    fn newton_square_root_is_exact_to_f32() {
        for x in [1e-6f32, 0.25, 1.0, 2.0, 1234.5, 3.3e7] {
            assert!(
                (sqrt(x) - x.sqrt()).abs() <= 2.0 * f32::EPSILON * x.sqrt(),
                "{x}"
            );
        }
        assert_eq!(sqrt(0.0), 0.0);
        assert!(sqrt(-1.0).is_nan() && sqrt(f32::NAN).is_nan());
    }
}
