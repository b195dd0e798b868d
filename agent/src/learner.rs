//! Online learner for the monocular cue: a thread that takes (frame, stereo scan)
//! samples from the flying loop, keeps a bounded replay memory (recent frames plus
//! a reservoir of the whole flight) and trains the network, publishing fresh
//! weights for inference. The flying loop never waits on it: samples are offered
//! with `try_send` and weights are picked up when present.

use crate::mono::{MonoNet, MonoShape};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use crossbeam::channel::{Receiver, Sender, TrySendError, bounded};
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
    rng: sim::rng::Rng,
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
            rng: sim::rng::Rng::new(seed),
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
    /// Loss of the last step (masked MSE of log depth).
    pub loss: f32,
    /// Samples received.
    pub samples: u64,
}

/// Why learning failed.
#[derive(Debug, Error)]
pub enum LearnerError {
    /// A sample had the wrong size.
    #[error("sample with {got} image values / {cols} columns does not fit {want} / {want_cols}")]
    SampleSize {
        got: usize,
        want: usize,
        cols: usize,
        want_cols: usize,
    },
    /// The learner thread panicked.
    #[error("learner thread panicked")]
    Panicked,
    /// Training produced a non-finite loss.
    #[error("training diverged: loss {0}")]
    Diverged(f32),
}

/// Handle of a running learner thread.
pub struct Learner {
    samples: Sender<Sample>,
    weights: Receiver<(u64, MonoNet)>,
    stats: Receiver<TrainStats>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    join: Option<JoinHandle<Result<MonoNet, LearnerError>>>,
    last_stats: TrainStats,
}

