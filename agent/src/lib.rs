//! The onboard learning agent: perception networks, online learning, behaviours
//! and telemetry. The binary `agent` runs its jobs.

pub mod bench;
pub mod budget;
pub mod device;
pub mod experiment;
pub mod fly;
pub mod latency;
pub mod launch;
pub mod learner;
pub mod mono;
pub mod nodes;
pub mod persist;
pub mod pipeline;
pub mod rlbench;
pub mod selfi;
pub mod selfi_graph;
pub mod selftest;
pub mod telemetry;
pub mod train;
