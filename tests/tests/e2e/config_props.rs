//! Property tests of the settings parsers a user feeds files to: the flight
//! settings (`launch/fly.toml`, `FlyConfig`), the loop's settings
//! (`LoopConfig`), launch files and calibration files. Whatever the file
//! holds — random text, or a shipped file with one number replaced by NaN, an
//! infinity, a huge, zero or negative value — loading returns the settings or
//! an error naming the problem; it never panics.

use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn shipped(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../launch")
            .join(name),
    )
    .unwrap()
}

/// A scratch file for one case.
fn scratch(text: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("config-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{}.toml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&p, text).unwrap();
    p
}

fn load_all(text: &str) {
    let p = scratch(text);
    let _ = agent::fly::FlyConfig::load(&p);
    let _ = agent::pipeline::LoopConfig::load(&p);
    let _ = agent::launch::LaunchFile::load(&p);
    let _ = calib::Rig::load_opencv(&p);
    let _ = std::fs::remove_file(&p);
}

/// The `k`-th number in `text` replaced by `v`.
fn replace_number(text: &str, k: usize, v: &str) -> String {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if start_ok {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || b".eE_".contains(&bytes[j])) {
                j += 1;
            }
            spans.push((i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    if spans.is_empty() {
        return text.to_string();
    }
    let (a, b) = spans[k % spans.len()];
    format!("{}{v}{}", &text[..a], &text[b..])
}

fn odd_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e300".to_string()),
        Just("-1e300".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("9223372036854775807".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_text_never_panics_a_settings_parser(text in "\\PC{0,300}") {
        load_all(&text);
    }

    #[test]
    fn a_shipped_file_with_any_number_replaced_never_panics(
        file in prop_oneof![
            Just("fly.toml"),
            Just("sim_twin.toml"),
            Just("robot.toml"),
            Just("train.toml"),
        ],
        k in 0usize..400,
        v in odd_number(),
    ) {
        load_all(&replace_number(&shipped(file), k, &v));
    }
}