/// One masked, weighted training step; returns the updated net and the loss.
pub fn train_step(
    net: MonoNet,
    optim: &mut burn::optim::ModuleOptimizer,
    batch: &[&Sample],
    shape: &MonoShape,
    lr: f64,
    device: &Device,
) -> Result<(MonoNet, f32), LearnerError> {
    let b = batch.len();
    let (h, w, c) = (shape.height, shape.width, shape.columns);
    let mut x = Vec::with_capacity(b * h * w);
    let mut y = Vec::with_capacity(b * c);
    let mut m = Vec::with_capacity(b * c);
    for s in batch {
        if s.image.len() != h * w || s.scan.len() != c || s.valid.len() != c {
            return Err(LearnerError::SampleSize {
                got: s.image.len(),
                want: h * w,
                cols: s.scan.len(),
                want_cols: c,
            });
        }
        x.extend_from_slice(&s.image);
        y.extend(s.scan.iter().map(|z| z.max(shape.min_depth).ln()));
        m.extend(s.valid.iter().map(|&v| if v { s.weight } else { 0.0 }));
    }
    let x = Tensor::<4>::from_data(TensorData::new(x, [b, 1, h, w]), device);
    let y = Tensor::<2>::from_data(TensorData::new(y, [b, c]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(m, [b, c]), device);
    let pred = net.forward(x);
    let err = pred - y;
    let norm = mask.clone().sum().add_scalar(1e-6);
    let loss = (err.clone() * err * mask).sum() / norm;
    let value: f32 = loss.clone().into_scalar::<f32>();
    if !value.is_finite() {
        return Err(LearnerError::Diverged(value));
    }
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let net = optim.step(lr, net, grads);
    Ok((net, value))
}

impl Learner {
    /// Start the learner thread with `net` (on an autodiff device).
    pub fn spawn(net: MonoNet, shape: MonoShape, config: LearnerConfig, device: Device) -> Self {
        let (tx, rx) = bounded::<Sample>(256);
        let (wtx, wrx) = bounded::<(u64, MonoNet)>(1);
        let (stx, srx) = bounded::<TrainStats>(64);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let join = std::thread::Builder::new()
            .name("learner".into())
            .spawn(move || -> Result<MonoNet, LearnerError> {
                let mut net = net;
                let mut optim = AdamConfig::new().init();
                let mut replay = Replay::new(config.recent, config.reservoir, config.seed);
                let mut stats = TrainStats::default();
                while !stop2.load(Ordering::Relaxed) {
                    let mut got = false;
                    while let Ok(s) = rx.try_recv() {
                        replay.push(s);
                        got = true;
                    }
                    stats.samples = replay.seen();
                    if replay.len() < config.warmup.max(1) {
                        if !got {
                            std::thread::sleep(std::time::Duration::from_millis(2));
                        }
                        continue;
                    }
                    let batch: Vec<Sample> =
                        replay.batch(config.batch).into_iter().cloned().collect();
                    let refs: Vec<&Sample> = batch.iter().collect();
                    let (n, loss) = train_step(
                        net,
                        &mut optim,
                        &refs,
                        &shape,
                        config.learning_rate,
                        &device,
                    )?;
                    net = n;
                    stats.steps += 1;
                    stats.loss = loss;
                    let _ = stx.try_send(stats);
                    if stats.steps % config.publish_every == 0 {
                        // Drop a stale unread copy rather than wait for the reader.
                        let _ = wtx.try_send((stats.steps, net.valid()));
                    }
                }
                Ok(net)
            })
            .ok();
        Self {
            samples: tx,
            weights: wrx,
            stats: srx,
            stop,
            dropped: Arc::new(AtomicU64::new(0)),
            join,
            last_stats: TrainStats::default(),
        }
    }

    /// Offer a sample without blocking; it is counted as dropped if the learner is behind.
    pub fn offer(&self, s: Sample) {
        match self.samples.try_send(s) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Newest published weights, if any arrived since the last call.
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

    /// Stop training and return the trained network (for checkpoints).
    pub fn finish(mut self) -> Result<MonoNet, LearnerError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take() {
            Some(j) => j.join().map_err(|_| LearnerError::Panicked)?,
            None => Err(LearnerError::Panicked),
        }
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
        plain.seed(3);
        let device = plain.autodiff();
        let mut net = MonoNet::new(&shape, &device);
        let mut optim = AdamConfig::new().init();
        let mut rng = sim::rng::Rng::new(5);
        let make = |rng: &mut sim::rng::Rng| {
            let b = rng.uniform() as f32;
            let depth = 0.5 + 8.0 * (1.0 - b);
            Sample {
                image: (0..shape.width * shape.height)
                    .map(|i| b - 0.5 + 0.05 * ((i % 7) as f32 / 7.0))
                    .collect(),
                scan: vec![depth; shape.columns],
                valid: (0..shape.columns).map(|c| c % 5 != 0).collect(),
                weight: 1.0,
            }
        };
        let data: Vec<Sample> = (0..64).map(|_| make(&mut rng)).collect();
        let mut first = None;
        let mut last = 0.0;
        for step in 0..60 {
            let batch: Vec<&Sample> = (0..16).map(|k| &data[(step * 16 + k) % 64]).collect();
            let (n, loss) = train_step(net, &mut optim, &batch, &shape, 3e-3, &device).unwrap();
            net = n;
            first.get_or_insert(loss);
            last = loss;
        }
        let first = first.unwrap();
        assert!(last < 0.2 * first, "loss {first} -> {last}");
    }

    #[test]
    fn learner_thread_trains_and_publishes_without_blocking() {
        let shape = MonoShape::default();
        let device = crate::device::device(crate::device::Backend::Cpu)
            .unwrap()
            .autodiff();
        let net = MonoNet::new(&shape, &device);
        let cfg = LearnerConfig {
            warmup: 4,
            publish_every: 1,
            ..LearnerConfig::default()
        };
        let mut l = Learner::spawn(net, shape, cfg, device);
        let s = Sample {
            image: vec![0.0; shape.width * shape.height],
            scan: vec![2.0; shape.columns],
            valid: vec![true; shape.columns],
            weight: 1.0,
        };
        let t0 = std::time::Instant::now();
        let mut got = None;
        while t0.elapsed().as_secs() < 60 && got.is_none() {
            l.offer(s.clone());
            got = l.latest_weights();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(got.is_some(), "no weights published");
        assert!(l.stats().steps >= 1);
        let net = l.finish().unwrap();
        assert!(net.num_params() > 0);
    }
}
