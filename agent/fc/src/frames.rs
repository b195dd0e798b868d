//! The one world frame of the agent (REP-103, as ROS uses it): the body frame
//! is x forward, y left, z up (FLU); the world frame is ENU-like — x and y
//! horizontal, z up, yaw counter-clockwise seen from above. Every node that
//! publishes `state` converts into it.
//!
//! MAVLink autopilots (PX4, ArduPilot) report in NED with an FRD body:
//! position (north, east, down), Euler angles roll, pitch (nose up
//! positive), yaw (clockwise from north). Converted:
//! position ENU = (east, north, −down); roll stays; pitch flips sign; yaw
//! becomes π/2 − yaw (counter-clockwise from east). Velocities the same way.

/// A pose in the agent's world frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnuState {
    /// Position (m, ENU).
    pub position: [f64; 3],
    /// Attitude quaternion (w, x, y, z) of the FLU body in the ENU world.
    pub attitude: [f64; 4],
    /// Velocity in the body frame (m/s: forward, left, up).
    pub velocity: [f32; 3],
}

/// Quaternion (w, x, y, z) of Z-Y-X Euler angles in the FLU/ENU convention
/// (yaw about z, then pitch about y, then roll about x; pitch positive nose down).
pub fn quat_from_euler(roll: f64, pitch: f64, yaw: f64) -> [f64; 4] {
    let (sr, cr) = (roll * 0.5).sin_cos();
    let (sp, cp) = (pitch * 0.5).sin_cos();
    let (sy, cy) = (yaw * 0.5).sin_cos();
    [
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ]
}

/// Rotate world vector `v` into the body frame of attitude `q` (w, x, y, z): qᵀ v q.
pub fn world_to_body(q: [f64; 4], v: [f64; 3]) -> [f64; 3] {
    let [w, x, y, z] = q;
    // Rotation matrix R (body → world); body = Rᵀ · world.
    let r = [
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
    ];
    [0, 1, 2].map(|j| r[0][j] * v[0] + r[1][j] * v[1] + r[2][j] * v[2])
}

/// A MAVLink state — ATTITUDE (roll, pitch, yaw; NED/FRD) and
/// LOCAL_POSITION_NED (x, y, z, vx, vy, vz) — in the agent's frame.
pub fn from_ned(attitude: [f32; 3], local: [f32; 6]) -> EnuState {
    let [roll, pitch, yaw] = attitude.map(f64::from);
    let q = quat_from_euler(roll, -pitch, std::f64::consts::FRAC_PI_2 - yaw);
    let [n, e, d, vn, ve, vd] = local.map(f64::from);
    let v = world_to_body(q, [ve, vn, -vd]);
    EnuState {
        position: [e, n, -d],
        attitude: q,
        velocity: v.map(|c| c as f32),
    }
}

/// Our firmware's report — roll and pitch as the autopilot's setpoints use
/// them (roll right-wing-down, pitch nose-up positive), yaw counter-clockwise
/// as the agent's — into the agent's attitude quaternion.
pub fn from_fclink_attitude(attitude: [f32; 3]) -> [f64; 4] {
    let [roll, pitch, yaw] = attitude.map(f64::from);
    quat_from_euler(roll, -pitch, yaw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_pure_yaw() {
        let q = quat_from_euler(0.0, 0.0, 0.0);
        assert_eq!(q, [1.0, 0.0, 0.0, 0.0]);
        // Facing north in NED (yaw 0) is facing +y in ENU: a quarter turn.
        let s = from_ned([0.0, 0.0, 0.0], [0.0; 6]);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((s.attitude[0] - h).abs() < 1e-12 && (s.attitude[3] - h).abs() < 1e-12);
        // Flying north at 1 m/s while facing north: forward in the body.
        let s = from_ned([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        assert!((s.velocity[0] - 1.0).abs() < 1e-6 && s.velocity[1].abs() < 1e-6);
    }

    #[test]
    fn world_to_body_inverts_the_attitude() {
        // Yawed 90° left: world +y is body forward.
        let q = quat_from_euler(0.0, 0.0, std::f64::consts::FRAC_PI_2);
        let b = world_to_body(q, [0.0, 1.0, 0.0]);
        assert!((b[0] - 1.0).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
    }
}
