//! `agent bench`: how fast the monocular network runs on this machine.
//!
//! Two figures, the ones the persistent-learning loop depends on: the latency of
//! one inference (batch 1, the flying loop's case) with the process held to one
//! CPU, and training throughput (samples per second through full steps of the
//! learner: forward, masked loss, backward, Adam) on `train_threads` threads.

use crate::device::{Backend, resolve};
use crate::learner::{Sample, train_step};
use crate::mono::{MonoNet, infer};
use crate::pipeline::LoopConfig;
use anyhow::{Context as _, Result};
use burn::module::Module;
use burn::optim::AdamConfig;
use std::fmt;
use std::time::Instant;

/// Measured figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Backend measured.
    pub backend: Backend,
    /// The adapter it ran on (name, type, graphics API).
    pub adapter: String,
    /// Input size.
    pub input: (usize, usize),
    /// The network's architecture.
    pub arch: crate::mono::MonoArch,
    /// Parameters of the network.
    pub params: usize,
    /// Median inference latency (ms).
    pub infer_median_ms: f64,
    /// 99th-percentile inference latency (ms).
    pub infer_p99_ms: f64,
    /// CPU cores busy during the inference loop (process CPU time / wall time).
    pub infer_cores: Option<f64>,
    /// Training throughput (samples/s).
    pub train_samples_per_s: f64,
    /// Median time of one training step (ms).
    pub train_step_ms: f64,
    /// Samples per step.
    pub batch: usize,
    /// Threads used for training.
    pub train_threads: usize,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mono network ({:?}): {} parameters, input {}x{}, backend {:?} on {}",
            self.arch, self.params, self.input.0, self.input.1, self.backend, self.adapter
        )?;
        writeln!(
            f,
            "inference (batch 1, 1 core): median {:.3} ms, p99 {:.3} ms{}  [goal <= 10 ms: {}]",
            self.infer_median_ms,
            self.infer_p99_ms,
            self.infer_cores
                .map_or(String::new(), |c| format!(", {c:.2} cores busy")),
            if self.infer_median_ms <= 10.0 {
                "met"
            } else {
                "MISSED"
            }
        )?;
        write!(
            f,
            "training ({} threads, batch {}): {:.prec$} samples/s, {:.1} ms per step  [goal >= 200 samples/s: {}]",
            self.train_threads,
            self.batch,
            self.train_samples_per_s,
            self.train_step_ms,
            if self.train_samples_per_s >= 200.0 {
                "met"
            } else {
                "MISSED"
            },
            prec = if self.train_samples_per_s < 10.0 {
                2
            } else {
                0
            }
        )
    }
}

/// Process CPU time (user + system) in seconds, where the OS tells it.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU time of the whole process, every thread included (also those that have
/// ended), at nanosecond resolution.
#[cfg(all(target_os = "linux", feature = "camera"))]
#[allow(unsafe_code)]
pub(crate) fn process_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Hold the calling thread (and threads it starts) to one CPU; returns the previous mask.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn pin_to_one_cpu() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_{get,set}affinity read/write exactly
    // one cpu_set_t of the size passed, for the calling thread (pid 0).
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
            return None;
        }
        let cpu = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &old))?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        (libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0)
            .then_some(old)
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn restore_cpus(old: libc::cpu_set_t) {
    // SAFETY: as in `pin_to_one_cpu`.
    unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old);
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Measure both figures for `cfg`'s network shape, learner batch and backend.
pub fn run(cfg: &LoopConfig, seconds: f64, train_threads: usize) -> Result<BenchReport> {
    cfg.validate(f64::INFINITY)?;
    let shape = cfg.mono;
    let resolved = resolve(cfg.backend)?;
    let plain = resolved.device.clone();
    let mut rng = types::rng::Rng::new(3);
    let cells = shape.plan()?.map;
    let samples: Vec<Sample> = (0..64)
        .map(|_| Sample {
            image: (0..shape.width * shape.height)
                .map(|_| rng.uniform() as f32 - 0.5)
                .collect(),
            scan: (0..shape.columns)
                .map(|_| 0.5 + 5.0 * rng.uniform() as f32)
                .collect(),
            valid: vec![true; shape.columns],
            map: vec![2.0; cells.0 * cells.1],
            map_valid: vec![true; cells.0 * cells.1],
            weight: 1.0,
        })
        .collect();

    // Training first, on a pool of `train_threads` threads.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(train_threads.max(1))
        .build()
        .context("cannot start the training thread pool")?;
    let batch = cfg.learner.batch;
    let (train_samples_per_s, train_step_ms) = pool.install(|| -> Result<(f64, f64)> {
        let ad = plain.clone().autodiff();
        let mut net = MonoNet::seeded(&shape, &ad, 1)?;
        let mut optim = AdamConfig::new().init();
        let mut times = Vec::new();
        let t0 = Instant::now();
        let mut k = 0;
        while t0.elapsed().as_secs_f64() < seconds || times.len() < 5 {
            let b: Vec<&Sample> = (0..batch)
                .map(|i| &samples[(k + i) % samples.len()])
                .collect();
            k += batch;
            let t = Instant::now();
            net = train_step(net, &mut optim, &b, &shape, &cfg.learner, &ad)?.0;
            times.push(t.elapsed().as_secs_f64());
        }
        // The first steps allocate; leave them out.
        let steady = &mut times[2..];
        let total: f64 = steady.iter().sum();
        let per_s = (steady.len() * batch) as f64 / total;
        Ok((per_s, 1e3 * percentile(steady, 0.5)))
    })?;

    // Inference on one CPU, in a one-thread pool started after pinning.
    #[cfg(target_os = "linux")]
    let old = pin_to_one_cpu();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("cannot start the inference thread pool")?;
    let net = MonoNet::seeded(&shape, &plain, 1)?;
    let measured = one.install(|| -> Result<(Vec<f64>, Option<f64>)> {
        for s in samples.iter().take(10) {
            infer(&net, &s.image, &shape, &plain)?;
        }
        let mut times = Vec::new();
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut k = 0;
        while t0.elapsed().as_secs_f64() < seconds || times.len() < 20 {
            let t = Instant::now();
            infer(&net, &samples[k % samples.len()].image, &shape, &plain)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            k += 1;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cores = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) / wall);
        Ok((times, cores))
    });
    #[cfg(target_os = "linux")]
    if let Some(old) = old {
        restore_cpus(old);
    }
    let (mut times, cores) = measured?;
    Ok(BenchReport {
        backend: resolved.backend,
        adapter: resolved.adapter,
        input: (shape.width, shape.height),
        arch: shape.arch,
        params: net.num_params(),
        infer_median_ms: percentile(&mut times, 0.5),
        infer_p99_ms: percentile(&mut times, 0.99),
        infer_cores: cores,
        train_samples_per_s,
        train_step_ms,
        batch,
        train_threads,
    })
}
