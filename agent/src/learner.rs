//! Online learner for the monocular cue: a thread that takes (frame, stereo scan)
//! samples from the flying loop, keeps a bounded replay memory (recent frames plus
//! a reservoir of the whole flight) and trains the network, publishing fresh
//! weights for inference. The flying loop never waits on it: samples are offered
//! with `try_send` and weights are picked up when present.

use crate::mono::{MonoNet, MonoShape};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use thiserror::Error;

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Preprocessed image, `height * width` values.
    pub image: Vec<f32>,
    /// Target depth scan (m), one per column.
    pub scan: Vec<f32>,
    /// Which columns the stereo cue trusted.
    pub valid: Vec<bool>,
    /// Target coarse depth map (m), row-major, one per map cell.
    pub map: Vec<f32>,
    /// Which map cells the stereo cue trusted.
    pub map_valid: Vec<bool>,
    /// Loss weight (larger for frames the robot must not get wrong).
    pub weight: f32,
}

/// Learner settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Samples per training step.
    pub batch: usize,
    /// Capacity of the recent-frames ring.
    pub recent: usize,
    /// Capacity of the reservoir of the whole flight.
    pub reservoir: usize,
    /// Training steps between weight publications.
    pub publish_every: u64,
    /// Samples needed before training starts.
    pub warmup: usize,
    /// Seed for sampling and initialisation.
    pub seed: u64,
    /// Weight of the coarse-map loss next to the scan loss.
    pub map_weight: f32,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            batch: 16,
            recent: 512,
            reservoir: 1024,
            publish_every: 5,
            warmup: 32,
            seed: 7,
            map_weight: 0.5,
        }
    }
}

/// Bounded replay memory: a ring of recent samples and a uniform reservoir of all samples seen.
#[derive(Debug, Clone)]
pub struct Replay {
    recent: VecDeque<Sample>,
    reservoir: Vec<Sample>,
    cap_recent: usize,
    cap_reservoir: usize,
    seen: u64,
    rng: types::rng::Rng,
}

impl Replay {
    /// An empty memory.
    pub fn new(cap_recent: usize, cap_reservoir: usize, seed: u64) -> Self {
        Self {
            recent: VecDeque::with_capacity(cap_recent),
            reservoir: Vec::with_capacity(cap_reservoir),
            cap_recent: cap_recent.max(1),
            cap_reservoir,
            seen: 0,
            rng: types::rng::Rng::new(seed),
        }
    }

    /// Add a sample; memory stays bounded.
    pub fn push(&mut self, s: Sample) {
        self.seen += 1;
        if self.cap_reservoir > 0 {
            if self.reservoir.len() < self.cap_reservoir {
                self.reservoir.push(s.clone());
            } else {
                let j = self.rng.below(self.seen) as usize;
                if j < self.cap_reservoir {
                    self.reservoir[j] = s.clone();
                }
            }
        }
        if self.recent.len() == self.cap_recent {
            self.recent.pop_front();
        }
        self.recent.push_back(s);
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.recent.len() + self.reservoir.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples ever pushed.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Draw `n` samples: half from the recent ring, half from the reservoir.
    pub fn batch(&mut self, n: usize) -> Vec<&Sample> {
        let mut idx = Vec::with_capacity(n);
        for k in 0..n {
            let from_recent = self.reservoir.is_empty() || (k % 2 == 0 && !self.recent.is_empty());
            if from_recent {
                idx.push((true, self.rng.below(self.recent.len() as u64) as usize));
            } else {
                idx.push((false, self.rng.below(self.reservoir.len() as u64) as usize));
            }
        }
        idx.into_iter()
            .map(|(r, i)| {
                if r {
                    &self.recent[i]
                } else {
                    &self.reservoir[i]
                }
            })
            .collect()
    }
}

/// Progress of the learner.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainStats {
    /// Training steps done.
    pub steps: u64,
    /// Loss of the last step (weighted masked MSE of log depth, scan + map).
    pub loss: f32,
    /// Samples received.
    pub samples: u64,
    /// Steps whose loss was not finite; their update was thrown away.
    pub diverged: u64,
}

