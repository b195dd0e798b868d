//! Live cameras through GStreamer, with no camera attached: a side-by-side
//! video of twin renders through a distorted lens played by the `file`
//! preset, two `appsrc` devices paired by capture time, and a network camera
//! (MJPEG over TCP, sent by this test) that is stopped mid-flight in the graph.

use agent::pipeline::{CameraStage, RigGeometry, StereoStage, scan_shape};
use bus::msg::{CameraHealth, Event, Setpoint};
use bus::{Inbox, topics};
use camera::gst::prelude::*;
use camera::video::{Encoding, write_side_by_side};
use camera::{CameraError, CameraSource, Preset, SourceConfig, gst, gst_app};
use e2e_tests::{PortSlice, temp_dir, test_port, workspace_bin};
use sim::camera::{Distortion, Intrinsics, StereoRig};
use sim::env::{Env, EnvConfig};
use sim::{Context, StereoFrame};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn port(k: u16) -> u16 {
    test_port(PortSlice::Camera, 10, k)
}

/// Twin renders of `seeds`' rooms through `rig`.
fn renders(rig: StereoRig, seeds: std::ops::Range<u64>) -> Vec<StereoFrame> {
    let mut env = Env::new(EnvConfig {
        render: true,
        rig,
        ..EnvConfig::default()
    })
    .unwrap();
    seeds
        .map(|s| env.reset(&Context::default(), s).unwrap().stereo.unwrap())
        .collect()
}

