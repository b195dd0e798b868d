//! The flight loop's stages on the twin: the stereo stage takes its depth
//! scale from the rig file it is given, and a blank wall — which stereo
//! matching cannot see — is not free space, whether the robot flies on stereo
//! or on mono with stereo as training wheels.

use agent::fly::{FlyConfig, fly_arm, scan_shape, twin_action, twin_geometry, twin_state};
use agent::persist::{Mode, PersistConfig, Strategy, Switch};
use agent::pipeline::{AvoidConfig, FrameCues, Pilot, RigGeometry, StereoStage};
use agent::telemetry::Telemetry;
use e2e_tests::temp_dir;
use sim::camera::{Intrinsics, StereoRig};
use sim::env::{Env, EnvConfig, Task};
use sim::{Context, StereoFrame};
use std::sync::atomic::AtomicBool;

/// Median of stage depth / true depth over the pixels both know.
fn median_ratio(stage: &mut StereoStage, pair: &StereoFrame) -> f64 {
    let d = stage
        .match_pair(&pair.left, &pair.right, pair.width, pair.height)
        .unwrap();
    let mut r: Vec<f64> = d
        .depth
        .iter()
        .zip(&pair.depth)
        .filter(|(z, t)| z.is_finite() && t.is_finite() && **t > 0.0)
        .map(|(z, t)| f64::from(*z) / f64::from(*t))
        .collect();
    assert!(r.len() > pair.width * pair.height / 4, "too few depths");
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

#[test]
fn rig_file_sets_the_stereo_depth_scale() {
    // A rig unlike the twin's default (90°, 10 cm): 70° field of view, 16 cm.
    let rig = StereoRig {
        intrinsics: Intrinsics::from_hfov(160, 120, 70.0),
        baseline: 0.16,
        ..StereoRig::default()
    };
    let mut env = Env::new(EnvConfig {
        render: true,
        rig,
        ..EnvConfig::default()
    })
    .unwrap();
    let obs = env.reset(&Context::default(), 3).unwrap();
    let pair = obs.stereo.unwrap();

    let dir = temp_dir("rig-scale");
    let file = dir.join("rig.yaml");
    let k = rig.intrinsics;
    calib::Rig::ideal(k.width, k.height, k.fx, k.cx, k.cy, rig.baseline)
        .save_opencv(&file)
        .unwrap();
    let params = FlyConfig::default().stereo;
    let shape = scan_shape(&FlyConfig::default().mono);
    let mut from_file = StereoStage::new(RigGeometry::load(&file).unwrap(), params, shape).unwrap();
    let with_file = median_ratio(&mut from_file, &pair);
    eprintln!("rig file: median depth / truth = {with_file:.4}");
    assert!(
        (with_file - 1.0).abs() <= 0.03,
        "with the rig file the depth is off by {:.1} %",
        100.0 * (with_file - 1.0)
    );
    let mut default_rig =
        StereoStage::new(twin_geometry(&StereoRig::default()).unwrap(), params, shape).unwrap();
    let with_default = median_ratio(&mut default_rig, &pair);
    eprintln!("default rig: median depth / truth = {with_default:.4}");
    assert!(
        (with_default - 1.0).abs() > 0.03,
        "the default rig should not give this pair's depth: {with_default:.4}"
    );
}

/// An open room with a blank wall across it 7 m ahead of the start. The
/// camera is noise-free: with the twin's default sensor noise, the matcher
/// finds spurious depths in the noise on the wall often enough to turn away
/// from it by luck, and the control flights below would not show what reading
/// "no answer" as free space does.
fn walled_room() -> (Context, f64) {
    let ctx = Context {
        name: "blank_wall".into(),
        obstacle_count: 0,
        pixel_noise: 0.0,
        ..Context::default()
    };
    (ctx, 8.0)
}

/// `fly_arm` on stereo, with the unknown-ahead rule at `unknown_ahead`
/// (1.0 switches it off: unknown then reads as nothing ahead).
fn stereo_flight(unknown_ahead: f64) -> agent::fly::FlySummary {
    let (context, wall) = walled_room();
    let cfg = FlyConfig {
        seconds: 20.0,
        speed: 0.0,
        strategy: Strategy::StereoOnly,
        context,
        blank_wall: Some(wall),
        avoid: AvoidConfig {
            unknown_ahead,
            ..AvoidConfig::default()
        },
        ..FlyConfig::default()
    };
    fly_arm(
        &cfg,
        Strategy::StereoOnly,
        &Telemetry::off(),
        None,
        &AtomicBool::new(false),
    )
    .unwrap()
    .summary
}

/// What a flight on mono towards the wall did.
#[derive(Debug, Default)]
struct MonoFlight {
    collisions: u32,
    mono_frames: u32,
    blind_interventions: u32,
    closest: f64,
}

/// The loop's decision stages flying on a mono cue that calls everything
/// clear (a network that has learned nothing of blank walls: the case the
/// training wheels exist for), with the stereo stage watching.
fn mono_flight(unknown_ahead: f64) -> MonoFlight {
    let (context, wall) = walled_room();
    let fly = FlyConfig::default();
    let avoid = AvoidConfig {
        unknown_ahead,
        ..fly.avoid
    };
    let env_cfg = EnvConfig {
        render: true,
        task: Task::ForwardFlight,
        max_steps: u32::MAX,
        blank_wall: Some(wall),
        ..EnvConfig::default()
    };
    let hz = env_cfg.control_hz;
    let mut stage = StereoStage::new(
        twin_geometry(&env_cfg.rig).unwrap(),
        fly.stereo,
        scan_shape(&fly.mono),
    )
    .unwrap();
    // The persistent rule, allowed to switch to mono at once.
    let persist = PersistConfig {
        min_train_steps: 0,
        hold: 0.0,
        error_window: 0.1,
        error_threshold: 10.0,
        exit_factor: 100.0,
        // The clear mono scan is flown as it is: this is about the wheels.
        mono_margin: 0.0,
        ..fly.persist
    };
    let mut pilot = Pilot::new(persist, Strategy::Persistent, hz, avoid);
    let mut env = Env::new(env_cfg).unwrap();
    let mut obs = env.reset(&context, 1).unwrap();
    let clear = vec![fly.mono.max_depth; fly.mono.columns];
    let mut f = MonoFlight {
        closest: f64::INFINITY,
        ..MonoFlight::default()
    };
    for frame in 0..(20.0 * hz) as u64 {
        let pair = obs.stereo.as_ref().unwrap();
        let d = stage
            .match_pair(&pair.left, &pair.right, pair.width, pair.height)
            .unwrap();
        let state = twin_state(&obs);
        let (out, cmd) = pilot.step(
            FrameCues {
                t: frame as f64 / hz,
                stereo: &d.scan,
                mono: Some(&clear),
                train_steps: 0,
            },
            (frame as f64 / hz * 1e9) as u64,
            Some(&state),
        );
        let cmd = cmd.expect("the avoider always answers");
        f.mono_frames += u32::from(out.mode == Mode::Mono);
        if matches!(out.event, Some(Switch::Intervention { .. })) && out.stereo_blind {
            f.blind_interventions += 1;
        }
        let r = env.step(&twin_action(cmd)).unwrap();
        f.closest = f.closest.min(wall - r.obs.pose.position[0]);
        if r.info.collision {
            f.collisions += 1;
            break;
        }
        obs = r.obs;
    }
    f
}

#[test]
fn blank_wall_is_not_free_space() {
    // On stereo: the loop itself (`fly_arm`), stereo only.
    let s = stereo_flight(AvoidConfig::default().unknown_ahead);
    eprintln!("stereo: {s:?}");
    assert_eq!(s.collisions, 0, "flew into the blank wall on stereo");
    assert!(s.distance > 3.0, "it should fly towards the wall first");
    // The control: read unknown as nothing ahead and the same flight hits it.
    let blind = stereo_flight(1.0);
    eprintln!("stereo, unknown read as free: {blind:?}");
    assert!(
        blind.collisions > 0,
        "the wall must be invisible to stereo for this test to mean anything"
    );

    // On mono, with stereo as training wheels.
    let m = mono_flight(AvoidConfig::default().unknown_ahead);
    eprintln!("mono: {m:?}");
    assert!(m.mono_frames > 30, "it never flew on mono: {m:?}");
    assert_eq!(m.collisions, 0, "flew into the blank wall on mono: {m:?}");
    assert!(
        m.blind_interventions > 0,
        "the training wheels never stepped in: {m:?}"
    );
    let off = mono_flight(1.0);
    eprintln!("mono, unknown read as free: {off:?}");
    assert!(off.collisions > 0, "{off:?}");
}