/// Why learning failed.
#[derive(Debug, Error, PartialEq)]
pub enum LearnerError {
    /// A sample had the wrong size.
    #[error(
        "sample with {got} image values, {cols} scan columns, {cells} map cells does not fit {want} / {want_cols} / {want_cells}"
    )]
    SampleSize {
        got: usize,
        want: usize,
        cols: usize,
        want_cols: usize,
        cells: usize,
        want_cells: usize,
    },
    /// A sample carried NaN or infinite values where it claims to be valid.
    #[error("sample rejected: non-finite {0}")]
    NonFinite(&'static str),
    /// The network does not fit the shape.
    #[error(transparent)]
    Shape(#[from] crate::mono::MonoError),
    /// The learner thread panicked or stopped.
    #[error("learner thread is gone")]
    Gone,
    /// `grant`/`collect`/`train` on a free-running learner (it trains on its own).
    #[error("training steps can only be granted to a lockstep learner")]
    NotLockstep,
    /// Training produced a non-finite loss.
    #[error("training diverged: loss {0}")]
    Diverged(f32),
}

impl Sample {
    /// Check sizes against the network and that every value marked valid is a
    /// finite positive depth and every pixel is finite.
    pub fn check(&self, shape: &MonoShape) -> Result<(), LearnerError> {
        let cells = shape.plan().map(|p| p.map.0 * p.map.1)?;
        if self.image.len() != shape.width * shape.height
            || self.scan.len() != shape.columns
            || self.valid.len() != shape.columns
            || self.map.len() != cells
            || self.map_valid.len() != cells
        {
            return Err(LearnerError::SampleSize {
                got: self.image.len(),
                want: shape.width * shape.height,
                cols: self.scan.len(),
                want_cols: shape.columns,
                cells: self.map.len(),
                want_cells: cells,
            });
        }
        if self.image.iter().any(|v| !v.is_finite()) {
            return Err(LearnerError::NonFinite("image"));
        }
        let bad = |d: &[f32], v: &[bool]| {
            d.iter()
                .zip(v)
                .any(|(z, ok)| *ok && !(z.is_finite() && *z > 0.0))
        };
        if bad(&self.scan, &self.valid) {
            return Err(LearnerError::NonFinite("scan label"));
        }
        if bad(&self.map, &self.map_valid) {
            return Err(LearnerError::NonFinite("map label"));
        }
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(LearnerError::NonFinite("weight"));
        }
        Ok(())
    }
}

/// How the learner thread is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Train continuously on whatever has arrived (the robot: the camera sets the pace).
    FreeRunning,
    /// Train only the steps the caller grants with [`Learner::train`], in order with
    /// the samples offered before the grant: runs in the twin repeat bit for bit and
    /// do not depend on how fast the machine is.
    Lockstep,
}

enum Msg {
    Sample(Box<Sample>),
    Train(u64),
}

/// Handle of a running learner thread.
pub struct Learner {
    tx: Sender<Msg>,
    weights: Receiver<(u64, MonoNet)>,
    stats: Receiver<TrainStats>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    rejected: u64,
    shape: MonoShape,
    pacing: Pacing,
    join: Option<JoinHandle<Result<MonoNet, LearnerError>>>,
    last_stats: TrainStats,
}

fn masked_mse(pred: Tensor<2>, target: Vec<f32>, mask: Vec<f32>, device: &Device) -> Tensor<1> {
    let [b, c] = pred.dims();
    let y = Tensor::<2>::from_data(TensorData::new(target, [b, c]), device);
    let m = Tensor::<2>::from_data(TensorData::new(mask, [b, c]), device);
    let err = pred - y;
    let norm = m.clone().sum().add_scalar(1e-6);
    (err.clone() * err * m).sum() / norm
}

