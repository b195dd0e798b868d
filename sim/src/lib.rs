//! The simulator twin: a textured room with obstacles, quadrotor and ground-robot
//! dynamics, exact stereo rendering with ground truth, contexts, and a gym-style
//! environment API with a parallel batch.
//!
//! The twin publishes the same data as the real robot (stereo pairs, IMU, pose,
//! collision events); the nodes that put it on the wire live in the agent.
#![forbid(unsafe_code)]

pub mod batch;
pub mod camera;
pub mod classic;
pub mod context;
pub mod env;
pub mod ground;
pub mod image_io;
pub mod quadrotor;
pub mod render;
/// The deterministic generator (shared with the robot's learners).
pub use types::rng;
pub mod sensors;
pub mod target;
pub mod texture;
pub mod world;

pub use batch::VecEnv;
pub use camera::{Distortion, Intrinsics, StereoRig};
pub use context::{Context, ContextError, ContextSpace, InstanceSet};
pub use env::{Action, Env, EnvConfig, EnvError, Info, Observation, StepResult, Task, VehicleKind};
pub use render::{CameraPose, Renderer, StereoFrame};
pub use world::World;
