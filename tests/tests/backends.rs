//! The backend suite: every network of the agent — the monocular depth network
//! and its learner, DQN, SAC, PPO and SELFI's models, actor and critics — run
//! on each compiled backend against the CPU (`ndarray`) backend: the forward
//! pass, one training step, and a checkpoint written on one backend and loaded
//! on the other.
//!
//! A network drawn from a seed has the same weights on every backend (weights
//! are drawn on the CPU and moved), so the GPU's numbers are compared with the
//! CPU's directly. Tolerances: forward passes agree to [`FORWARD`] (relative,
//! plus the same absolute term); after a training step to [`TRAINED`] — wider,
//! because Adam's first step moves every weight by about ±lr whatever the size
//! of its gradient, so a gradient that rounds to the other sign on one backend
//! moves its weight by 2·lr there. A missing GPU adapter fails the suite: it
//! never skips (CI installs Mesa's lavapipe for it).

use agent::device::{Backend, Resolved, compiled_backends, resolve};
use agent::learner::{LearnerConfig, Sample, train_step};
use agent::mono::{MonoArch, MonoNet, MonoShape, infer, load_checkpoint, save_checkpoint};
use burn::module::Module as _;
use burn::optim::AdamConfig;
use rl::learner::Learner;
use rl::replay::Transition;
use std::io::Write as _;
use std::path::PathBuf;
use types::rng::Rng;

/// Relative (and absolute) tolerance of a forward pass on another backend.
const FORWARD: f32 = 1e-4;
/// Relative (and absolute) tolerance after training steps on another backend.
const TRAINED: f32 = 2e-3;

/// Every compiled backend other than the CPU, opened; a GPU that does not open
/// fails here, naming why. Each is announced on stderr (outside the test
/// harness's capture) with its adapter, so CI's log says what it ran on.
fn other_backends(test: &str) -> Vec<Resolved> {
    let others: Vec<Resolved> = compiled_backends()
        .into_iter()
        .filter(|b| *b != Backend::Cpu)
        .map(|b| resolve(b).unwrap_or_else(|e| panic!("backend {b:?} did not open: {e}")))
        .collect();
    assert!(
        !others.is_empty(),
        "only the CPU backend is compiled in: build with the `gpu` feature"
    );
    for r in &others {
        let _ = writeln!(
            std::io::stderr(),
            "backend suite, {test}: {:?} on {}",
            r.backend,
            r.adapter
        );
    }
    others
}

fn cpu() -> Resolved {
    resolve(Backend::Cpu).expect("the CPU backend always opens")
}

/// `a` (CPU) and `b` (another backend) agree within `tol`, relative and absolute.
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let mut worst = (0.0f32, 0usize);
    let mut over = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.is_finite() && y.is_finite(), "{what}[{i}]: {x} vs {y}");
        let e = (x - y).abs() / (1.0 + x.abs());
        if e > worst.0 {
            worst = (e, i);
        }
        if e > tol {
            over.push(i);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "  {what}: largest relative difference {:.1e} (tolerance {tol:.0e})",
        worst.0
    );
    assert!(
        worst.0 <= tol,
        "{what}: element {} is {} on the CPU and {} on the other backend (relative error {:.2e} > {tol:.0e}); {} of {} elements over, the first at {:?}",
        worst.1,
        a[worst.1],
        b[worst.1],
        worst.0,
        over.len(),
        a.len(),
        &over[..over.len().min(12)]
    );
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("backend-suite-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp folder");
    d
}

fn images(shape: &MonoShape, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            (0..shape.width * shape.height)
                .map(|_| rng.uniform() as f32 - 0.5)
                .collect()
        })
        .collect()
}

fn mono_outputs(net: &MonoNet, shape: &MonoShape, imgs: &[Vec<f32>], r: &Resolved) -> Vec<f32> {
    imgs.iter()
        .flat_map(|im| {
            let e = infer(net, im, shape, &r.device).expect("inference");
            e.scan.into_iter().chain(e.map)
        })
        .collect()
}

