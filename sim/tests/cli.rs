//! The `sim` command line: renders PNGs a person can look at, refuses bad input
//! with errors that name the problem, and samples instance sets.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sim"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sim-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read_png(path: &std::path::Path) -> (png::OutputInfo, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

#[test]
fn render_writes_left_right_and_depth_pngs() {
    let out = tmp("render");
    let st = sim()
        .args([
            "render", "--seed", "3", "--width", "320", "--height", "240", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for f in ["left.png", "right.png", "depth.png"] {
        let (info, data) = read_png(&out.join(f));
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let (mn, mx) = data
            .iter()
            .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(mx > mn + 30, "{f} should show structure");
    }
    let (info, data) = read_png(&out.join("depth_mm.png"));
    assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
    let mm: Vec<u16> = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    // The default room is 20 m long: every pixel sees a surface at 0 < Z <= 20 m.
    assert!(
        mm.iter().all(|&v| v > 0 && v <= 20_000),
        "all pixels see a surface within the room"
    );
    let (l, r) = (
        read_png(&out.join("left.png")).1,
        read_png(&out.join("right.png")).1,
    );
    assert_ne!(l, r, "the eyes see different images");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bad_context_file_is_refused_with_the_key_and_range() {
    let dir = tmp("bad");
    let cases = [
        ("unknown.toml", "room_lenght = 12.0\n", "room_lenght"),
        ("range.toml", "light = 12.0\n", "light"),
        ("nan.toml", "wind_gust = nan\n", "wind_gust"),
        (
            "small.toml",
            "room_length = 5.0\nroom_width = 2.0\nobstacle_count = 50\n",
            "room too small",
        ),
    ];
    for (name, text, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        let st = sim()
            .args(["render", "--context"])
            .arg(&p)
            .arg("--out")
            .arg(dir.join("o"))
            .output()
            .unwrap();
        assert!(!st.status.success(), "{name} accepted");
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let st = sim()
        .args(["render", "--context"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("missing.toml"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn contexts_samples_a_valid_deterministic_instance_set() {
    let dir = tmp("ctx");
    let space = dir.join("space.toml");
    std::fs::write(
        &space,
        "[base]\nroom_height = 3.0\n[ranges]\nobstacle_count = [0, 20]\nlight = [0.4, 1.6]\n",
    )
    .unwrap();
    let run = |seed: &str| {
        let o = sim()
            .args(["contexts", "--n", "8", "--seed", seed, "--space"])
            .arg(&space)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let a = run("1");
    assert_eq!(a, run("1"));
    assert_ne!(a, run("2"));
    let set = sim::InstanceSet::from_toml_str(&a, "stdout").unwrap();
    assert_eq!(set.instance.len(), 8);
    assert!(set.instance.iter().all(|c| (0.4..=1.6).contains(&c.light)));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_context_files_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contexts");
    let set = sim::InstanceSet::load(&dir.join("instances.toml")).unwrap();
    assert_eq!(set.instance.len(), 4);
    let space =
        sim::ContextSpace::from_toml_str(&std::fs::read_to_string(dir.join("space.toml")).unwrap())
            .unwrap();
    assert_eq!(space.sample(20, 0).unwrap().instance.len(), 20);
}

#[test]
fn calib_views_writes_board_pairs_and_the_rig() {
    let out = tmp("calib-views");
    let st = sim()
        .args([
            "calib-views",
            "--views",
            "3",
            "--width",
            "320",
            "--height",
            "240",
        ])
        .args(["--distortion", "-0.2,0.05,0,0,0", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for k in 0..3 {
        for side in ["left", "right"] {
            let (info, px) = read_png(&out.join(format!("{side}_{k:03}.png")));
            assert_eq!((info.width, info.height), (320, 240));
            // A board: both black and white squares are in the picture.
            assert!(px.iter().any(|&v| v < 60) && px.iter().any(|&v| v > 200));
        }
    }
    let truth = std::fs::read_to_string(out.join("truth.yaml")).unwrap();
    assert!(
        truth.starts_with("%YAML:1.0") && truth.contains("D1") && truth.contains("-0.2"),
        "{truth}"
    );
    for bad in [
        vec!["--board", "9by6"],
        vec!["--distortion", "0.1,0.2"],
        vec!["--square", "0"],
        vec!["--span", "1.5"],
    ] {
        let o = sim()
            .arg("calib-views")
            .args(&bad)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
    std::fs::remove_dir_all(&out).ok();
}
