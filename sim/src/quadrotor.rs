//! Quadrotor rigid-body dynamics with the inner loops of a flight controller.
//!
//! Four motors in X configuration with first-order thrust lag, linear
//! aerodynamic drag against the air (so wind pushes the vehicle), and a
//! cascaded controller (velocity → attitude → body rate → motor mixing) that
//! accepts the setpoints a real flight controller accepts: body velocity with yaw
//! rate, or attitude with collective thrust. Everything runs at the physics rate.

use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};

/// Standard gravity (m/s²).
pub const GRAVITY: f64 = 9.81;

/// Physical parameters of the airframe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuadParams {
    /// Mass (kg).
    pub mass: f64,
    /// Principal moments of inertia (kg m²).
    pub inertia: [f64; 3],
    /// Distance from centre to each motor (m).
    pub arm: f64,
    /// Yaw torque per newton of thrust (m).
    pub torque_coeff: f64,
    /// Largest thrust of one motor (N).
    pub max_motor_thrust: f64,
    /// Motor time constant (s).
    pub motor_tau: f64,
    /// Linear drag (N per m/s of airspeed).
    pub drag: f64,
}

impl QuadParams {
    /// A 250-class quadrotor scaled to `mass`, thrust-to-weight 2.5.
    pub fn for_mass(mass: f64, drag: f64) -> Self {
        let s = mass / 0.5;
        Self {
            mass,
            inertia: [2.3e-3 * s, 2.3e-3 * s, 4.0e-3 * s],
            arm: 0.12,
            torque_coeff: 0.016,
            max_motor_thrust: 2.5 * mass * GRAVITY / 4.0,
            motor_tau: 0.03,
            drag,
        }
    }
}

/// Setpoint for the flight controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setpoint {
    /// Velocity in the heading frame (x forward, y left, z up; m/s) and yaw rate (rad/s).
    Velocity { vel: [f64; 3], yaw_rate: f64 },
    /// Roll and pitch (rad), yaw rate (rad/s) and collective thrust as a fraction of the maximum.
    Attitude {
        roll: f64,
        pitch: f64,
        yaw_rate: f64,
        thrust: f64,
    },
}

/// Controller gains and limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerGains {
    /// Velocity loop gain, horizontal and vertical (1/s).
    pub vel: [f64; 2],
    /// Attitude loop gain (1/s).
    pub att: f64,
    /// Rate loop gain (1/s).
    pub rate: f64,
    /// Largest tilt the velocity loop commands (rad).
    pub max_tilt: f64,
    /// Velocity loop integral gain (1/s²).
    pub vel_i: f64,
    /// Bound of the integral term (m/s²).
    pub integral_limit: f64,
}

impl Default for ControllerGains {
    fn default() -> Self {
        Self {
            vel: [2.5, 3.0],
            att: 9.0,
            rate: 25.0,
            max_tilt: 0.6,
            vel_i: 1.5,
            integral_limit: 4.0,
        }
    }
}

/// Full rigid-body state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuadState {
    /// Position in the world frame (m).
    pub position: Vector3<f64>,
    /// Velocity in the world frame (m/s).
    pub velocity: Vector3<f64>,
    /// Body-to-world attitude.
    pub attitude: UnitQuaternion<f64>,
    /// Body angular rate (rad/s).
    pub rates: Vector3<f64>,
    /// Actual thrust of each motor (N).
    pub motors: [f64; 4],
    /// World acceleration during the last step (m/s²), for the IMU.
    pub acceleration: Vector3<f64>,
}

/// A quadrotor: parameters, controller and state.
#[derive(Debug, Clone)]
pub struct Quadrotor {
    /// Airframe.
    pub params: QuadParams,
    /// Controller.
    pub gains: ControllerGains,
    /// State.
    pub state: QuadState,
    inertia: Vector3<f64>,
    inv_inertia: Vector3<f64>,
    /// Integral of the velocity error (m/s² of commanded acceleration).
    vel_integral: Vector3<f64>,
}

/// Motor positions (x, y) as signs times arm/√2, and spin directions (yaw torque sign).
const MOTOR_X: [f64; 4] = [1.0, 1.0, -1.0, -1.0];
const MOTOR_Y: [f64; 4] = [1.0, -1.0, -1.0, 1.0];
const MOTOR_SPIN: [f64; 4] = [-1.0, 1.0, -1.0, 1.0];

impl Quadrotor {
    /// A vehicle hovering at `position` with heading `yaw`.
    pub fn new(params: QuadParams, position: [f64; 3], yaw: f64) -> Self {
        let hover = params.mass * GRAVITY / 4.0;
        let inertia = Vector3::from(params.inertia);
        Self {
            params,
            gains: ControllerGains::default(),
            state: QuadState {
                position: Vector3::from(position),
                velocity: Vector3::zeros(),
                attitude: UnitQuaternion::from_euler_angles(0.0, 0.0, yaw),
                rates: Vector3::zeros(),
                motors: [hover; 4],
                acceleration: Vector3::zeros(),
            },
            inertia,
            inv_inertia: inertia.map(|v| 1.0 / v),
            vel_integral: Vector3::zeros(),
        }
    }