#[test]
fn backend_suite_mono_network_and_learner() {
    let cpu = cpu();
    let unet = MonoShape {
        width: 160,
        height: 120,
        arch: MonoArch::Unet,
        ..MonoShape::default()
    };
    for other in other_backends("mono") {
        for shape in [MonoShape::default(), unet] {
            mono_suite(&shape, &cpu, &other);
        }
    }
}

/// The mono network of `shape` on the CPU and on `other`: forward, three
/// learner steps, checkpoints both ways.
fn mono_suite(shape: &MonoShape, cpu: &Resolved, other: &Resolved) {
    let arch = format!("{:?}", shape.arch);
    let shape = *shape;
    let imgs = images(&shape, 4, 11);
    let cells = shape.plan().unwrap().map;
    let mut rng = Rng::new(12);
    let samples: Vec<Sample> = imgs
        .iter()
        .map(|im| Sample {
            image: im.clone(),
            scan: (0..shape.columns)
                .map(|_| 0.5 + 5.0 * rng.uniform() as f32)
                .collect(),
            valid: (0..shape.columns).map(|c| c % 5 != 0).collect(),
            map: (0..cells.0 * cells.1)
                .map(|_| 1.0 + 4.0 * rng.uniform() as f32)
                .collect(),
            map_valid: vec![true; cells.0 * cells.1],
            weight: 1.0,
        })
        .collect();
    let batch: Vec<&Sample> = samples.iter().collect();
    let config = LearnerConfig::default();
    // Forward: the same seed, the same network, the same depths.
    let on_cpu = MonoNet::seeded(&shape, &cpu.device, 5).unwrap();
    let on_other = MonoNet::seeded(&shape, &other.device, 5).unwrap();
    let reference = mono_outputs(&on_cpu, &shape, &imgs, cpu);
    assert_close(
        &format!("mono {arch} forward"),
        &reference,
        &mono_outputs(&on_other, &shape, &imgs, other),
        FORWARD,
    );

    // Three learner steps (masked loss, backward, Adam) on each backend.
    let mut losses = [Vec::new(), Vec::new()];
    let mut trained = Vec::new();
    for (k, r) in [cpu, other].into_iter().enumerate() {
        let ad = r.device.clone().autodiff();
        let mut net = MonoNet::seeded(&shape, &ad, 5).unwrap();
        let mut optim = AdamConfig::new().init();
        for _ in 0..3 {
            let (n, loss) = train_step(net, &mut optim, &batch, &shape, &config, &ad).unwrap();
            net = n;
            losses[k].push(loss);
        }
        trained.push(net.valid());
    }
    assert_close(
        &format!("mono {arch} training losses"),
        &losses[0],
        &losses[1],
        TRAINED,
    );
    let after_cpu = mono_outputs(&trained[0], &shape, &imgs, cpu);
    let after_other = mono_outputs(&trained[1], &shape, &imgs, other);
    assert_ne!(
        after_cpu, reference,
        "{arch}: the training steps changed nothing"
    );
    assert_close(
        &format!("mono {arch} forward after training"),
        &after_cpu,
        &after_other,
        TRAINED,
    );

    // Checkpoints cross backends both ways.
    let dir = scratch(&format!("mono-{arch}"));
    save_checkpoint(&trained[1], &dir.join("other.bpk")).unwrap();
    let loaded = load_checkpoint(&dir.join("other.bpk"), &shape, &cpu.device).unwrap();
    assert_close(
        &format!("mono {arch} checkpoint from the other backend, on the CPU"),
        &after_other,
        &mono_outputs(&loaded, &shape, &imgs, cpu),
        FORWARD,
    );
    save_checkpoint(&trained[0], &dir.join("cpu.bpk")).unwrap();
    let loaded = load_checkpoint(&dir.join("cpu.bpk"), &shape, &other.device).unwrap();
    assert_close(
        &format!("mono {arch} checkpoint from the CPU, on the other backend"),
        &after_cpu,
        &mono_outputs(&loaded, &shape, &imgs, other),
        FORWARD,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Transitions of a 6-input task with 3 discrete actions or 2 continuous ones.
fn transitions(n: usize, continuous: bool) -> Vec<Transition> {
    let mut rng = Rng::new(21);
    let mut obs = move || {
        (0..6)
            .map(|_| rng.uniform() as f32 - 0.5)
            .collect::<Vec<f32>>()
    };
    (0..n)
        .map(|i| Transition {
            obs: obs(),
            action: if continuous {
                vec![((i % 7) as f32 - 3.0) / 4.0, ((i % 5) as f32 - 2.0) / 3.0]
            } else {
                vec![(i % 3) as f32]
            },
            reward: ((i % 4) as f32 - 1.5) / 2.0,
            next_obs: obs(),
            terminated: i % 16 == 15,
            done: i % 16 == 15,
        })
        .collect()
}

/// Values of a batch of observations, then `trans` observed (training as the
/// learner's schedule says), then the values and the recent loss again.
fn run_learner(l: &mut dyn Learner, probe: &[Vec<f32>], trans: &[Transition]) -> [Vec<f32>; 3] {
    let before = l.values(probe);
    for t in trans {
        l.observe(t.clone()).unwrap();
    }
    assert!(l.updates() > 0, "{}: no gradient step was taken", l.kind());
    let after = l.values(probe);
    let loss = vec![l.recent_loss().expect("a loss after training")];
    [before, after, loss]
}

#[test]
fn backend_suite_dqn_sac_ppo() {
    use rl::dqn::{Dqn, DqnConfig};
    use rl::ppo::{Ppo, PpoConfig};
    use rl::sac::{Sac, SacConfig};
    let cpu = cpu();
    let probe: Vec<Vec<f32>> = transitions(8, false).into_iter().map(|t| t.obs).collect();
    let dqn = DqnConfig {
        hidden: vec![32, 32],
        batch: 16,
        buffer: 256,
        learning_starts: 32,
        train_freq: 32,
        gradient_steps: 2,
        learning_rate: 1e-3,
        ..DqnConfig::default()
    };
    let sac = SacConfig {
        hidden: vec![32, 32],
        batch: 16,
        buffer: 256,
        learning_starts: 32,
        train_freq: 32,
        gradient_steps: 2,
        learning_rate: 1e-3,
        ..SacConfig::default()
    };
    let ppo = PpoConfig {
        hidden: vec![32, 32],
        rollout: 64,
        epochs: 2,
        minibatch: 32,
        ..PpoConfig::default()
    };
    type Make = Box<dyn Fn(&Resolved) -> Box<dyn Learner>>;
    let makers: [(&str, bool, Make); 3] = [
        (
            "dqn",
            false,
            Box::new(move |r| Box::new(Dqn::new(dqn.clone(), 6, 3, &r.device, 3).unwrap())),
        ),
        (
            "sac",
            true,
            Box::new(move |r| Box::new(Sac::new(sac.clone(), 6, 2, &r.device, 3).unwrap())),
        ),
        (
            "ppo",
            false,
            Box::new(move |r| Box::new(Ppo::new(ppo.clone(), 6, 3, &r.device, 3).unwrap())),
        ),
    ];
    for other in other_backends("dqn/sac/ppo") {
        for (name, continuous, make) in &makers {
            let trans = transitions(64, *continuous);
            let mut on_cpu = make(&cpu);
            let mut on_other = make(&other);
            let a = run_learner(on_cpu.as_mut(), &probe, &trans);
            let b = run_learner(on_other.as_mut(), &probe, &trans);
            assert_close(&format!("{name} values"), &a[0], &b[0], FORWARD);
            assert_ne!(a[0], a[1], "{name}: training changed no value");
            assert_close(
                &format!("{name} values after training"),
                &a[1],
                &b[1],
                TRAINED,
            );
            assert_close(&format!("{name} loss"), &a[2], &b[2], TRAINED);
            // The other backend's checkpoint, loaded on the CPU, gives its values.
            let dir = scratch(name);
            on_other.save(&dir).unwrap();
            let mut loaded = make(&cpu);
            loaded.load(&dir).unwrap();
            assert_close(
                &format!("{name} checkpoint from the other backend, on the CPU"),
                &b[1],
                &loaded.values(&probe),
                FORWARD,
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn backend_suite_selfi_models_actor_and_critics() {
    use rl::selfi::model::{Actor, Models, objective_values_and_features};
    use rl::selfi::online::{Arm, OnlineLearner, Transition as Step, load_actor};
    use rl::selfi::{OBS_DIM, OfflineConfig, SelfiConfig};
    let cpu = cpu();
    let mut cfg = SelfiConfig::default();
    cfg.online.batch = 16;
    cfg.online.learning_starts = 16;
    let h = cfg.plan.horizon;
    let mut rng = Rng::new(31);
    let mut draw = |n: usize, lo: f64, hi: f64| -> Vec<f32> {
        (0..n).map(|_| rng.range(lo, hi) as f32).collect()
    };
    let obs = draw(8 * OBS_DIM, 0.0, 1.0);
    let plans = draw(8 * 2 * h, -1.0, 1.0);
    let probe = draw(16 * OBS_DIM, 0.0, 1.0);
    let steps: Vec<Step> = (0..24)
        .map(|i| Step {
            obs: draw(OBS_DIM, 0.0, 1.0),
            plan: draw(2 * h, -1.0, 1.0),
            reward: (i % 3) as f32 * 0.1 - 0.1,
            next_obs: draw(OBS_DIM, 0.0, 1.0),
            done: i % 12 == 11,
            intervention: false,
            refused: false,
        })
        .collect();
    let one = &obs[..OBS_DIM];
    let run = |r: &Resolved| -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Actor) {
        let models = Models::new(&OfflineConfig::default(), h, &r.device, 1);
        let actor = Actor::new(&[32, 32], h, &r.device, 2);
        let (j, features) = objective_values_and_features(
            &models,
            &obs,
            &plans,
            &cfg.plan,
            &cfg.objective,
            &r.device,
        );
        let mut l =
            OnlineLearner::new(Arm::Selfi, &cfg, &models, &actor, &probe, 0.0, &r.device, 4)
                .unwrap();
        let q_before = l.q_parts(one, &plans[..2 * h]);
        let mut first = vec![q_before.0, q_before.1];
        first.extend(l.act(one, false));
        for s in &steps {
            l.observe(s.clone(), 0.0).unwrap();
        }
        let q_after = l.q_parts(one, &plans[..2 * h]);
        let mut after = vec![q_after.0, q_after.1];
        after.extend(l.act(one, false));
        (j, features, first, after, l.actor())
    };
    for other in other_backends("selfi") {
        let a = run(&cpu);
        let b = run(&other);
        assert_close("selfi objective J", &a.0, &b.0, FORWARD);
        assert_close("selfi objective features", &a.1, &b.1, FORWARD);
        assert_close("selfi J, Q and plan", &a.2, &b.2, FORWARD);
        assert_ne!(a.2, a.3, "selfi: the online update changed nothing");
        assert_close("selfi J, Q and plan after updates", &a.3, &b.3, TRAINED);
        // The other backend's actor, saved and loaded on the CPU.
        let dir = scratch("selfi");
        b.4.save(&dir.join("actor.bpk")).unwrap();
        let loaded = load_actor(&dir.join("actor.bpk"), &[32, 32], h, &cpu.device).unwrap();
        assert_close(
            "selfi actor checkpoint from the other backend, on the CPU",
            &b.4.plan(one, &other.device),
            &loaded.plan(one, &cpu.device),
            FORWARD,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Twin renders at `w` x `h` (two scenes: open and cluttered).
fn twin_pairs(w: usize, h: usize) -> Vec<(stereo::GrayImage, stereo::GrayImage)> {
    use sim::{CameraPose, Context, Renderer, StereoFrame, StereoRig, World};
    let r = Renderer::new(StereoRig::with_size(w, h), 1);
    let clutter = Context {
        obstacle_count: 30,
        obstacle_size: 0.5,
        ..Context::default()
    };
    [Context::default(), clutter]
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            let mut f = StereoFrame::default();
            let pose = CameraPose::looking_forward([1.0 + 0.5 * i as f64, -0.3, 1.3], 0.15);
            r.render(&World::generate(ctx, i as u64), &pose, i as u64, &mut f);
            (
                stereo::GrayImage::new(w, h, f.left, "left").unwrap(),
                stereo::GrayImage::new(w, h, f.right, "right").unwrap(),
            )
        })
        .collect()
}

/// A random texture and the same shifted `shift` pixels left (`extra` wider
/// than the image), as a rectified pair whose disparity is `shift`.
fn shifted_texture(
    w: usize,
    h: usize,
    shift: usize,
    extra: usize,
) -> (stereo::GrayImage, stereo::GrayImage) {
    let mut rng = Rng::new(9);
    let bw = w + extra;
    let base: Vec<u8> = (0..bw * h).map(|_| rng.below(256) as u8).collect();
    let img = |s: usize, which| {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .map(|(y, x)| base[y * bw + x + s])
            .collect();
        stereo::GrayImage::new(w, h, data, which).unwrap()
    };
    (img(0, "left"), img(shift, "right"))
}

/// The GPU's semi-global matcher against the CPU's (`stereo::Sgm`) on twin
/// renders with both path sets, byte and word path costs (a P2 too large for
/// bytes), census windows 3, 5 and 7 (32- and 64-bit strings), a smallest
/// disparity above zero, sizes that are no multiple of the workgroup tiles,
/// and 16 to 128 disparities: disparity, validity and confidence must be the
/// same bits at every pixel (the GPU runs the CPU's integer arithmetic, and the
/// CPU finishes the float steps of both).
#[test]
fn backend_suite_gpu_stereo_matcher_equals_the_cpu_matcher() {
    use stereo::{Paths, SgmParams};
    let base = SgmParams::default();
    let cases: Vec<(&str, usize, usize, SgmParams)> = vec![
        (
            "8 paths, 32 disparities",
            160,
            120,
            SgmParams {
                max_disp: 32,
                ..base
            },
        ),
        (
            "4 paths, 32 disparities",
            160,
            120,
            SgmParams {
                max_disp: 32,
                paths: Paths::Four,
                ..base
            },
        ),
        (
            "8 paths, P2 300 (word costs)",
            160,
            120,
            SgmParams {
                max_disp: 32,
                p2: 300,
                ..base
            },
        ),
        (
            "census 7x7 (64-bit strings)",
            150,
            101,
            SgmParams {
                max_disp: 48,
                census_window: 7,
                ..base
            },
        ),
        (
            "census 3x3, no edge-adapted P2",
            150,
            101,
            SgmParams {
                max_disp: 16,
                census_window: 3,
                p2_edge: 0,
                ..base
            },
        ),
        (
            "disparities 8..40",
            160,
            120,
            SgmParams {
                min_disp: 8,
                max_disp: 32,
                ..base
            },
        ),
        (
            "8 paths, 64 disparities",
            320,
            240,
            SgmParams {
                max_disp: 64,
                ..base
            },
        ),
        (
            "4 paths, 128 disparities",
            320,
            240,
            SgmParams {
                max_disp: 128,
                paths: Paths::Four,
                ..base
            },
        ),
        // The widest range: 128 invocations per workgroup, the last sentinel.
        (
            "8 paths, 256 disparities",
            420,
            24,
            SgmParams {
                max_disp: 256,
                ..base
            },
        ),
    ];
    let mut announced = false;
    for (what, w, h, prm) in cases {
        let mut gpu = stereo::gpu::GpuSgm::new(prm)
            .unwrap_or_else(|e| panic!("the GPU matcher did not open: {e} ({e:?})"));
        if !announced {
            let _ = writeln!(
                std::io::stderr(),
                "backend suite, stereo: GPU matcher on {}",
                gpu.adapter()
            );
            announced = true;
        }
        let mut cpu = stereo::Sgm::new(prm).unwrap();
        let pairs = if prm.max_disp == 256 {
            vec![shifted_texture(w, h, 200, 256)]
        } else {
            twin_pairs(w, h)
        };
        for (k, (l, r)) in pairs.iter().enumerate() {
            let a = cpu.match_pair(l, r).unwrap();
            let b = gpu
                .match_pair(l, r)
                .unwrap_or_else(|e| panic!("{what}: the GPU matcher failed: {e} ({e:?})"));
            let differ = (0..w * h)
                .filter(|&i| {
                    a.valid[i] != b.valid[i]
                        || a.disp[i].to_bits() != b.disp[i].to_bits()
                        || a.confidence[i].to_bits() != b.confidence[i].to_bits()
                })
                .count();
            let valid = a.valid.iter().filter(|&&v| v).count();
            let _ = writeln!(
                std::io::stderr(),
                "  {what}, {w}x{h}, pair {k}: {valid} valid pixels, {differ} differ"
            );
            // Enough answers to compare (a range from 8 leaves the far
            // scene unanswered: a fifth of the pixels stay).
            assert!(valid > w * h / 10, "{what}: only {valid} valid pixels");
            assert_eq!(differ, 0, "{what}, pair {k}: {differ} pixels differ");
        }
    }
}

/// The loop's stereo stage with `stereo_backend = "gpu"` gives the CPU
/// stage's depth scan and disparities on twin renders, and says where it runs.
#[test]
fn backend_suite_stereo_stage_on_the_gpu_gives_the_cpu_stages_depth() {
    use agent::pipeline::{LoopConfig, StereoStage, scan_shape};
    let cfg = LoopConfig::default();
    let rig = sim::StereoRig::with_size(160, 120);
    let geometry = || agent::fly::twin_geometry(&rig).unwrap();
    let shape = scan_shape(&cfg.mono);
    let mut cpu = StereoStage::on(Backend::Cpu, geometry(), cfg.stereo, shape).unwrap();
    let mut gpu = StereoStage::on(Backend::Gpu, geometry(), cfg.stereo, shape)
        .unwrap_or_else(|e| panic!("the GPU stereo stage did not open: {e:#}"));
    let _ = writeln!(
        std::io::stderr(),
        "backend suite, stereo stage: {} against {}",
        gpu.matcher(),
        cpu.matcher()
    );
    assert!(gpu.matcher().starts_with("GPU ("), "{}", gpu.matcher());
    assert!(cpu.matcher().starts_with("CPU ("), "{}", cpu.matcher());
    for (l, r) in twin_pairs(160, 120) {
        let a = cpu.match_pair(&l.data, &r.data, 160, 120).unwrap();
        let b = gpu.match_pair(&l.data, &r.data, 160, 120).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.scan), bits(&b.scan), "depth scans differ");
        assert_eq!(bits(&a.depth), bits(&b.depth), "depth maps differ");
        assert!(a.scan.iter().any(|z| z.is_finite()), "no column known");
        // Still on the GPU: a GPU failure would have moved it to the CPU.
        assert!(gpu.matcher().starts_with("GPU ("), "{}", gpu.matcher());
    }
    // `auto` takes a hardware GPU and leaves a software one (lavapipe) for
    // the CPU's kernels.
    let software = stereo::gpu::GpuSgm::new(cfg.stereo).unwrap().is_software();
    let auto = StereoStage::on(Backend::Auto, geometry(), cfg.stereo, shape).unwrap();
    let want = if software { "CPU (" } else { "GPU (" };
    assert!(
        auto.matcher().starts_with(want),
        "auto on a {} adapter: {}",
        if software { "software" } else { "hardware" },
        auto.matcher()
    );
    // A pair of another size than the rig's is refused by name, on the GPU too.
    let e = gpu
        .match_pair(&[0; 64 * 48], &[0; 64 * 48], 64, 48)
        .unwrap_err();
    assert!(format!("{e:#}").contains("160x120"), "{e:#}");
}
