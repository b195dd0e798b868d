//! Compact obstacle features from a disparity map: a per-column nearest-depth scan
//! (like a laser scan), the mean disparity (the cue the persistent self-supervised
//! learning paper flew on), and time-to-contact from successive frames.

use crate::image::Disparity;

/// Per-column nearest depth over the rows around the horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthScan {
    /// Depth (m) per column bin, left to right, at most `max_depth`; `max_depth`
    /// also where the bin is invalid (check `valid`: that is unknown, not far).
    pub depth: Vec<f32>,
    /// Whether the bin had enough valid pixels to trust.
    pub valid: Vec<bool>,
}

/// The scan: `columns` vertical bins over the central `band` fraction of the rows;
/// each bin reports the depth of its 95th-percentile disparity (robust to a few
/// outliers), clamped to `max_depth`; bins with fewer than 3 valid pixels are invalid.
/// A valid match at zero disparity is a surface beyond the range (`max_depth`),
/// not a missing answer.
pub fn depth_scan(
    d: &Disparity,
    fx: f64,
    baseline: f64,
    columns: usize,
    band: f32,
    max_depth: f32,
) -> DepthScan {
    let (w, h) = (d.width, d.height);
    let half = ((h as f32 * band.clamp(0.0, 1.0)) / 2.0).round().max(1.0) as usize;
    let (r0, r1) = (h / 2 - half.min(h / 2), (h / 2 + half).min(h));
    let fb = (fx * baseline) as f32;
    let columns = columns.clamp(1, w.max(1));
    let mut out = DepthScan {
        depth: vec![max_depth; columns],
        valid: vec![false; columns],
    };
    let mut vals = Vec::new();
    for c in 0..columns {
        let (u0, u1) = (c * w / columns, (c + 1) * w / columns);
        vals.clear();
        for y in r0..r1 {
            for x in u0..u1 {
                let i = y * w + x;
                if d.valid[i] {
                    vals.push(d.disp[i].max(0.0));
                }
            }
        }
        if vals.len() >= 3 {
            vals.sort_by(|a, b| a.total_cmp(b));
            let k = ((vals.len() - 1) as f32 * 0.95).round() as usize;
            out.depth[c] = if vals[k] > 0.0 {
                (fb / vals[k]).min(max_depth)
            } else {
                max_depth
            };
            out.valid[c] = true;
        }
    }
    out
}

/// Fill the gaps of a depth scan (`depth`, NaN = unknown) that are at most
/// `max_gap` bins wide and have a known bin on each side, with the nearer of the
/// two (the guess that the nearer surface goes on behind the gap). That guess is
/// wrong for a near textureless object narrower than the gap between far
/// surfaces, which the fill turns from unknown into far: keep `max_gap` small.
/// Gaps at either end of the scan, or wider ones, stay unknown. Returns which
/// bins were filled: a filled bin is an input for a policy, never a measurement
/// (nothing should train on it).
pub fn fill_scan_gaps(depth: &mut [f32], max_gap: usize) -> Vec<bool> {
    let mut filled = vec![false; depth.len()];
    if max_gap == 0 {
        return filled;
    }
    let mut i = 0;
    while i < depth.len() {
        if depth[i].is_finite() {
            i += 1;
            continue;
        }
        let start = i;
        while i < depth.len() && !depth[i].is_finite() {
            i += 1;
        }
        // Unknown bins start..i, bounded by start - 1 and i when both exist.
        if start > 0 && i < depth.len() && i - start <= max_gap {
            let near = depth[start - 1].min(depth[i]);
            for k in start..i {
                depth[k] = near;
                filled[k] = true;
            }
        }
    }
    filled
}

/// Mean disparity over valid pixels (pixels), `None` when nothing is valid.
pub fn mean_disparity(d: &Disparity) -> Option<f32> {
    let (mut s, mut n) = (0.0f64, 0usize);
    for (&v, &ok) in d.disp.iter().zip(&d.valid) {
        if ok {
            s += v as f64;
            n += 1;
        }
    }
    (n > 0).then(|| (s / n as f64) as f32)
}

