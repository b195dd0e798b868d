//! The `stereo` command line: matches PNG pairs and names bad input.

use std::process::Command;

fn stereo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stereo"))
}

#[test]
fn match_writes_a_disparity_png_and_refuses_bad_pairs() {
    let dir = std::env::temp_dir().join(format!("stereo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let world = sim::World::generate(&sim::Context::default(), 2);
    let renderer = sim::Renderer::new(sim::StereoRig::with_size(320, 240), 1);
    let mut f = sim::StereoFrame::default();
    renderer.render(
        &world,
        &sim::CameraPose::looking_forward(world.start, 0.0),
        1,
        &mut f,
    );
    sim::image_io::write_frame(&dir, &f, 10.0).unwrap();
    let out = dir.join("disp.png");
    let o = stereo()
        .arg("match")
        .arg(dir.join("left.png"))
        .arg(dir.join("right.png"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("% valid"));
    assert!(out.is_file());
    // Different sizes.
    let small = sim::StereoFrame::new(160, 120);
    sim::image_io::write_gray8(&dir.join("small.png"), 160, 120, &small.left).unwrap();
    let o = stereo()
        .arg("match")
        .arg(dir.join("left.png"))
        .arg(dir.join("small.png"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("rectified pair has equal sizes"));
    // 16-bit image.
    let o = stereo()
        .arg("match")
        .arg(dir.join("left.png"))
        .arg(dir.join("depth_mm.png"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("8-bit grayscale"));
    // Not a PNG; disparity range too large.
    std::fs::write(dir.join("junk.png"), b"junk").unwrap();
    let o = stereo()
        .arg("match")
        .arg(dir.join("junk.png"))
        .arg(dir.join("right.png"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("junk.png"));
    let o = stereo()
        .args(["match", "--max-disp", "400"])
        .arg(dir.join("left.png"))
        .arg(dir.join("right.png"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("disparity range"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `stereo simd-check` on this machine: its hand-written kernels (AVX2 on
/// x86-64 CPUs that have it, NEON on aarch64) give the generic code's disparity
/// maps bit for bit on the benchmark's pairs (twin 160x120/32, 320x240/64 and
/// 640x480/128, Aloe and Motorcycle where installed), 8 and 4 paths; without such kernels
/// the command says there is nothing to compare. The NEON kernels get the same
/// check under qemu-aarch64 on x86 hosts (`tests/tests/e2e/aarch64.rs`).
#[test]
fn simd_kernels_equal_the_generic_code_on_the_bench_pairs() {
    let o = stereo().arg("simd-check").output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    let native = stereo::sgm::simd();
    if native == stereo::Simd::Generic {
        assert!(!o.status.success(), "{stdout}");
        assert!(stderr.contains("no hand-written SIMD kernels"), "{stderr}");
        return;
    }
    assert!(o.status.success(), "{stdout}\n{stderr}");
    eprintln!("{}", stdout.trim());
    assert!(
        stdout.contains(&format!("{native} kernels against the generic code")),
        "{stdout}"
    );
    // Every twin size, both path counts, each identical.
    for size in ["twin 160x120", "twin 320x240", "twin 640x480"] {
        for paths in ["8 paths", "4 paths"] {
            let line = stdout
                .lines()
                .find(|l| l.contains(size) && l.contains(paths))
                .unwrap_or_else(|| panic!("no {size}, {paths} line:\n{stdout}"));
            assert!(line.ends_with(": identical"), "{line}");
        }
    }
    assert!(stdout.contains(&format!(
        "simd-check passed: {native} equals the generic code"
    )));
}
