//! The stages of the flight loop, one implementation each, with one
//! lifecycle ([`stage::Stage`]): the twin's in-process experiments (`agent
//! fly`, `agent persist`, `agent budget`) run them on [`stage::Local`], the
//! robot's zenoh nodes (`agent node stereo|mono|policy`) on
//! `crate::nodes::serve`.
//!
//! A frame goes camera (`camera::CameraStage` with the `camera` feature: a
//! GStreamer source, pairing, rectification with the rig's maps; or the twin,
//! whose pairs are rectified already) → [`depth::StereoStage`] (semi-global
//! matching, disparity to metric depth with the rig's projection, the
//! per-column depth scan) → [`infer::MonoStage`] (mono inference) →
//! [`pilot::Pilot`]: [`switch::CueSwitch`] (which cue flies, and the training
//! wheels), then a [`policy::Policy`] ([`avoid::Avoider`], the reactive
//! policy, with [`avoid::AltitudeHold`]; or a trained network) → the flight
//! controller.
//!
//! One rule holds in every stage: **unknown is not free**. A scan column
//! without a valid stereo answer is NaN, never a default range; the policy and
//! the training wheels treat an unknown way ahead as an obstacle risk, and the
//! mono network is never trained on an unknown target.

pub mod avoid;
#[cfg(feature = "camera")]
pub mod camera;
pub mod config;
pub mod depth;
pub mod infer;
pub mod pilot;
pub mod policy;
pub mod replay;
pub mod rig;
pub mod stage;
pub mod switch;

pub use avoid::{Ahead, AltitudeHold, AvoidConfig, Avoider, Velocity};
#[cfg(feature = "camera")]
pub use camera::{CameraStage, CameraStageError, RectifiedPair};
pub use config::LoopConfig;
pub use depth::{ScanShape, StereoDepth, StereoStage, StereoStageError, scan_shape};
pub use infer::{MonoOutput, MonoStage};
pub use pilot::{Decision, Pilot, PilotInput};
pub use policy::{Commanded, External, ExternalConfig, Policy, PolicyFrame, Reactive};
pub use rig::{RigError, RigGeometry};
pub use stage::{Local, LogObserver, Notes, Observer, Outcome, Stage, StageStats};
pub use switch::{CueSwitch, FrameCues, SwitchOutput};
