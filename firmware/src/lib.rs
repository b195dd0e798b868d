//! The flight-controller link, shared by both ends: the agent's serial driver
//! (with the `std` feature) and the MCU firmware (`no_std`, `firmware/mcu`).
//!
//! - [`frame`]: COBS framing with a CRC-32C, versioned, sequence-numbered.
//! - [`msg`]: the messages (postcard-encoded): heartbeat, arm/disarm,
//!   setpoints, telemetry, acknowledgements.
//! - [`autopilot`]: the MCU's logic — arming checks, limits, rate limiting and
//!   the setpoint watchdog with its failsafe.
//! - [`learned`]: a learned motor-level policy as a position controller, and
//!   flying it against [`quad`].
//! - [`plant`]: a simulated vehicle for builds without sensors (QEMU, host).
//! - [`policy`]: a learned policy's forward pass (no allocation, `f32`).
//! - [`quad`]: a quadrotor as a rigid body driven by its motors (for
//!   motor-level policies: trained on it, flown against it).
//! - [`node`]: all of the above scheduled on a millisecond clock.
//! - [`ring`]: the byte queues between the UART's interrupts and the main loop.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![forbid(unsafe_code)]

pub mod autopilot;
pub mod cobs;
pub mod crc;
pub mod frame;
pub mod learned;
pub mod msg;
pub mod node;
pub mod plant;
pub mod policy;
pub mod quad;
pub mod ring;
pub mod trig;

pub use autopilot::{Autopilot, Config, Demand, Limits, Sensors, Vehicle};
pub use frame::{Decoder, DecoderStats, Frame, FrameError, MAX_WIRE};
pub use msg::{
    AckStatus, ESTOP_CONFIRM, FcState, FromFc, Refusal, Setpoint, Telemetry, ToFc, faults,
};
pub use node::Firmware;
