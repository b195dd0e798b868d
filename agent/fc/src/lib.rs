//! The agent's side of the flight-controller link.
//!
//! - [`link`]: the serial driver for our own protocol ([`fclink`]): framing
//!   with CRC, resync after corrupt bytes, re-open after the device vanishes,
//!   counters, acknowledged commands.
//! - [`hostfc`]: the firmware's logic built for the host behind a
//!   pseudo-terminal, the fallback where there is no board or QEMU.
//! - [`mav`]: MAVLink v2 to PX4 or ArduPilot over serial or UDP.
//! - [`frames`]: the agent's world and body frames (REP-103), and the
//!   conversions from what the autopilots report.
#![forbid(unsafe_code)]

pub mod frames;
pub mod hostfc;
pub mod link;
pub mod mav;
pub mod qemu;

pub use hostfc::HostFc;
pub use link::{Event, Link, LinkConfig, LinkError, LinkStats};