    /// Heading (yaw) of the body x axis (rad).
    pub fn yaw(&self) -> f64 {
        let r = self.state.attitude.to_rotation_matrix();
        r[(1, 0)].atan2(r[(0, 0)])
    }

    /// Motor thrust commands for a setpoint in the current state; `dt` advances the
    /// velocity loop's integrator (which rejects wind and model error).
    pub fn control(&mut self, sp: &Setpoint, dt: f64) -> [f64; 4] {
        let p = &self.params;
        let s = &self.state;
        let rot = s.attitude.to_rotation_matrix();
        let yaw = rot[(1, 0)].atan2(rot[(0, 0)]);
        let (sy, cy) = yaw.sin_cos();
        let (r_des, collective, yaw_rate) = match *sp {
            Setpoint::Velocity { vel, yaw_rate } => {
                let v_sp =
                    Vector3::new(cy * vel[0] - sy * vel[1], sy * vel[0] + cy * vel[1], vel[2]);
                let err = v_sp - s.velocity;
                let lim = self.gains.integral_limit;
                self.vel_integral =
                    (self.vel_integral + err * (self.gains.vel_i * dt)).map(|v| v.clamp(-lim, lim));
                let mut acc = Vector3::new(
                    self.gains.vel[0] * err.x,
                    self.gains.vel[0] * err.y,
                    self.gains.vel[1] * err.z,
                ) + v_sp * (p.drag / p.mass)
                    + self.vel_integral;
                let max_h = GRAVITY * self.gains.max_tilt.tan();
                let h = (acc.x * acc.x + acc.y * acc.y).sqrt();
                if h > max_h {
                    acc.x *= max_h / h;
                    acc.y *= max_h / h;
                }
                acc.z = (acc.z + GRAVITY).max(0.3 * GRAVITY);
                let b3 = acc.normalize();
                let b1c = Vector3::new(cy, sy, 0.0);
                let b2 = b3.cross(&b1c).normalize();
                let b1 = b2.cross(&b3);
                let r_des = Matrix3::from_columns(&[b1, b2, b3]);
                let collective = p.mass * acc.dot(&rot.matrix().column(2));
                (r_des, collective, yaw_rate)
            }
            Setpoint::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => {
                let r_des = *Rotation3::from_euler_angles(roll, pitch, yaw).matrix();
                (r_des, thrust * 4.0 * p.max_motor_thrust, yaw_rate)
            }
        };
        // Attitude error on SO(3) (vee of the skew part of R_desᵀR).
        let rm = rot.matrix();
        let e = r_des.transpose() * rm - rm.transpose() * r_des;
        let e_r = Vector3::new(e[(2, 1)], e[(0, 2)], e[(1, 0)]) * 0.5;
        let mut w_sp = -self.gains.att * e_r;
        w_sp.z += yaw_rate;
        let w = s.rates;
        let torque = (w_sp - w).component_mul(&self.inertia) * self.gains.rate
            + w.cross(&w.component_mul(&self.inertia));
        let a = p.arm / std::f64::consts::SQRT_2;
        let mut f = [0.0; 4];
        for i in 0..4 {
            f[i] = (collective / 4.0 + torque.x * MOTOR_Y[i] / (4.0 * a)
                - torque.y * MOTOR_X[i] / (4.0 * a)
                + torque.z * MOTOR_SPIN[i] / (4.0 * p.torque_coeff))
                .clamp(0.0, p.max_motor_thrust);
        }
        f
    }

    /// Advance the physics by `dt` seconds under motor commands `cmd` and `wind` (m/s, world).
    pub fn integrate(&mut self, cmd: [f64; 4], wind: Vector3<f64>, dt: f64) {
        let p = self.params;
        let alpha = 1.0 - (-dt / p.motor_tau).exp();
        let s = &mut self.state;
        for (m, c) in s.motors.iter_mut().zip(cmd) {
            *m += (c - *m) * alpha;
        }
        let a = p.arm / std::f64::consts::SQRT_2;
        let mut thrust = 0.0;
        let mut tau = Vector3::zeros();
        for i in 0..4 {
            let f = s.motors[i];
            thrust += f;
            tau.x += MOTOR_Y[i] * a * f;
            tau.y -= MOTOR_X[i] * a * f;
            tau.z += MOTOR_SPIN[i] * p.torque_coeff * f;
        }
        let body_z = s.attitude * Vector3::z();
        let force = body_z * thrust
            - (s.velocity - wind) * p.drag
            - Vector3::new(0.0, 0.0, p.mass * GRAVITY);
        let acc = force / p.mass;
        s.acceleration = acc;
        s.velocity += acc * dt;
        s.position += s.velocity * dt;
        let w = s.rates;
        let w_dot =
            (tau - w.cross(&w.component_mul(&self.inertia))).component_mul(&self.inv_inertia);
        s.rates += w_dot * dt;
        s.attitude *= UnitQuaternion::from_scaled_axis(s.rates * dt);
        s.attitude.renormalize_fast();
    }

