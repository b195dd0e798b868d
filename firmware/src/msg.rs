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
    /// Arm the motors, if the arming checks pass (on the ground, level,
    /// battery above the arming threshold, no latched fault).
    Arm,
    /// Disarm: accepted on the ground (where it also clears latched faults),
    /// refused while airborne — a vehicle in the air is stopped only by
    /// [`ToFc::EmergencyStop`].
    Disarm,
    /// A setpoint; feeds the watchdog when accepted. Its frame's sequence
    /// number must be newer than the last accepted setpoint's (and the arming
    /// command's): replays and duplicates are refused and counted.
    Setpoint(Setpoint),
    /// Motors off now, wherever the vehicle is. Confirmed by carrying
    /// [`ESTOP_CONFIRM`] (a stray or corrupted command does not stop motors in
    /// flight); latched as [`faults::EMERGENCY_STOP`] and reported until a
    /// disarm on the ground.
    EmergencyStop {
        /// Must equal [`ESTOP_CONFIRM`].
        confirm: u32,
    },
}

/// The confirmation an emergency stop carries.
pub const ESTOP_CONFIRM: u32 = 0xE570_90FF;

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
    /// Disarm while airborne (use the emergency stop).
    Airborne,
    /// A setpoint whose sequence number is not newer than the last accepted
    /// one (a replay or a duplicate).
    Stale,
    /// An emergency stop without the confirmation.
    NotConfirmed,
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
    /// Not on the ground (arming check).
    pub const NOT_LANDED: u16 = 1 << 5;
    /// An emergency stop was commanded (latched until disarm on the ground).
    pub const EMERGENCY_STOP: u16 = 1 << 6;
    /// The battery fell below the landing threshold in flight: the vehicle
    /// lands (latched until disarm on the ground).
    pub const BATTERY_FAILSAFE: u16 = 1 << 7;
    /// The MCU was reset by its hardware watchdog (a hung main loop) or after
    /// a panic, and came back disarmed (latched until disarm on the ground).
    pub const MCU_RESET: u16 = 1 << 8;
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
    /// Position from the boot point (m): forward, left, up as the vehicle
    /// faced at boot.
    pub position: [f32; 3],
    /// The position the controller holds (m, the same frame): the learned
    /// controller's target, which velocity setpoints move; the position
    /// itself under controllers that hold none.
    pub target: [f32; 3],
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
    /// Setpoints refused as replays or duplicates since boot.
    pub stale_setpoints: u32,
    /// Core clock cycles of the learned controller's last step (its
    /// observation and forward pass), read on the MCU's own clock; 0 without
    /// a learned controller or a clock to read.
    pub policy_cycles: u32,
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