/// Time to contact from the growth of a disparity-like cue between frames.
#[derive(Debug, Clone, Default)]
pub struct TimeToContact {
    prev: Option<(f64, f32)>,
}

impl TimeToContact {
    /// Feed the cue (e.g. mean disparity, or the scan's largest disparity) at time `t` (s);
    /// returns seconds to contact, infinite when not approaching, `None` on the first frame.
    /// Disparity d ∝ 1/Z, so at constant closing speed TTC = Z₁ / v = Δt / (d₁/d₀ − 1),
    /// exact between the two frames (no finite-difference bias).
    pub fn update(&mut self, t: f64, cue: f32) -> Option<f64> {
        let out = self.prev.and_then(|(t0, d0)| {
            let dt = t - t0;
            (dt > 0.0 && cue.is_finite() && d0.is_finite() && d0 > 0.0).then(|| {
                let growth = cue as f64 / d0 as f64 - 1.0;
                if growth > 1e-9 {
                    dt / growth
                } else {
                    f64::INFINITY
                }
            })
        });
        self.prev = Some((t, cue));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_mean_and_ttc_on_known_maps() {
        let (w, h) = (8, 10);
        let mut d = Disparity {
            width: w,
            height: h,
            disp: vec![4.0; w * h],
            valid: vec![true; w * h],
            confidence: vec![1.0; w * h],
        };
        for y in 0..h {
            for x in 4..8 {
                d.disp[y * w + x] = 8.0;
            }
        }
        let s = depth_scan(&d, 80.0, 0.1, 2, 0.6, 10.0);
        assert_eq!(s.depth, vec![2.0, 1.0]);
        assert_eq!(s.valid, vec![true, true]);
        assert_eq!(mean_disparity(&d), Some(6.0));
        d.valid.iter_mut().for_each(|v| *v = false);
        assert_eq!(mean_disparity(&d), None);
        assert!(!depth_scan(&d, 80.0, 0.1, 2, 0.6, 10.0).valid[0]);
        // Valid matches at zero disparity: beyond the range, known.
        d.valid.iter_mut().for_each(|v| *v = true);
        d.disp.iter_mut().for_each(|v| *v = 0.0);
        let far = depth_scan(&d, 80.0, 0.1, 2, 0.6, 10.0);
        assert_eq!((far.depth, far.valid), (vec![10.0, 10.0], vec![true, true]));
        // Approaching a wall at 1 m/s from 5 m: d = fB/Z; TTC at Z = 4 m is 4 s.
        let mut ttc = TimeToContact::default();
        assert!(ttc.update(0.0, 8.0 / 5.0).is_none());
        let t = ttc.update(1.0, 8.0 / 4.0).unwrap();
        assert!((t - 4.0).abs() < 1e-6, "{t}");
        assert!(ttc.update(2.0, 8.0 / 4.0).unwrap().is_infinite());
    }
    #[test]
    fn scan_gaps_between_known_bins_take_the_nearer_side() {
        let n = f32::NAN;
        let mut s = vec![n, 4.0, n, n, 2.0, n, n, n, 6.0, n];
        let filled = fill_scan_gaps(&mut s, 2);
        // The two-bin gap between 4 and 2 m reads 2 m; the three-bin gap and
        // both ends stay unknown.
        assert_eq!(&s[1..5], &[4.0, 2.0, 2.0, 2.0]);
        assert!(s[0].is_nan() && s[5].is_nan() && s[7].is_nan() && s[9].is_nan());
        assert_eq!(
            filled,
            vec![
                false, false, true, true, false, false, false, false, false, false
            ]
        );
        let mut off = vec![3.0, n, 3.0];
        assert_eq!(fill_scan_gaps(&mut off, 0), vec![false; 3]);
        assert!(off[1].is_nan());
    }
}
