//! The messages of the link, in both directions.
//!
//! Encoded with postcard (varints, no field names), so a setpoint is about 20
//! bytes on the wire. Adding a variant at the end of an enum is compatible with
//! older peers only if they never receive it; anything else bumps
//! [`crate::frame::VERSION`].

use serde::{Deserialize, Serialize};

/// A setpoint from the agent. Axes are the vehicle's body frame, z up
/// (forward, left, up), angles in radians, counter-clockwise positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Setpoint {
    /// Body velocity (m/s) and yaw rate (rad/s): what the policy flies.
    Velocity {
        /// Forward speed.
        forward: f32,
        /// Leftward speed.
        left: f32,
        /// Upward speed.
        up: f32,
        /// Yaw rate.
        yaw_rate: f32,
    },
    /// Attitude (rad) and collective thrust (0..1).
    Attitude {
        /// Roll angle.
        roll: f32,
        /// Pitch angle.
        pitch: f32,
        /// Yaw rate (rad/s).
        yaw_rate: f32,
        /// Collective thrust, 0 (off) to 1 (full).
        thrust: f32,
    },
    /// Direct motor outputs (0..1), for bench tests with props off.
    Motors([f32; 4]),
}

/// Agent → flight controller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ToFc {
    /// The agent is alive (does not feed the setpoint watchdog).
    Heartbeat {
        /// Agent uptime (ms).
        uptime_ms: u32,
    },
    /// Arm the motors, if the arming checks pass.
    Arm,
    /// Disarm (always accepted; also clears a latched failsafe).
    Disarm,
    /// A setpoint; feeds the watchdog when accepted.
    Setpoint(Setpoint),
}

/// Flight-controller state, as reported in telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FcState {
    /// Motors off.
    Disarmed,
    /// Armed, following setpoints.
    Armed,
    /// Failsafe, multirotor: holding position.
    FailsafeHover,
    /// Failsafe, multirotor: descending to land, then disarms.
    FailsafeLand,
    /// Failsafe, ground robot: stopped, latched until disarmed.
    FailsafeStop,
}

impl FcState {
    /// Whether a failsafe is active.
    pub fn is_failsafe(self) -> bool {
        matches!(
            self,
            FcState::FailsafeHover | FcState::FailsafeLand | FcState::FailsafeStop
        )
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Setpoint while disarmed.
    NotArmed,
    /// Command while a failsafe is latched (disarm to clear it).
    InFailsafe,
    /// Arming checks failed; the bits are [`faults`] flags.
    ArmingChecks(u16),
    /// A setpoint with NaN or infinite values.
    NotFinite,
    /// A setpoint kind this vehicle does not take (attitude on a ground robot).
    Unsupported,
}

/// Answer to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckStatus {
    /// Done (a setpoint may still have been clamped to the limits).
    Accepted,
    /// Accepted after clamping to the configured limits.
    Clamped,
    /// Refused, with the reason.
    Refused(Refusal),
}

/// Fault flags (bits of [`Telemetry::faults`] and [`Refusal::ArmingChecks`]).
pub mod faults {
    /// Battery below the arming or landing threshold.
    pub const BATTERY_LOW: u16 = 1 << 0;
    /// Inertial sensor not healthy.
    pub const IMU: u16 = 1 << 1;
    /// The setpoint watchdog fired (latched until disarm).
    pub const WATCHDOG: u16 = 1 << 2;
    /// Frames from the agent failed their CRC recently (last 1 s).
    pub const LINK_ERRORS: u16 = 1 << 3;
    /// Attitude beyond the tilt limit.
    pub const TILT: u16 = 1 << 4;
}

/// The flight controller's periodic report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Flight-controller uptime (ms).
    pub uptime_ms: u32,
    /// State.
    pub state: FcState,
    /// Roll, pitch, yaw (rad).
    pub attitude: [f32; 3],
    /// Body rates (rad/s).
    pub rates: [f32; 3],
    /// Accelerometer, body frame (m/s²).
    pub accel: [f32; 3],
    /// Body velocity estimate (m/s): forward, left, up.
    pub velocity: [f32; 3],
    /// Height above the take-off point (m).
    pub altitude: f32,
    /// Battery voltage (mV).
    pub battery_mv: u16,
    /// [`faults`] flags.
    pub faults: u16,
    /// Sequence number of the last accepted setpoint.
    pub last_setpoint_seq: u16,
    /// Milliseconds since the last accepted setpoint.
    pub setpoint_age_ms: u32,
    /// Frames from the agent that failed decoding since boot.
    pub rx_errors: u32,
}

/// Flight controller → agent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum FromFc {
    /// The periodic report (20 Hz by default).
    Telemetry(Telemetry),
    /// Answer to the command frame with sequence number `seq`.
    Ack {
        /// Sequence number of the command.
        seq: u16,
        /// What became of it.
        status: AckStatus,
    },
}
