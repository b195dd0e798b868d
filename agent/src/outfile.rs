//! Names of the files a robot writes at every start (its flight recording, its
//! telemetry): `{time}` in a name becomes the UTC start time
//! (`20261205T193300Z`), and such a time-stamped file that exists (two starts in
//! one second) is never overwritten — the next free `NAME-1.EXT`, ... is taken —
//! so a restart after an incident keeps the flight before it. A name without
//! `{time}` is used as given (a launch file that replays `out/sim_twin.mcap`
//! finds the newest run there).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `path` with `{time}` filled in and, if that file exists, a free numbered
/// name; a path without `{time}` as it is.
pub fn fresh(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    fresh_at(path, secs)
}

fn fresh_at(path: &Path, unix_secs: u64) -> PathBuf {
    if !path.to_string_lossy().contains("{time}") {
        return path.to_path_buf();
    }
    free(PathBuf::from(
        path.to_string_lossy()
            .replace("{time}", &utc_stamp(unix_secs)),
    ))
}

/// The name of part `part` (0 = the first, `first`, from [`fresh`]) of a
/// recording split into files: with `{time}` in `template`, a fresh
/// time-stamped name (the part's own start time); without, `first` with
/// `-partN` before its extension (N from 2), or the next free `-partN-K` if
/// an earlier run left that file.
pub fn part(template: &Path, first: &Path, part: u32) -> PathBuf {
    if part == 0 {
        return first.to_path_buf();
    }
    if template.to_string_lossy().contains("{time}") {
        return fresh(template);
    }
    // A part left by an earlier run of the same name is not overwritten.
    free(numbered(first, &format!("-part{}", part + 1)))
}

/// `named`, or the first of `NAME-1.EXT`, `NAME-2.EXT`, ... that does not exist.
fn free(named: PathBuf) -> PathBuf {
    if !named.exists() {
        return named;
    }
    (1u64..)
        .map(|k| numbered(&named, &format!("-{k}")))
        .find(|p| !p.exists())
        .unwrap_or(named)
}

/// `path` with `tag` between its stem and its extension.
fn numbered(path: &Path, tag: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{tag}{ext}"))
}

/// UTC time as `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format).
fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (the standard
/// era-based conversion, as in H. Hinnant's "chrono-Compatible Low-Level Date
/// Algorithms").
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc_stamp(951_827_696), "20000229T123456Z");
        // 2026-12-05 19:33:00 UTC.
        assert_eq!(utc_stamp(1_796_499_180), "20261205T193300Z");
    }

    #[test]
    fn time_stamped_files_are_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("outfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = dir.join("flight-{time}.mcap");
        let first = fresh_at(&name, 0);
        assert_eq!(first, dir.join("flight-19700101T000000Z.mcap"));
        std::fs::write(&first, b"a flight").unwrap();
        let second = fresh_at(&name, 0);
        assert_eq!(second, dir.join("flight-19700101T000000Z-1.mcap"));
        std::fs::write(&second, b"another").unwrap();
        assert_eq!(
            fresh_at(&name, 0),
            dir.join("flight-19700101T000000Z-2.mcap")
        );
        // Without {time}, the name as given.
        let plain = dir.join("graph.rrd");
        std::fs::write(&plain, b"x").unwrap();
        assert_eq!(fresh_at(&plain, 5), plain);
        // Parts of a split recording.
        assert_eq!(part(&plain, &plain, 0), plain);
        assert_eq!(part(&plain, &plain, 1), dir.join("graph-part2.rrd"));
        std::fs::write(dir.join("graph-part2.rrd"), b"an earlier run's").unwrap();
        assert_eq!(part(&plain, &plain, 1), dir.join("graph-part2-1.rrd"));
        let stamped = part(&name, &first, 1);
        assert!(
            !stamped.exists() && stamped != first,
            "{}",
            stamped.display()
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
