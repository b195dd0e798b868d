//! A kinematic stand-in for the vehicle, for builds with no sensors to read:
//! the firmware under QEMU and the host build behind a pseudo-terminal. It
//! turns the autopilot's demand into the attitude, rates, acceleration,
//! velocity, altitude and battery voltage that real drivers would report, so
//! the agent sees telemetry that responds to its setpoints.

use core::f32::consts::PI;

use crate::autopilot::{Demand, Sensors, Vehicle};

const G: f32 = 9.81;
/// Time constant of the velocity loop (s).
const TAU: f32 = 0.15;

/// The simulated vehicle.
pub struct Plant {
    vehicle: Vehicle,
    velocity: [f32; 3],
    accel: [f32; 3],
    yaw: f32,
    yaw_rate: f32,
    altitude: f32,
    /// Horizontal position from the boot point (m; forward, left at boot).
    xy: [f32; 2],
    battery_mv: f32,
}

impl Plant {
    /// On the ground, at rest, battery full (12.6 V).
    pub fn new(vehicle: Vehicle) -> Self {
        Self {
            vehicle,
            velocity: [0.0; 3],
            accel: [0.0; 3],
            yaw: 0.0,
            yaw_rate: 0.0,
            altitude: 0.0,
            xy: [0.0; 2],
            battery_mv: 12_600.0,
        }
    }

    /// Advances `dt` seconds under `demand`.
    pub fn step(&mut self, demand: &Demand, dt: f32) {
        let before = self.velocity;
        let (target, yaw_rate, armed) = match *demand {
            Demand::Off => {
                // Motors off: an airborne multirotor falls; on the ground it stops.
                let mut v = [0.0, 0.0, self.velocity[2]];
                if self.vehicle == Vehicle::Multirotor && self.altitude > 0.0 {
                    v[2] -= G * dt;
                }
                (v, 0.0, false)
            }
            Demand::Velocity { velocity, yaw_rate } => (velocity, yaw_rate, true),
            Demand::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => {
                // Small-angle: tilt accelerates, thrust above hover (0.5) climbs.
                let a = [-pitch * G, -roll * G, (thrust - 0.5) * 2.0 * G];
                let v = [
                    self.velocity[0] + a[0] * TAU,
                    self.velocity[1] + a[1] * TAU,
                    self.velocity[2] + a[2] * TAU,
                ];
                (v, yaw_rate, true)
            }
            Demand::Motors(m) => {
                let thrust = (m[0] + m[1] + m[2] + m[3]) * 0.25;
                (
                    [0.0, 0.0, self.velocity[2] + (thrust - 0.5) * 2.0 * G * TAU],
                    0.0,
                    true,
                )
            }
        };
        let k = (dt / TAU).min(1.0);
        for (v, t) in self.velocity.iter_mut().zip(target) {
            *v += (t - *v) * k;
        }
        if self.vehicle == Vehicle::Ground {
            self.velocity[1] = 0.0;
            self.velocity[2] = 0.0;
        }
        self.altitude += self.velocity[2] * dt;
        // The velocity is the body's (forward, left): turned by the heading.
        let (sy, cy) = (crate::trig::sin(self.yaw), crate::trig::cos(self.yaw));
        self.xy[0] += (cy * self.velocity[0] - sy * self.velocity[1]) * dt;
        self.xy[1] += (sy * self.velocity[0] + cy * self.velocity[1]) * dt;
        if self.altitude <= 0.0 {
            self.altitude = 0.0;
            if self.velocity[2] < 0.0 {
                self.velocity[2] = 0.0;
            }
        }
        for ((a, v), b) in self.accel.iter_mut().zip(self.velocity).zip(before) {
            *a = (v - b) / dt;
        }
        self.yaw_rate = yaw_rate;
        self.yaw += yaw_rate * dt;
        if self.yaw > PI {
            self.yaw -= 2.0 * PI;
        } else if self.yaw < -PI {
            self.yaw += 2.0 * PI;
        }
        // About 10 minutes of flight from 12.6 V to 10.5 V; nothing drawn disarmed.
        if armed {
            self.battery_mv -= 3.5 * dt;
        }
    }

    /// What the sensors would read now.
    pub fn sensors(&self) -> Sensors {
        Sensors {
            attitude: [-self.accel[1] / G, -self.accel[0] / G, self.yaw],
            rates: [0.0, 0.0, self.yaw_rate],
            accel: [self.accel[0], self.accel[1], self.accel[2] + G],
            velocity: self.velocity,
            altitude: self.altitude,
            position: [self.xy[0], self.xy[1], self.altitude],
            target: [self.xy[0], self.xy[1], self.altitude],
            on_ground: self.altitude <= 0.01,
            battery_mv: self.battery_mv.max(0.0) as u16,
            imu_ok: true,
        }
    }
}