/// Median of depth / truth over the pixels both know.
fn median_ratio(depth: &[f32], truth: &[f32]) -> f64 {
    let mut r: Vec<f64> = depth
        .iter()
        .zip(truth)
        .filter(|(z, t)| z.is_finite() && t.is_finite() && **t > 0.0)
        .map(|(z, t)| f64::from(*z) / f64::from(*t))
        .collect();
    assert!(r.len() > truth.len() / 4, "too few depths: {}", r.len());
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn gstreamer_side_by_side_source_gives_rectified_pairs() {
    // A lens with barrel distortion, as on a side-by-side UVC module.
    let lens = StereoRig {
        distortion: Distortion {
            k1: -0.18,
            k2: 0.03,
            p1: 0.0,
            p2: 0.0,
            k3: 0.0,
        },
        ..StereoRig::default()
    };
    let truth_rig = sim::target::rig_truth(&lens);
    let rect = calib::rectify::stereo_rectify(&truth_rig, 0.0).unwrap();
    // The rectified camera, as a distortion-free twin rig: its renders are the
    // twin's own rectified pairs, and its depth is the truth.
    let (w, h) = (lens.intrinsics.width, lens.intrinsics.height);
    let rectified = StereoRig {
        intrinsics: Intrinsics {
            width: w,
            height: h,
            fx: rect.p1[0][0],
            fy: rect.p1[1][1],
            cx: rect.p1[0][2],
            cy: rect.p1[1][2],
        },
        distortion: Distortion::default(),
        baseline: lens.baseline,
    };
    let seeds = 1..7;
    let raw = renders(lens, seeds.clone());
    let ideal = renders(rectified, seeds);

    // The side-by-side video a UVC module would send (MJPEG), and the rig file
    // `calib stereo` would write for it.
    let dir = temp_dir("camera-sbs");
    let video = dir.join("sbs.avi");
    let n = write_side_by_side(
        &video,
        w,
        h,
        10,
        Encoding::Mjpeg { quality: 95 },
        raw.iter().map(|f| (f.left.clone(), f.right.clone())),
    )
    .unwrap();
    assert_eq!(n, 6);
    let rig_file = dir.join("rig.yaml");
    truth_rig.save_opencv(&rig_file).unwrap();
    let geometry = RigGeometry::load(&rig_file).unwrap();
    assert!(geometry.rectifies(), "a distorted rig needs maps");

    let source = SourceConfig {
        preset: Preset::File,
        location: video.display().to_string(),
        ..SourceConfig::default()
    };
    let mut stage = CameraStage::start(&source, geometry.clone()).unwrap();
    let mut pairs = Vec::new();
    loop {
        match stage.next(Duration::from_secs(30)) {
            Ok(Some(p)) => pairs.push(p),
            Ok(None) => panic!("no pair within 30 s"),
            Err(agent::pipeline::CameraStageError::Camera(CameraError::EndOfStream)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(pairs.len(), 6, "every frame of the file arrives");

    let cfg = agent::pipeline::LoopConfig::default();
    let mut stereo = StereoStage::new(geometry, cfg.stereo, scan_shape(&cfg.mono)).unwrap();
    let mut worst_gap = 0.0f64;
    for (k, (p, truth)) in pairs.iter().zip(&ideal).enumerate() {
        // Rectified: the source's left image is the rectified camera's view
        // (up to JPEG), much closer to it than the raw distorted image is.
        let (got, before) = (
            mean_abs_diff(&p.pair.left, &truth.left),
            mean_abs_diff(&raw[k].left, &truth.left),
        );
        eprintln!("pair {k}: |rectified - ideal| {got:.2}, |raw - ideal| {before:.2} grey levels");
        assert!(
            got < 0.6 * before,
            "pair {k} is not rectified: {got:.2} vs raw {before:.2}"
        );

        let from_source = stereo
            .match_pair(&p.pair.left, &p.pair.right, w, h)
            .unwrap();
        let from_twin = stereo.match_pair(&truth.left, &truth.right, w, h).unwrap();
        let (rs, rt) = (
            median_ratio(&from_source.depth, &truth.depth),
            median_ratio(&from_twin.depth, &truth.depth),
        );
        eprintln!("pair {k}: median depth / truth: source {rs:.4}, twin's rectified pair {rt:.4}");
        assert!(
            (rs - 1.0).abs() <= 0.05,
            "pair {k}: the source's depth is off by {:.1} %",
            100.0 * (rs - 1.0)
        );
        worst_gap = worst_gap.max((rs - rt).abs());
    }
    assert!(
        worst_gap <= 0.05,
        "the source's median depth differs from the twin's rectified pairs' by {:.1} %",
        100.0 * worst_gap
    );
}

/// Pushes one gray frame of value `v` with presentation time `pts_ms`.
fn push(src: &gst_app::AppSrc, w: usize, h: usize, v: u8, pts_ms: u64) {
    let mut buf = gst::Buffer::from_mut_slice(vec![v; w * h]);
    buf.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    src.push_buffer(buf).unwrap();
}

#[test]
fn two_device_pairing_drops_skewed_frames() {
    let (w, h) = (32, 24);
    let branch = |name: &str| {
        format!(
            "appsrc name=dev_{name} format=time caps=video/x-raw,format=GRAY8,width={w},height={h},framerate=10/1 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name={name} sync=false"
        )
    };
    let desc = format!("{} {}", branch("left"), branch("right"));
    // Pairs may be 5 ms apart at most.
    let mut src = CameraSource::start_description(&desc, false, 5.0).unwrap();
    assert_eq!(src.layout(), camera::Layout::TwoDevices);
    let appsrc = |n: &str| {
        src.pipeline()
            .by_name(n)
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap()
    };
    let (left, right) = (appsrc("dev_left"), appsrc("dev_right"));
    // Frame k of the left camera at k·100 ms; the right one 2 ms later, but
    // 20 ms later for every fourth frame (k = 3, 7, 11): those are not pairs.
    let skewed = |k: u64| k % 4 == 3;
    for k in 0..12u64 {
        push(&left, w, h, k as u8, k * 100);
        push(
            &right,
            w,
            h,
            100 + k as u8,
            k * 100 + if skewed(k) { 20 } else { 2 },
        );
    }
    left.end_of_stream().unwrap();
    right.end_of_stream().unwrap();
    let mut pairs = Vec::new();
    loop {
        match src.next_pair(Duration::from_secs(30)) {
            Ok(Some(p)) => pairs.push(p),
            Ok(None) => panic!("no pair within 30 s"),
            Err(CameraError::EndOfStream) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for p in &pairs {
        eprintln!(
            "pair {} {} stamp {} skew {}",
            p.left[0], p.right[0], p.stamp_ns, p.skew_ns
        );
    }
    let ks: Vec<u64> = pairs.iter().map(|p| u64::from(p.left[0])).collect();
    assert_eq!(
        ks,
        vec![0, 1, 2, 4, 5, 6, 8, 9, 10],
        "the pairs within 5 ms"
    );
    for p in &pairs {
        let k = u64::from(p.left[0]);
        assert_eq!(
            u64::from(p.right[0]),
            100 + k,
            "left and right of one instant"
        );
        assert_eq!(p.skew_ns, 2_000_000);
        // The capture stamp: the left frame's time, not when it arrived.
        assert_eq!(p.stamp_ns - pairs[0].stamp_ns, k * 100_000_000, "pair {k}");
    }
    let health = src.health();
    assert_eq!(health.pairs, 9);
    assert_eq!(health.dropped, 6, "three skewed frames of each camera");
    assert!((health.max_skew_ms - 2.0).abs() < 1e-9);
}

/// A network camera: side-by-side MJPEG over TCP, `frames` cycled at 10 Hz
/// until stopped.
struct Sender {
    run: Arc<AtomicBool>,
    /// While set, the sender keeps its connection open but sends nothing (a
    /// camera that hangs).
    paused: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    fn start(port: u16, frames: Arc<Vec<(Vec<u8>, Vec<u8>)>>, w: usize, h: usize) -> Sender {
        let desc = format!(
            "appsrc name=src is-live=true do-timestamp=true format=time caps=video/x-raw,format=GRAY8,width={},height={h},framerate=10/1 ! videoconvert ! jpegenc quality=95 ! multipartmux ! tcpserversink host=127.0.0.1 port={port} sync=false",
            2 * w
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let run = Arc::new(AtomicBool::new(true));
        let paused = Arc::new(AtomicBool::new(false));
        let (go, hold) = (run.clone(), paused.clone());
        let stride = (2 * w).div_ceil(4) * 4;
        let thread = std::thread::spawn(move || {
            let mut k = 0;
            while go.load(Ordering::Relaxed) {
                if hold.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let (l, r) = &frames[k % frames.len()];
                let mut data = vec![0u8; stride * h];
                for y in 0..h {
                    data[y * stride..y * stride + w].copy_from_slice(&l[y * w..(y + 1) * w]);
                    data[y * stride + w..y * stride + 2 * w]
                        .copy_from_slice(&r[y * w..(y + 1) * w]);
                }
                let _ = src.push_buffer(gst::Buffer::from_mut_slice(data));
                k += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            // Stopping the pipeline closes the camera's connections.
            let _ = pipeline.set_state(gst::State::Null);
        });
        Sender {
            run,
            paused,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.run.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to `limit` (liveness only) for a message that `pick` accepts.
fn wait_for<M: bus::wire::Message>(
    inbox: &mut Inbox<M>,
    limit: Duration,
    mut pick: impl FnMut(&bus::wire::Header, &M) -> bool,
) -> Option<(bus::wire::Header, M)> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some((h, m)) = inbox.recv_timeout(Duration::from_millis(50)).unwrap()
            && pick(&h, &m)
        {
            return Some((h, m));
        }
    }
    None
}

#[test]
fn camera_loss_commands_hover_and_recovers() {
    camera::gst::init().unwrap();
    let robot = format!("cam{}", std::process::id());
    let (cam_port, bus_port) = (port(0), port(1));
    let rig = StereoRig::default();
    let (w, h) = (rig.intrinsics.width, rig.intrinsics.height);
    let frames: Arc<Vec<_>> = Arc::new(
        renders(rig, 1..6)
            .into_iter()
            .map(|f| (f.left, f.right))
            .collect(),
    );
    let mut sender = Sender::start(cam_port, frames.clone(), w, h);

    let endpoint = format!("tcp/127.0.0.1:{bus_port}");
    let agent = workspace_bin("agent");
    let camera = Command::new(&agent)
        .args(["node", "camera", "--robot", &robot, "--listen", &endpoint])
        .args(["--preset", "tcp-mjpeg", "--camera-host", "127.0.0.1"])
        .args(["--camera-port", &cam_port.to_string(), "--fps", "10"])
        .args(["--width", &w.to_string(), "--height", &h.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let graph = Command::new(&agent)
        .args(["node", "stereo,policy,safety", "--robot", &robot])
        .args(["--connect", &endpoint, "--strategy", "stereo-only"])
        .args(["--require", "camera-stream"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _procs = e2e_tests::KillOnDrop(vec![camera, graph]);
    let session = bus::open(&bus::BusConfig::connect_to(endpoint.clone())).unwrap();
    let mut setpoints =
        Inbox::<Setpoint>::new(&session, &robot, topics::CMD_SETPOINT, 256).unwrap();
    let mut events = Inbox::<Event>::new(&session, &robot, topics::EVENTS, 256).unwrap();
    let mut health =
        Inbox::<CameraHealth>::new(&session, &robot, topics::CAMERA_HEALTH, 64).unwrap();

    // Flying: the policy answers the camera's pairs.
    let flying = |setpoints: &mut Inbox<Setpoint>, after: u64| {
        let mut n = 0;
        wait_for(setpoints, Duration::from_secs(90), |h, _| {
            n += usize::from(h.frame_id != "safety" && h.stamp_ns > after);
            n >= 5
        })
        .is_some()
    };
    assert!(flying(&mut setpoints, 0), "no setpoints from the policy");

    // 1. The camera hangs: its connection stays open, nothing comes. The stall
    // limit (250 ms at 10 fps) finds it.
    let hung_at = bus::now_ns();
    sender.paused.store(true, Ordering::Relaxed);
    let (hh, hover) = wait_for(&mut setpoints, Duration::from_secs(30), |h, _| {
        h.frame_id == "safety"
    })
    .expect("no hover after the camera hung");
    assert_eq!(hover, Setpoint::HOVER);
    let after_ms = (hh.stamp_ns as f64 - hung_at as f64) * 1e-6;
    eprintln!("hover {after_ms:.0} ms after the camera hung (stall limit 250 ms)");
    let stalled = wait_for(&mut events, Duration::from_secs(10), |_, e| {
        e.text.starts_with("camera: lost (no pair for")
    });
    assert!(stalled.is_some(), "the stall was not reported on events");
    let resumed_at = bus::now_ns();
    sender.paused.store(false, Ordering::Relaxed);
    assert!(
        flying(&mut setpoints, resumed_at),
        "no policy setpoints after the hung camera came back"
    );

    // 2. The camera goes away mid-flight (its stream ends).
    let lost_at = bus::now_ns();
    sender.stop();
    let (hh, hover) = wait_for(&mut setpoints, Duration::from_secs(30), |h, _| {
        h.frame_id == "safety" && h.stamp_ns > lost_at
    })
    .expect("no hover after the camera was lost");
    assert_eq!(hover, Setpoint::HOVER);
    let after_ms = (hh.stamp_ns as f64 - lost_at as f64) * 1e-6;
    eprintln!("hover {after_ms:.0} ms after the camera stopped");
    assert!(
        after_ms <= 500.0,
        "hover came {after_ms:.0} ms after the loss"
    );
    let lost = wait_for(&mut events, Duration::from_secs(10), |h, e| {
        h.stamp_ns > lost_at && e.text.starts_with("camera: lost")
    });
    assert!(lost.is_some(), "the loss was not reported on events");
    let (_, report) = wait_for(&mut health, Duration::from_secs(10), |_, m| {
        m.streaming == 0
    })
    .expect("no health report of the lost camera");
    assert!(report.pairs > 0);

    // The camera comes back: frames resume, the policy flies again, and the
    // safety node lets go.
    std::thread::sleep(Duration::from_millis(700));
    let back_at = bus::now_ns();
    let _sender = Sender::start(cam_port, frames, w, h);
    assert!(
        flying(&mut setpoints, back_at),
        "no policy setpoints after the camera came back"
    );
    // The camera node's recovery and the safety node's release come from two
    // publishers in either order: wait for both in one pass.
    let (mut back, mut released) = (false, None);
    wait_for(&mut events, Duration::from_secs(20), |h, e| {
        if h.stamp_ns > back_at {
            back |= e.text.starts_with("camera: frames are back");
            if e.text.contains("camera-stream is back; hover released") {
                released = Some(h.stamp_ns);
            }
        }
        back && released.is_some()
    });
    assert!(back, "the recovery was not reported on events");
    let released = released.expect("the safety node did not release the hover");
    // No hover after the release (a margin for one in flight).
    let mut late_hovers = 0;
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        if let Some((h, _)) = setpoints.recv_timeout(Duration::from_millis(50)).unwrap() {
            late_hovers +=
                usize::from(h.frame_id == "safety" && h.stamp_ns > released + 100_000_000);
        }
    }
    assert_eq!(late_hovers, 0, "hover went on after the camera came back");
    let (_, report) = wait_for(&mut health, Duration::from_secs(10), |_, m| {
        m.streaming == 1
    })
    .expect("no health report after the recovery");
    assert!(report.restarts >= 2, "{report:?}");
}

/// `calib capture` from a camera (here a side-by-side video of `calib synth`'s
/// board views through a distorted rig), then `calib stereo` on what it kept:
/// the rig comes out as the truth.
#[test]
fn calib_capture_keeps_views_that_add_coverage_and_calibrates() {
    let dir = temp_dir("calib-capture");
    let calib_bin = workspace_bin("calib");
    let synth = dir.join("synth");
    e2e_tests::succeed(
        Command::new(&calib_bin)
            .args(["synth", "--pairs", "20", "--out"])
            .arg(&synth),
    );
    let read = |name: String| calib::png_io::read_gray8(&synth.join(name)).unwrap();
    let views: Vec<(Vec<u8>, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                read(format!("left_{i:03}.png")).0,
                read(format!("right_{i:03}.png")).0,
            )
        })
        .collect();
    let video = dir.join("board.avi");
    write_side_by_side(&video, 640, 480, 10, Encoding::Yuyv, views).unwrap();

    let cap = dir.join("cap");
    let out = e2e_tests::succeed(
        Command::new(&calib_bin)
            .args([
                "capture", "--preset", "file", "--width", "640", "--height", "480",
            ])
            .args(["--target", "30", "--location"])
            .arg(&video)
            .arg("--out")
            .arg(&cap),
    );
    eprintln!("{out}");
    let kept = std::fs::read_dir(&cap)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("left_")
        })
        .count();
    assert!(kept >= 4, "only {kept} pairs kept");
    assert!(kept < 20, "every view was kept: coverage does not select");
    assert!(out.contains(&format!("kept {kept} pairs")), "{out}");

    let rig_file = dir.join("rig.yaml");
    e2e_tests::succeed(
        Command::new(&calib_bin)
            .arg("stereo")
            .arg(&cap)
            .arg("--out")
            .arg(&rig_file),
    );
    let (got, truth) = (
        calib::Rig::load_opencv(&rig_file).unwrap(),
        calib::Rig::load_opencv(&synth.join("truth.yaml")).unwrap(),
    );
    let rel = |a: f64, b: f64| (a / b - 1.0).abs();
    eprintln!(
        "fx {:.2} (truth {:.2}), baseline {:.4} (truth {:.4})",
        got.left.fx(),
        truth.left.fx(),
        got.baseline(),
        truth.baseline()
    );
    assert!(rel(got.left.fx(), truth.left.fx()) < 0.01);
    assert!(rel(got.right.fx(), truth.right.fx()) < 0.01);
    assert!(rel(got.baseline(), truth.baseline()) < 0.02);
}