    /// One physics step under the flight controller.
    #[inline]
    pub fn step(&mut self, sp: &Setpoint, wind: Vector3<f64>, dt: f64) {
        let cmd = self.control(sp, dt);
        self.integrate(cmd, wind, dt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fly(q: &mut Quadrotor, sp: Setpoint, seconds: f64, wind: Vector3<f64>) {
        let dt = 1.0 / 240.0;
        for _ in 0..(seconds / dt) as usize {
            q.step(&sp, wind, dt);
        }
    }

    #[test]
    fn hovers_in_place() {
        let mut q = Quadrotor::new(QuadParams::for_mass(0.5, 0.1), [0.0, 0.0, 1.0], 0.3);
        fly(
            &mut q,
            Setpoint::Velocity {
                vel: [0.0; 3],
                yaw_rate: 0.0,
            },
            5.0,
            Vector3::zeros(),
        );
        assert!(
            (q.state.position - Vector3::new(0.0, 0.0, 1.0)).norm() < 0.02,
            "{:?}",
            q.state.position
        );
        assert!((q.yaw() - 0.3).abs() < 0.01);
    }

    #[test]
    fn tracks_body_velocity_and_yaw_rate() {
        let mut q = Quadrotor::new(QuadParams::for_mass(0.8, 0.2), [0.0, 0.0, 1.0], 0.0);
        let sp = Setpoint::Velocity {
            vel: [2.0, 0.0, 0.5],
            yaw_rate: 0.0,
        };
        fly(&mut q, sp, 4.0, Vector3::zeros());
        let v = q.state.velocity;
        assert!(
            (v.x - 2.0).abs() < 0.1 && v.y.abs() < 0.05 && (v.z - 0.5).abs() < 0.05,
            "{v:?}"
        );
        // Pitched forward (nose down) to accelerate along +x.
        let body_z = q.state.attitude * Vector3::z();
        assert!(body_z.x.abs() < 0.2);
        // Yaw rate, from a settled hover.
        fly(
            &mut q,
            Setpoint::Velocity {
                vel: [0.0; 3],
                yaw_rate: 0.0,
            },
            3.0,
            Vector3::zeros(),
        );
        let y0 = q.yaw();
        fly(
            &mut q,
            Setpoint::Velocity {
                vel: [0.0; 3],
                yaw_rate: 1.0,
            },
            1.0,
            Vector3::zeros(),
        );
        let dyaw = q.yaw() - y0;
        assert!((dyaw - 1.0).abs() < 0.1, "{dyaw}");
    }

    #[test]
    fn wind_pushes_until_the_velocity_loop_compensates_and_attitude_mode_tilts() {
        let mut q = Quadrotor::new(QuadParams::for_mass(0.5, 0.3), [0.0, 0.0, 1.0], 0.0);
        let wind = Vector3::new(0.0, 3.0, 0.0);
        let mut drift = 0.0f64;
        let dt = 1.0 / 240.0;
        for _ in 0..240 * 8 {
            q.step(
                &Setpoint::Velocity {
                    vel: [0.0; 3],
                    yaw_rate: 0.0,
                },
                wind,
                dt,
            );
            drift = drift.max(q.state.velocity.y);
        }
        assert!(drift > 0.05, "wind has no effect");
        assert!(q.state.velocity.y.abs() < 0.05, "{:?}", q.state.velocity);
        // Attitude + thrust: 0.2 rad roll, hover thrust → accelerates along -y (right).
        let mut q = Quadrotor::new(QuadParams::for_mass(0.5, 0.0), [0.0, 0.0, 1.0], 0.0);
        let hover = 1.0 / 2.5;
        fly(
            &mut q,
            Setpoint::Attitude {
                roll: 0.2,
                pitch: 0.0,
                yaw_rate: 0.0,
                thrust: hover / 0.2f64.cos(),
            },
            1.0,
            Vector3::zeros(),
        );
        let (roll, _, _) = q.state.attitude.euler_angles();
        assert!((roll - 0.2).abs() < 0.02, "{roll}");
        assert!(
            q.state.velocity.y < -1.0 && q.state.velocity.z.abs() < 0.3,
            "{:?}",
            q.state.velocity
        );
    }

    #[test]
    fn motors_lag_and_saturate() {
        let mut q = Quadrotor::new(QuadParams::for_mass(0.5, 0.0), [0.0, 0.0, 1.0], 0.0);
        let max = q.params.max_motor_thrust;
        q.integrate([max; 4], Vector3::zeros(), 1.0 / 240.0);
        assert!(q.state.motors[0] < 0.5 * max);
        let cmd = q.control(
            &Setpoint::Attitude {
                roll: 0.0,
                pitch: 0.0,
                yaw_rate: 0.0,
                thrust: 5.0,
            },
            0.01,
        );
        assert!(cmd.iter().all(|&f| f <= max));
    }
}