/// One masked, weighted training step on log depth (scan plus `map_weight` times
/// the coarse map); returns the updated net and the loss.
pub fn train_step(
    net: MonoNet,
    optim: &mut burn::optim::ModuleOptimizer,
    batch: &[&Sample],
    shape: &MonoShape,
    config: &LearnerConfig,
    device: &Device,
) -> Result<(MonoNet, f32), LearnerError> {
    let b = batch.len();
    let (h, w) = (shape.height, shape.width);
    let cells = shape.plan()?.map;
    let mut x = Vec::with_capacity(b * h * w);
    let (mut y, mut m, mut ym, mut mm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in batch {
        s.check(shape)?;
        x.extend_from_slice(&s.image);
        let log = |z: &f32| z.max(shape.min_depth).ln();
        let weight = |v: &bool| if *v { s.weight } else { 0.0 };
        y.extend(s.scan.iter().map(log));
        m.extend(s.valid.iter().map(weight));
        ym.extend(s.map.iter().map(log));
        mm.extend(s.map_valid.iter().map(weight));
    }
    let x = Tensor::<4>::from_data(TensorData::new(x, [b, 1, h, w]), device);
    let (scan, map) = net.forward(x);
    let map: Tensor<2> = map.reshape([b, cells.0 * cells.1]);
    let loss = masked_mse(scan, y, m, device)
        + masked_mse(map, ym, mm, device).mul_scalar(config.map_weight);
    let value: f32 = loss.clone().into_scalar::<f32>();
    if !value.is_finite() {
        return Err(LearnerError::Diverged(value));
    }
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let net = optim.step(config.learning_rate, net, grads);
    Ok((net, value))
}

/// The training loop of the learner thread.
struct Trainer {
    net: MonoNet,
    optim: burn::optim::ModuleOptimizer,
    replay: Replay,
    stats: TrainStats,
    shape: MonoShape,
    config: LearnerConfig,
    device: Device,
}

impl Trainer {
    /// One step on a replay batch; a diverged step leaves the last good weights in place.
    fn step(&mut self) -> Result<(), LearnerError> {
        let batch: Vec<Sample> = self
            .replay
            .batch(self.config.batch)
            .into_iter()
            .cloned()
            .collect();
        let refs: Vec<&Sample> = batch.iter().collect();
        let before = self.net.clone();
        match train_step(
            self.net.clone(),
            &mut self.optim,
            &refs,
            &self.shape,
            &self.config,
            &self.device,
        ) {
            Ok((n, loss)) => {
                self.net = n;
                self.stats.loss = loss;
            }
            Err(LearnerError::Diverged(_)) => {
                self.net = before;
                self.optim = AdamConfig::new().init();
                self.stats.diverged += 1;
            }
            Err(e) => return Err(e),
        }
        self.stats.steps += 1;
        Ok(())
    }

    fn ready(&self) -> bool {
        self.replay.len() >= self.config.warmup.max(1)
    }
}

impl Learner {
    /// Start the learner thread with `net` (on an autodiff device).
    pub fn spawn(
        net: MonoNet,
        shape: MonoShape,
        config: LearnerConfig,
        device: Device,
        pacing: Pacing,
    ) -> Self {
        let (tx, rx) = bounded::<Msg>(1024);
        // Free-running keeps only the newest copy; lockstep has at most one
        // uncollected grant, but room for two keeps a grant from ever blocking.
        let (wtx, wrx) = bounded::<(u64, MonoNet)>(match pacing {
            Pacing::FreeRunning => 1,
            Pacing::Lockstep => 2,
        });
        let (stx, srx) = bounded::<TrainStats>(64);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let mut t = Trainer {
            net,
            optim: AdamConfig::new().init(),
            replay: Replay::new(config.recent, config.reservoir, config.seed),
            stats: TrainStats::default(),
            shape,
            config,
            device,
        };
        let join = std::thread::Builder::new()
            .name("learner".into())
            .spawn(move || -> Result<MonoNet, LearnerError> {
                let publish_every = t.config.publish_every.max(1);
                while !stop2.load(Ordering::Relaxed) {
                    match pacing {
                        Pacing::FreeRunning => {
                            let mut got = false;
                            while let Ok(m) = rx.try_recv() {
                                if let Msg::Sample(s) = m {
                                    t.replay.push(*s);
                                    got = true;
                                }
                            }
                            t.stats.samples = t.replay.seen();
                            if !t.ready() {
                                if !got {
                                    std::thread::sleep(std::time::Duration::from_millis(2));
                                }
                                continue;
                            }
                            t.step()?;
                            let _ = stx.try_send(t.stats);
                            if t.stats.steps.is_multiple_of(publish_every) {
                                // Drop a stale unread copy rather than wait for the reader.
                                let _ = wtx.try_send((t.stats.steps, t.net.valid()));
                            }
                        }
                        Pacing::Lockstep => {
                            let m = match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                                Ok(m) => m,
                                Err(RecvTimeoutError::Timeout) => continue,
                                Err(RecvTimeoutError::Disconnected) => break,
                            };
                            match m {
                                Msg::Sample(s) => t.replay.push(*s),
                                Msg::Train(n) => {
                                    if t.ready() {
                                        for _ in 0..n {
                                            t.step()?;
                                        }
                                    }
                                    t.stats.samples = t.replay.seen();
                                    let _ = stx.try_send(t.stats);
                                    // The caller waits for this reply.
                                    if wtx.send((t.stats.steps, t.net.valid())).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
                Ok(t.net)
            })
            .ok();
        Self {
            tx,
            weights: wrx,
            stats: srx,
            stop,
            dropped: Arc::new(AtomicU64::new(0)),
            rejected: 0,
            shape,
            pacing,
            join,
            last_stats: TrainStats::default(),
        }
    }

    /// Offer a sample without blocking. A malformed sample (wrong size, NaN
    /// label) is refused with the reason and counted; the learner keeps training
    /// on what it had. A sample the learner has no room for is counted as dropped.
    pub fn offer(&mut self, s: Sample) -> Result<(), LearnerError> {
        if let Err(e) = s.check(&self.shape) {
            self.rejected += 1;
            return Err(e);
        }
        match self.tx.try_send(Msg::Sample(Box::new(s))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(LearnerError::Gone),
        }
    }

    /// Lockstep only: train `steps` steps on everything offered so far and return
    /// the resulting weights (the caller waits; in the twin that stands for the
    /// compute time a real robot would spend in parallel).
    pub fn train(&mut self, steps: u64) -> Result<(u64, MonoNet), LearnerError> {
        self.grant(steps)?;
        self.collect()
    }

    /// Lockstep only: ask for `steps` training steps on everything offered so far
    /// without waiting; [`Learner::collect`] returns the weights they produce.
    pub fn grant(&mut self, steps: u64) -> Result<(), LearnerError> {
        if self.pacing != Pacing::Lockstep {
            return Err(LearnerError::NotLockstep);
        }
        self.tx
            .send(Msg::Train(steps))
            .map_err(|_| LearnerError::Gone)
    }

    /// Lockstep only: wait for the steps of the oldest uncollected grant and
    /// return (total steps, weights).
    pub fn collect(&mut self) -> Result<(u64, MonoNet), LearnerError> {
        if self.pacing != Pacing::Lockstep {
            return Err(LearnerError::NotLockstep);
        }
        match self.weights.recv() {
            Ok(w) => Ok(w),
            Err(_) => Err(self.failure()),
        }
    }

    fn failure(&mut self) -> LearnerError {
        match self.join.take().map(|j| j.join()) {
            Some(Ok(Err(e))) => e,
            _ => LearnerError::Gone,
        }
    }

    /// Newest published weights, if any arrived since the last call (free-running).
    pub fn latest_weights(&self) -> Option<(u64, MonoNet)> {
        let mut last = None;
        while let Ok(w) = self.weights.try_recv() {
            last = Some(w);
        }
        last
    }

    /// Latest training statistics.
    pub fn stats(&mut self) -> TrainStats {
        while let Ok(s) = self.stats.try_recv() {
            self.last_stats = s;
        }
        self.last_stats
    }

    /// Samples the learner could not take in time.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Samples refused as malformed.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Stop training and return the trained network (for checkpoints).
    pub fn finish(mut self) -> Result<MonoNet, LearnerError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take() {
            Some(j) => j.join().map_err(|_| LearnerError::Gone)?,
            None => Err(LearnerError::Gone),
        }
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(v: f32) -> Sample {
        Sample {
            image: vec![v],
            scan: vec![1.0],
            valid: vec![true],
            map: vec![],
            map_valid: vec![],
            weight: 1.0,
        }
    }

    /// A frame of the default shape whose brightness says how near everything is.
    fn bright(b: f32, shape: &MonoShape) -> Sample {
        let depth = 0.5 + 8.0 * (1.0 - b);
        let cells = shape.plan().unwrap().map;
        Sample {
            image: (0..shape.width * shape.height)
                .map(|i| b - 0.5 + 0.05 * ((i % 7) as f32 / 7.0))
                .collect(),
            scan: vec![depth; shape.columns],
            valid: (0..shape.columns).map(|c| c % 5 != 0).collect(),
            map: vec![depth; cells.0 * cells.1],
            map_valid: vec![true; cells.0 * cells.1],
            weight: 1.0,
        }
    }

    #[test]
    fn replay_is_bounded_and_keeps_old_samples_in_the_reservoir() {
        let mut r = Replay::new(4, 8, 1);
        for i in 0..1000 {
            r.push(sample(i as f32));
        }
        assert_eq!(r.len(), 12);
        assert_eq!(r.seen(), 1000);
        let old = r.reservoir.iter().filter(|s| s.image[0] < 500.0).count();
        assert!(old > 0, "reservoir should remember the early flight");
        assert!(r.recent.iter().all(|s| s.image[0] >= 996.0));
        let b = r.batch(10);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn training_reduces_the_loss_on_a_learnable_mapping() {
        // Bright images are near, dark images far: a mapping a small CNN learns quickly.
        let shape = MonoShape::default();
        let plain = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let device = plain.autodiff();
        let mut net = MonoNet::seeded(&shape, &device, 3).unwrap();
        let mut optim = AdamConfig::new().init();
        let mut rng = types::rng::Rng::new(5);
        let data: Vec<Sample> = (0..64)
            .map(|_| bright(rng.uniform() as f32, &shape))
            .collect();
        let cfg = LearnerConfig {
            learning_rate: 3e-3,
            ..LearnerConfig::default()
        };
        let mut first = None;
        let mut last = 0.0;
        for step in 0..60 {
            let batch: Vec<&Sample> = (0..16).map(|k| &data[(step * 16 + k) % 64]).collect();
            let (n, loss) = train_step(net, &mut optim, &batch, &shape, &cfg, &device).unwrap();
            net = n;
            first.get_or_insert(loss);
            last = loss;
        }
        let first = first.unwrap();
        assert!(last < 0.2 * first, "loss {first} -> {last}");
    }

    /// A learner on the CPU with a network of the default shape drawn from `seed`.
    fn cpu_learner(seed: u64, cfg: LearnerConfig, pacing: Pacing) -> (MonoShape, Learner) {
        let shape = MonoShape::default();
        let device = crate::device::device(crate::device::Backend::Cpu)
            .unwrap()
            .autodiff();
        let net = MonoNet::seeded(&shape, &device, seed).unwrap();
        (shape, Learner::spawn(net, shape, cfg, device, pacing))
    }

    #[test]
    fn learner_thread_trains_and_publishes_without_blocking() {
        let cfg = LearnerConfig {
            warmup: 4,
            publish_every: 1,
            ..LearnerConfig::default()
        };
        let (shape, mut l) = cpu_learner(5, cfg, Pacing::FreeRunning);
        let s = bright(0.5, &shape);
        let t0 = std::time::Instant::now();
        let mut got = None;
        while t0.elapsed().as_secs() < 60 && got.is_none() {
            l.offer(s.clone()).unwrap();
            got = l.latest_weights();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(got.is_some(), "no weights published");
        assert_eq!(l.grant(1), Err(LearnerError::NotLockstep));
        assert!(l.stats().steps >= 1);
        let net = l.finish().unwrap();
        assert!(net.num_params() > 0);
    }

    #[test]
    fn bad_samples_are_refused_with_the_reason_and_training_goes_on() {
        let cfg = LearnerConfig {
            warmup: 2,
            ..LearnerConfig::default()
        };
        let (shape, mut l) = cpu_learner(5, cfg, Pacing::Lockstep);
        let good = bright(0.3, &shape);
        let mut nan = good.clone();
        nan.scan[1] = f32::NAN; // column 1 is marked valid
        assert_eq!(l.offer(nan), Err(LearnerError::NonFinite("scan label")));
        let mut small = good.clone();
        small.image.pop();
        assert!(matches!(
            l.offer(small),
            Err(LearnerError::SampleSize { .. })
        ));
        let mut unlabelled = good.clone();
        unlabelled.scan[0] = f32::NAN; // column 0 is invalid: its value is ignored
        l.offer(unlabelled).unwrap();
        l.offer(good.clone()).unwrap();
        let (steps, _) = l.train(3).unwrap();
        assert_eq!(steps, 3);
        assert_eq!(l.rejected(), 2);
        let (steps, _) = l.train(2).unwrap();
        assert_eq!(steps, 5);
        l.finish().unwrap();
    }

    #[test]
    fn lockstep_training_repeats_bit_for_bit() {
        let shape = MonoShape::default();
        let run = || {
            let plain = crate::device::device(crate::device::Backend::Cpu).unwrap();
            let device = plain.clone().autodiff();
            let net = MonoNet::seeded(&shape, &device, 21).unwrap();
            let cfg = LearnerConfig {
                warmup: 4,
                ..LearnerConfig::default()
            };
            let mut l = Learner::spawn(net, shape, cfg, device, Pacing::Lockstep);
            for k in 0..8 {
                l.offer(bright(k as f32 / 8.0, &shape)).unwrap();
            }
            let (_, w) = l.train(4).unwrap();
            let input = bright(0.6, &shape).image;
            crate::mono::infer(&w, &input, &shape, &plain).unwrap()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_loaded_checkpoint_keeps_training() {
        let shape = MonoShape::default();
        let plain = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let dir = std::env::temp_dir().join(format!("learner-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bpk");
        crate::mono::save_checkpoint(&MonoNet::seeded(&shape, &plain, 4).unwrap(), &path).unwrap();
        let device = plain.clone().autodiff();
        let net = crate::mono::load_checkpoint(&path, &shape, &device).unwrap();
        let input = bright(0.2, &shape).image;
        let before = crate::mono::infer(&net.valid(), &input, &shape, &plain).unwrap();
        let mut l = Learner::spawn(
            net,
            shape,
            LearnerConfig {
                warmup: 1,
                ..LearnerConfig::default()
            },
            device,
            Pacing::Lockstep,
        );
        l.offer(bright(0.2, &shape)).unwrap();
        let (_, after) = l.train(5).unwrap();
        let after = crate::mono::infer(&after, &input, &shape, &plain).unwrap();
        assert_ne!(before.scan, after.scan, "weights did not move");
        l.finish().unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_diverged_step_is_thrown_away_and_the_learner_goes_on() {
        // A learning rate that blows the weights up within a few steps.
        let cfg = LearnerConfig {
            warmup: 1,
            learning_rate: 1e30,
            ..LearnerConfig::default()
        };
        let (shape, mut l) = cpu_learner(6, cfg, Pacing::Lockstep);
        l.offer(bright(0.4, &shape)).unwrap();
        let (steps, _) = l.train(6).unwrap();
        assert_eq!(steps, 6);
        let st = l.stats();
        assert!(st.diverged > 0, "{st:?}");
        // Still alive and training.
        let (steps, _) = l.train(1).unwrap();
        assert_eq!(steps, 7);
        l.finish().unwrap();
    }
}
