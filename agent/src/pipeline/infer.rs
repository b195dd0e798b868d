//! The mono stage: the monocular depth network on the rectified left image
//! of each pair (the image the stereo stage matches), its per-column depth
//! scan out. Without weights it answers nothing: an untrained network is no
//! cue. Its weights come from the caller (the twin's loop hands it the
//! learner's newest) or from a checkpoint file it watches: when the file
//! changes (the learner node saved), the new weights are swapped in between
//! two frames; a file that cannot be used (damaged, NaN weights) is reported
//! and the previous weights kept.

use super::stage::{Notes, Stage};
use crate::mono::{
    MonoError, MonoEstimate, MonoNet, MonoShape, infer, load_checkpoint, preprocess,
};
use burn::prelude::Device;
use bus::msg::StereoPair;
use bus::wire::Header;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// A frame's mono answer.
#[derive(Debug, Clone)]
pub struct MonoOutput {
    /// The network's input (the reduced left image): what the learner trains on.
    pub input: Vec<f32>,
    /// The network's estimate.
    pub estimate: MonoEstimate,
}

/// A checkpoint file looked at for changes.
struct Watch {
    path: PathBuf,
    seen: Option<SystemTime>,
    next_check: Instant,
}

/// How often the watched checkpoint's time is read.
const CHECK_EVERY: Duration = Duration::from_millis(500);

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The mono stage.
pub struct MonoStage {
    shape: MonoShape,
    device: Device,
    net: Option<MonoNet>,
    watch: Option<Watch>,
    reloads: u64,
}

impl MonoStage {
    /// A stage for inputs of `shape` on `device`, without weights yet.
    pub fn new(shape: MonoShape, device: Device) -> Self {
        Self {
            shape,
            device,
            net: None,
            watch: None,
            reloads: 0,
        }
    }

    /// The same, taking its weights from the checkpoint at `path` (loaded at
    /// start if it exists, and again whenever it changes).
    pub fn watching(mut self, path: PathBuf) -> Self {
        self.watch = Some(Watch {
            path,
            seen: None,
            next_check: Instant::now(),
        });
        self
    }

    /// Fly these weights from the next frame on.
    pub fn set_net(&mut self, net: MonoNet) {
        self.net = Some(net);
    }

    /// The weights in use.
    pub fn net(&self) -> Option<&MonoNet> {
        self.net.as_ref()
    }

    /// Times new weights were taken from the watched checkpoint.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Load the watched checkpoint if it changed since last seen.
    fn check(&mut self, notes: &mut Notes, first: bool) {
        let Some(w) = self.watch.as_mut() else {
            return;
        };
        if !first && Instant::now() < w.next_check {
            return;
        }
        w.next_check = Instant::now() + CHECK_EVERY;
        let now = modified(&w.path);
        if now.is_none() {
            if first {
                notes.say("no checkpoint yet; publishing nothing until the learner saves one");
            }
            return;
        }
        if now == w.seen {
            return;
        }
        w.seen = now;
        match load_checkpoint(&w.path, &self.shape, &self.device) {
            Ok(n) => {
                self.net = Some(n);
                if !first {
                    self.reloads += 1;
                    notes.say(format!(
                        "new weights from {} (reload {})",
                        w.path.display(),
                        self.reloads
                    ));
                }
            }
            Err(e) if self.net.is_some() => {
                notes.say(format!(
                    "new checkpoint refused, keeping the current weights: {e}"
                ));
            }
            Err(e) => notes.say(format!(
                "checkpoint refused: {e}; publishing nothing until a usable save"
            )),
        }
    }
}

impl Stage for MonoStage {
    type In = StereoPair;
    type Out = MonoOutput;
    type Error = MonoError;

    fn name(&self) -> &'static str {
        "mono"
    }

    /// A checkpoint that cannot be used is reported and waited out like a
    /// missing one, never a reason to stop (and crash-loop).
    fn start(&mut self, notes: &mut Notes) -> Result<(), MonoError> {
        self.check(notes, true);
        Ok(())
    }

    fn idle(&mut self, notes: &mut Notes) {
        self.check(notes, false);
    }

    /// No answer without weights; an error for a pair of the wrong size or a
    /// non-finite output (the policy then flies this frame on stereo).
    fn process(
        &mut self,
        _frame: &Header,
        pair: &StereoPair,
        _notes: &mut Notes,
    ) -> Result<Option<MonoOutput>, MonoError> {
        let Some(net) = self.net.as_ref() else {
            return Ok(None);
        };
        let input = preprocess(
            &pair.left,
            pair.width as usize,
            pair.height as usize,
            &self.shape,
        )?;
        let estimate = infer(net, &input, &self.shape, &self.device)?;
        Ok(Some(MonoOutput { input, estimate }))
    }

    fn stop(&mut self) -> String {
        format!("{} reloads", self.reloads)
    }
}
