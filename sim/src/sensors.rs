//! IMU and wind models.

use crate::rng::Rng;
use nalgebra::{UnitQuaternion, Vector3};

/// One IMU reading in the body frame.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImuSample {
    /// Specific force (m/s²): what an accelerometer reads, +9.81 up at rest.
    pub accel: [f64; 3],
    /// Angular rate (rad/s).
    pub gyro: [f64; 3],
}

/// An IMU with white noise and random-walk bias.
#[derive(Debug, Clone)]
pub struct Imu {
    scale: f64,
    accel_bias: Vector3<f64>,
    gyro_bias: Vector3<f64>,
    rng: Rng,
}

/// Nominal accelerometer white noise (m/s²).
pub const ACCEL_NOISE: f64 = 0.05;
/// Nominal gyro white noise (rad/s).
pub const GYRO_NOISE: f64 = 0.005;
/// Nominal accelerometer bias random walk (m/s² per √s) and initial bias.
pub const ACCEL_BIAS_WALK: f64 = 0.002;
/// Nominal gyro bias random walk (rad/s per √s) and initial bias.
pub const GYRO_BIAS_WALK: f64 = 0.0005;

fn normal3(rng: &mut Rng) -> Vector3<f64> {
    Vector3::new(rng.normal(), rng.normal(), rng.normal())
}

impl Imu {
    /// An IMU whose noise is the nominal one times `scale`, seeded.
    pub fn new(scale: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let accel_bias = normal3(&mut rng) * (ACCEL_BIAS_WALK * 10.0 * scale);
        let gyro_bias = normal3(&mut rng) * (GYRO_BIAS_WALK * 10.0 * scale);
        Self {
            scale,
            accel_bias,
            gyro_bias,
            rng,
        }
    }

    /// Read the IMU given the true world acceleration, attitude and body rates;
    /// `dt` is the time since the last reading (for the bias walk).
    pub fn read(
        &mut self,
        acc_world: Vector3<f64>,
        attitude: &UnitQuaternion<f64>,
        rates: Vector3<f64>,
        dt: f64,
    ) -> ImuSample {
        let s = self.scale;
        if s == 0.0 {
            let f = attitude.inverse()
                * (acc_world + Vector3::new(0.0, 0.0, crate::quadrotor::GRAVITY));
            return ImuSample {
                accel: f.into(),
                gyro: rates.into(),
            };
        }
        let sq = dt.max(0.0).sqrt();
        self.accel_bias += normal3(&mut self.rng) * (ACCEL_BIAS_WALK * s * sq);
        self.gyro_bias += normal3(&mut self.rng) * (GYRO_BIAS_WALK * s * sq);
        let f =
            attitude.inverse() * (acc_world + Vector3::new(0.0, 0.0, crate::quadrotor::GRAVITY));
        let accel = f + self.accel_bias + normal3(&mut self.rng) * (ACCEL_NOISE * s);
        let gyro = rates + self.gyro_bias + normal3(&mut self.rng) * (GYRO_NOISE * s);
        ImuSample {
            accel: accel.into(),
            gyro: gyro.into(),
        }
    }
}

/// Mean wind plus Ornstein-Uhlenbeck gusts (1 s correlation time).
#[derive(Debug, Clone)]
pub struct Wind {
    mean: Vector3<f64>,
    gust_std: f64,
    gust: Vector3<f64>,
    rng: Rng,
}

/// Correlation time of gusts (s).
pub const GUST_TAU: f64 = 1.0;

impl Wind {
    /// Horizontal wind of `mean_speed` m/s from a seeded direction, gusts of `gust_std` m/s.
    pub fn new(mean_speed: f64, gust_std: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let dir = rng.range(0.0, std::f64::consts::TAU);
        let gust = normal3(&mut rng).component_mul(&Vector3::new(1.0, 1.0, 0.3)) * gust_std;
        Self {
            mean: Vector3::new(dir.cos(), dir.sin(), 0.0) * mean_speed,
            gust_std,
            gust,
            rng,
        }
    }

    /// Current wind velocity (m/s, world frame).
    pub fn velocity(&self) -> Vector3<f64> {
        self.mean + self.gust
    }

    /// Advance the gust process by `dt` seconds.
    pub fn advance(&mut self, dt: f64) {
        if self.gust_std == 0.0 {
            return;
        }
        let a = (-dt / GUST_TAU).exp();
        let b = self.gust_std * (1.0 - a * a).sqrt();
        let n = normal3(&mut self.rng).component_mul(&Vector3::new(1.0, 1.0, 0.3));
        self.gust = self.gust * a + n * b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imu_at_rest_reads_gravity_with_noise_of_the_right_size() {
        let mut imu = Imu::new(1.0, 4);
        let q = UnitQuaternion::identity();
        let n = 5000;
        let mut mean = Vector3::zeros();
        for _ in 0..n {
            let s = imu.read(Vector3::zeros(), &q, Vector3::zeros(), 1.0 / 30.0);
            mean += Vector3::from(s.accel);
        }
        mean /= n as f64;
        assert!(
            (mean.z - 9.81).abs() < 0.1 && mean.x.abs() < 0.1,
            "{mean:?}"
        );
        let mut ideal = Imu::new(0.0, 4);
        let s = ideal.read(Vector3::zeros(), &q, Vector3::new(0.1, 0.0, 0.0), 0.01);
        assert_eq!(s.accel, [0.0, 0.0, 9.81]);
        assert_eq!(s.gyro, [0.1, 0.0, 0.0]);
    }

    #[test]
    fn gusts_have_the_requested_spread_around_the_mean() {
        let mut w = Wind::new(3.0, 1.0, 2);
        let mut sum = Vector3::zeros();
        let mut sq = 0.0;
        let n = 20_000;
        for _ in 0..n {
            w.advance(0.1);
            let g = w.velocity() - w.mean;
            sum += w.velocity();
            sq += g.x * g.x;
        }
        let mean = sum / n as f64;
        assert!((mean.xy().norm() - 3.0).abs() < 0.3, "{mean:?}");
        let std = (sq / n as f64).sqrt();
        assert!((std - 1.0).abs() < 0.2, "{std}");
    }
}
