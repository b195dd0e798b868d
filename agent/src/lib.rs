//! The onboard learning agent: perception networks, online learning, behaviours
//! and telemetry. The binary `agent` runs its jobs.
//!
//! With the `twin` feature (on by default) it also holds the simulator twin's
//! side: the twin camera node, the in-process flight experiments (`fly`,
//! `persist`, `budget`), reinforcement learning (`train`, `selfi`). Without
//! it the robot's build compiles no simulator:
//! `cargo build --release -p agent --no-default-features`.

#[cfg(feature = "twin")]
pub mod actors;
pub mod bench;
#[cfg(feature = "twin")]
pub mod budget;
#[cfg(feature = "camera")]
pub mod camera_bench;
#[cfg(feature = "camera")]
pub mod camnode;
pub mod certs;
pub mod device;
#[cfg(feature = "twin")]
pub mod experiment;
pub mod fcnode;
#[cfg(feature = "twin")]
pub mod fly;
pub mod latency;
pub mod launch;
pub mod learner;
pub mod mono;
pub mod nodes;
pub mod outfile;
pub mod persist;
pub mod pipeline;
pub mod preflight;
#[cfg(feature = "twin")]
pub mod rlbench;
pub mod scratch;
#[cfg(feature = "twin")]
pub mod selfi;
#[cfg(feature = "twin")]
pub mod selfi_graph;
#[cfg(feature = "twin")]
pub mod selfi_senses;
pub mod selftest;
pub mod telemetry;
#[cfg(feature = "twin")]
pub mod train;
