//! From aggregated costs to a trusted disparity map: winner-take-all with
//! sub-pixel refinement and a uniqueness test, left-right consistency, texture and
//! border masks, and speckle removal.

use crate::image::{Disparity, GrayImage};
use rayon::prelude::*;

/// Winner-take-all result before the left-right check.
pub struct Wta {
    /// Left disparity map (sub-pixel), validity after the uniqueness test.
    pub left: Disparity,
    /// Integer disparity of every right pixel: the disparity of the cheapest left
    /// pixel that maps onto it (as OpenCV's SGBM does); -1 if none.
    pub right: Vec<i32>,
}

/// Result of the per-pixel search.
struct Pick {
    d: f32,
    unique: bool,
    best: u16,
    bd: usize,
}

#[inline(always)]
fn pick(f: &[u16], b: &[u16], sum: &mut [u16], n: usize, keep: f32) -> Pick {
    for ((s, &a), &c) in sum.iter_mut().zip(f).zip(b) {
        *s = a + c;
    }
    let s = &sum[..n];
    let best = s.iter().copied().min().unwrap_or(u16::MAX);
    // First index of the minimum: find its 16-wide chunk with a branch-free test
    // (vectorised), then scan that chunk.
    let mut bd = 0;
    for (k, chunk) in s.chunks(16).enumerate() {
        if chunk.iter().fold(false, |acc, &v| acc | (v == best)) {
            bd = k * 16 + chunk.iter().position(|&v| v == best).unwrap_or(0);
            break;
        }
    }
    // Uniqueness: every disparity further than one from the best must cost clearly more.
    let lo = s[..bd.saturating_sub(1)]
        .iter()
        .copied()
        .min()
        .unwrap_or(u16::MAX);
    let hi = s[(bd + 2).min(n)..]
        .iter()
        .copied()
        .min()
        .unwrap_or(u16::MAX);
    let unique = n > 1 && (lo.min(hi) as f32) * keep >= best as f32;
    let mut d = bd as f32;
    if bd > 0 && bd + 1 < n {
        let (a, c) = (s[bd - 1] as f32, s[bd + 1] as f32);
        let denom = a + c - 2.0 * best as f32;
        if denom > 0.0 {
            d += ((a - c) / (2.0 * denom)).clamp(-0.5, 0.5);
        }
    }
    Pick {
        d,
        unique,
        best,
        bd,
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn wta_row(
    fwd: &[u16],
    bwd: &[u16],
    y: usize,
    w: usize,
    dn: usize,
    keep: f32,
    drow: &mut [f32],
    vrow: &mut [bool],
    rrow: &mut [i32],
) {
    let mut sum = vec![0u16; dn];
    let mut min_r = vec![u16::MAX; w];
    for x in 0..w {
        let base = (y * w + x) * dn;
        let n = (x + 1).min(dn);
        let p = pick(
            &fwd[base..base + dn],
            &bwd[base..base + dn],
            &mut sum,
            n,
            keep,
        );
        drow[x] = p.d;
        vrow[x] = p.unique;
        let xr = x - p.bd;
        if p.best < min_r[xr] {
            min_r[xr] = p.best;
            rrow[xr] = p.bd as i32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn wta_row_avx2(
    fwd: &[u16],
    bwd: &[u16],
    y: usize,
    w: usize,
    dn: usize,
    keep: f32,
    drow: &mut [f32],
    vrow: &mut [bool],
    rrow: &mut [i32],
) {
    wta_row(fwd, bwd, y, w, dn, keep, drow, vrow, rrow)
}

/// Pick the best disparity of every pixel from S = forward + backward.
pub fn winner_take_all(
    fwd: &[u16],
    bwd: &[u16],
    w: usize,
    h: usize,
    dn: usize,
    uniqueness: f32,
) -> Wta {
    let mut disp = vec![0f32; w * h];
    let mut valid = vec![false; w * h];
    let mut right = vec![-1i32; w * h];
    let keep = 1.0 - uniqueness;
    let avx2 = crate::sgm::uses_avx2();
    disp.par_chunks_mut(w)
        .zip(valid.par_chunks_mut(w))
        .zip(right.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, ((drow, vrow), rrow))| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU supports AVX2 (checked by `uses_avx2`), the only
                // requirement of `wta_row_avx2`, whose body is safe Rust.
                unsafe { wta_row_avx2(fwd, bwd, y, w, dn, keep, drow, vrow, rrow) };
                return;
            }
            let _ = avx2;
            wta_row(fwd, bwd, y, w, dn, keep, drow, vrow, rrow)
        });
    Wta {
        left: Disparity {
            width: w,
            height: h,
            disp,
            valid,
        },
        right,
    }
}

/// Keep pixels whose right-image match points back within `max_diff` pixels.
pub fn check_left_right(wta: Wta, max_diff: f32) -> Disparity {
    let mut d = wta.left;
    if max_diff < 0.0 {
        return d;
    }
    let w = d.width;
    for y in 0..d.height {
        for x in 0..w {
            let i = y * w + x;
            if !d.valid[i] {
                continue;
            }
            let xr = x as i64 - d.disp[i].round() as i64;
            let ok = xr >= 0 && {
                let r = wta.right[y * w + xr as usize];
                r >= 0 && (r as f32 - d.disp[i]).abs() <= max_diff
            };
            d.valid[i] = ok;
        }
    }
    d
}

/// Invalidate pixels whose window holds too little texture to match.
pub fn invalidate_featureless(d: &mut Disparity, img: &GrayImage, window: usize, threshold: u32) {
    if threshold == 0 {
        return;
    }
    let (w, h, r) = (img.width, img.height, window / 2);
    // Per row, prefix sums of the horizontal gradient; per pixel, sum the window's rows.
    let mut pre = vec![0u32; (w + 1) * h];
    for y in 0..h {
        let row = &img.data[y * w..(y + 1) * w];
        let p = &mut pre[y * (w + 1)..(y + 1) * (w + 1)];
        for x in 0..w {
            let g = if x + 1 < w {
                (row[x] as i32 - row[x + 1] as i32).unsigned_abs()
            } else {
                0
            };
            p[x + 1] = p[x] + g;
        }
    }
    d.valid.par_chunks_mut(w).enumerate().for_each(|(y, vrow)| {
        if y < r || y + r >= h {
            return;
        }
        for (x, v) in vrow.iter_mut().enumerate().take(w - r).skip(r) {
            if !*v {
                continue;
            }
            let s: u32 = (y - r..=y + r)
                .map(|yy| pre[yy * (w + 1) + x + r + 1] - pre[yy * (w + 1) + x - r])
                .sum();
            *v = s >= threshold;
        }
    });
}

/// Invalidate a border of `r` pixels, where the census window leaves the image.
pub fn invalidate_border(d: &mut Disparity, r: usize) {
    let (w, h) = (d.width, d.height);
    for y in 0..h {
        for x in 0..w {
            if x < r || y < r || x + r >= w || y + r >= h {
                d.valid[y * w + x] = false;
            }
        }
    }
}

/// Remove connected regions (4-neighbours within `range` pixels of disparity) smaller than `size`.
pub fn filter_speckles(d: &mut Disparity, size: usize, range: f32) {
    let (w, h) = (d.width, d.height);
    let mut label = vec![0u32; w * h];
    let mut next = 0u32;
    let mut stack = Vec::new();
    let mut region = Vec::new();
    for start in 0..w * h {
        if !d.valid[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        region.clear();
        while let Some(p) = stack.pop() {
            region.push(p);
            let (x, y) = (p % w, p / w);
            let dp = d.disp[p];
            let mut visit = |q: usize| {
                if d.valid[q] && label[q] == 0 && (d.disp[q] - dp).abs() <= range {
                    label[q] = next;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < w {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - w);
            }
            if y + 1 < h {
                visit(p + w);
            }
        }
        if region.len() < size {
            for &p in &region {
                d.valid[p] = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speckles_smaller_than_the_window_are_removed() {
        let (w, h) = (10, 10);
        let mut d = Disparity {
            width: w,
            height: h,
            disp: vec![5.0; w * h],
            valid: vec![true; w * h],
        };
        // A 2x2 island at disparity 20 inside a region of 5.
        for &(x, y) in &[(3, 3), (4, 3), (3, 4), (4, 4)] {
            d.disp[y * w + x] = 20.0;
        }
        filter_speckles(&mut d, 10, 1.0);
        assert!(!d.valid[3 * w + 3] && !d.valid[4 * w + 4]);
        assert!(d.valid[0] && d.valid[9 * w + 9]);
    }

    #[test]
    fn wta_refines_to_sub_pixel_and_rejects_ambiguous_costs() {
        // One pixel row of width 20, 16 disparities, forward costs only.
        let (w, h, dn) = (20, 1, 16);
        let mut f = vec![100u16; w * h * dn];
        let b = vec![0u16; w * h * dn];
        let x = 19;
        // Parabola around d = 6.25.
        for d in 0..dn {
            let v = 20.0 + 4.0 * (d as f32 - 6.25).powi(2);
            f[x * dn + d] = v.round() as u16;
        }
        let r = winner_take_all(&f, &b, w, h, dn, 0.1);
        assert!((r.left.disp[x] - 6.25).abs() < 0.1, "{}", r.left.disp[x]);
        assert!(r.left.valid[x]);
        // Two equal minima far apart: not unique.
        let mut f2 = vec![100u16; w * h * dn];
        f2[x * dn + 3] = 10;
        f2[x * dn + 12] = 10;
        let r = winner_take_all(&f2, &b, w, h, dn, 0.1);
        assert!(!r.left.valid[x]);
    }
}
