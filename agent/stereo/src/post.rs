//! From aggregated costs to a trusted disparity map: winner-take-all with
//! sub-pixel refinement and a confidence (uniqueness) test, left-right
//! consistency, a texture test relative to the image's own noise, the border
//! mask, and speckle removal. The texture test is not a fixed threshold: a fixed
//! one drops weak-but-consistent surfaces that semi-global aggregation matches
//! well (a third of a real indoor pair at 40). At its default (0.1x the noise's
//! share, at least one gray level) it drops windows with next to no texture —
//! flat, saturated or synthetic surfaces, whose answer the smoothness terms alone
//! would carry in from their edges; windows of plain sensor noise pass it and are
//! left to the confidence, left-right and speckle checks, which drop most of them
//! (on the twin, 95 % of a textureless wall under 3 gray levels of noise).

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

impl Wta {
    /// An all-invalid result of `w` x `h` pixels, for a matcher to fill.
    pub(crate) fn blank(w: usize, h: usize) -> Wta {
        Wta {
            left: Disparity {
                width: w,
                height: h,
                disp: vec![0.0; w * h],
                valid: vec![false; w * h],
                confidence: vec![0.0; w * h],
            },
            right: vec![-1; w * h],
        }
    }
}

/// Result of the per-pixel search.
#[derive(Debug, PartialEq)]
pub(crate) struct Pick {
    d: f32,
    unique: bool,
    conf: f32,
    best: u16,
    bd: usize,
}

/// The output rows a winner-take-all fills: left disparity, validity and
/// confidence, and the right image's integer disparity.
pub(crate) struct WtaRows<'a> {
    pub(crate) disp: &'a mut [f32],
    pub(crate) valid: &'a mut [bool],
    pub(crate) conf: &'a mut [f32],
    pub(crate) right: &'a mut [i32],
}

/// The uniqueness of a pick whose best total cost is `best` and whose cheapest
/// disparity further than one from it costs `second`: its confidence
/// `1 - best / second` (0 when another disparity is as cheap, towards 1 for one
/// clear minimum; Hu and Mordohai, "A quantitative evaluation of confidence
/// measures for stereo vision", TPAMI 2012, call it the peak ratio), and whether
/// `best <= keep * second`.
#[inline(always)]
pub(crate) fn margin(best: u16, second: u16, n_valid: usize, keep: f32) -> (bool, f32) {
    if n_valid <= 1 || second == 0 {
        return (false, 0.0);
    }
    let conf = 1.0 - best as f32 / second as f32;
    ((second as f32) * keep >= best as f32, conf)
}

/// The winner of one pixel's total costs `s` (all D of them; the disparities from
/// `n_valid` on, beyond the image border, already set to `u16::MAX`, so that the
/// scans run over a fixed length and vectorise).
#[inline(always)]
pub(crate) fn pick(s: &[u16], n_valid: usize, keep: f32) -> Pick {
    let n = s.len();
    let best = s.iter().copied().fold(u16::MAX, u16::min);
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
        .fold(u16::MAX, u16::min);
    let hi = s[(bd + 2).min(n)..]
        .iter()
        .copied()
        .fold(u16::MAX, u16::min);
    refine(s, best, bd, margin(best, lo.min(hi), n_valid, keep))
}

/// The pick of a pixel whose costs `s` have their (first) minimum `best` at `bd`,
/// with its [`margin`]: the parabola through the best and its neighbours.
#[inline(always)]
pub(crate) fn refine(s: &[u16], best: u16, bd: usize, margin: (bool, f32)) -> Pick {
    let n = s.len();
    let below = if bd > 0 { s[bd - 1] } else { u16::MAX };
    let above = if bd + 1 < n { s[bd + 1] } else { u16::MAX };
    refine_between(best, bd, (below, above), margin)
}

/// [`refine`] from the totals just below and above the best (`u16::MAX` where
/// there is none, or it lies beyond the image border): what the GPU matcher
/// reads back per pixel.
#[inline(always)]
pub(crate) fn refine_between(
    best: u16,
    bd: usize,
    (below, above): (u16, u16),
    (unique, conf): (bool, f32),
) -> Pick {
    let mut d = bd as f32;
    if below != u16::MAX && above != u16::MAX {
        let (a, c) = (below as f32, above as f32);
        let denom = a + c - 2.0 * best as f32;
        if denom > 0.0 {
            d += ((a - c) / (2.0 * denom)).clamp(-0.5, 0.5);
        }
    }
    Pick {
        d,
        unique,
        conf,
        best,
        bd,
    }
}

/// Winner-take-all of a row, pixel by pixel, walked either way: the left
/// disparities, and for every right pixel the disparity of the cheapest left pixel
/// that maps onto it (the leftmost on ties, whichever way the row is walked).
pub(crate) struct RowPicker {
    min_r: Vec<u16>,
    keep: f32,
    descending: bool,
}

impl RowPicker {
    /// A picker; `keep` = 1 - uniqueness.
    pub(crate) fn new(keep: f32) -> Self {
        RowPicker {
            min_r: Vec::new(),
            keep,
            descending: false,
        }
    }

    /// Start a row whose pixels come right to left when `descending`.
    pub(crate) fn start(&mut self, rrow: &mut [i32], descending: bool) {
        self.min_r.clear();
        self.min_r.resize(rrow.len(), u16::MAX);
        rrow.fill(-1);
        self.descending = descending;
    }

    /// The uniqueness factor: the best cost must be at most this times the second.
    pub(crate) fn keep(&self) -> f32 {
        self.keep
    }

    /// Pick pixel `x` from its total costs `s` (all D; used up).
    #[inline(always)]
    pub(crate) fn pixel(&mut self, x: usize, s: &mut [u16], out: &mut WtaRows) {
        let n_valid = n_valid(x, s.len());
        s[n_valid..].fill(u16::MAX);
        let p = pick(s, n_valid, self.keep);
        self.place(x, p, out);
    }

    /// Put pixel `x`'s pick into the row's left and right disparities.
    #[inline(always)]
    pub(crate) fn place(&mut self, x: usize, p: Pick, out: &mut WtaRows) {
        out.disp[x] = p.d;
        out.valid[x] = p.unique;
        out.conf[x] = p.conf;
        let xr = x - p.bd;
        let m = &mut self.min_r[xr];
        if p.best < *m || (self.descending && p.best == *m) {
            *m = p.best;
            out.right[xr] = p.bd as i32;
        }
    }
}

/// How many of `dn` disparities of column `x` stay inside the right image.
#[inline(always)]
pub(crate) fn n_valid(x: usize, dn: usize) -> usize {
    (x + 1).min(dn)
}

#[inline(always)]
fn wta_row(totals: &mut [u16], dn: usize, keep: f32, mut out: WtaRows) {
    let mut picker = RowPicker::new(keep);
    picker.start(out.right, false);
    let w = out.disp.len();
    for (x, s) in totals.chunks_exact_mut(dn).enumerate().take(w) {
        picker.pixel(x, s, &mut out);
    }
}

with_avx2! {
    /// Winner-take-all of one image row from its total costs (`width x dn`,
    /// pixel-major; used up): sub-pixel disparity, uniqueness and confidence,
    /// and the right image's disparities (-1 where none) into `out`.
    pub(crate) fn wta_one_row(
        totals: &mut [u16],
        dn: usize,
        keep: f32,
        out: WtaRows<'_>,
    ) => wta_row
}

impl Wta {
    /// Fill the rows in parallel: `f` gets each row's item of `inputs` (one
    /// per row, in order) and the row's outputs.
    pub(crate) fn fill_rows<I>(&mut self, inputs: I, f: impl Fn(I::Item, WtaRows<'_>) + Sync + Send)
    where
        I: IndexedParallelIterator,
    {
        let w = self.left.width;
        self.left
            .disp
            .par_chunks_mut(w)
            .zip(self.left.valid.par_chunks_mut(w))
            .zip(self.left.confidence.par_chunks_mut(w))
            .zip(self.right.par_chunks_mut(w))
            .zip(inputs)
            .for_each(|((((disp, valid), conf), right), item)| {
                let out = WtaRows {
                    disp,
                    valid,
                    conf,
                    right,
                };
                f(item, out)
            });
    }
}

/// Pick the best disparity of every pixel from its total costs (`w x h x dn`,
/// pixel-major; used up as scratch).
pub fn winner_take_all(totals: &mut [u16], w: usize, h: usize, dn: usize, uniqueness: f32) -> Wta {
    let mut wta = Wta::blank(w, h);
    let keep = 1.0 - uniqueness;
    wta.fill_rows(totals.par_chunks_mut(w * dn), |t, out| {
        wta_one_row(t, dn, keep, out)
    });
    wta
}

/// The steps after winner-take-all, the same for every matcher of the semi-global
/// kind: left-right check, texture against the image's noise, the border mask
/// and speckle removal.
pub(crate) fn finish(wta: Wta, left: &GrayImage, prm: &crate::sgm::SgmParams) -> Disparity {
    let mut disp = check_left_right(wta, prm.lr_max_diff);
    let sigma = noise_sigma(left);
    let t = texture_threshold(sigma, prm.census_window, prm.texture_noise);
    invalidate_featureless(&mut disp, left, prm.census_window, t);
    invalidate_border(&mut disp, prm.census_window / 2);
    if prm.speckle_size > 0 {
        filter_speckles(&mut disp, prm.speckle_size, prm.speckle_range);
    }
    disp
}

/// Keep pixels whose right-image match points back within `max_diff` pixels.
///
/// A sub-pixel disparity `d` falls between two right pixels, `x - floor(d)` and
/// `x - ceil(d)`; the pixel is consistent when either of them points back to
/// within `max_diff` of its integer disparity, or holds no left match at all
/// (close to OpenCV's StereoSGBM check, which also keeps a candidate outside the
/// right image). Only a pixel whose right neighbours both belong to another,
/// cheaper left match is an occlusion or a mismatch.
pub fn check_left_right(wta: Wta, max_diff: f32) -> Disparity {
    let mut d = wta.left;
    if max_diff < 0.0 {
        return d;
    }
    let w = d.width;
    let right = &wta.right;
    d.valid
        .par_chunks_mut(w)
        .zip(d.disp.par_chunks(w))
        .enumerate()
        .for_each(|(y, (vrow, drow))| {
            let rrow = &right[y * w..(y + 1) * w];
            for (x, (v, &dv)) in vrow.iter_mut().zip(drow).enumerate() {
                if !*v {
                    continue;
                }
                // Disparities are never negative: truncating floors them.
                let lo = dv as i64;
                let hi = dv.ceil() as i64;
                let agrees = |d: i64| {
                    let xr = x as i64 - d;
                    xr >= 0 && {
                        let r = rrow[xr as usize];
                        r < 0 || ((r as i64 - d).abs() as f32) <= max_diff
                    }
                };
                *v = agrees(lo) || agrees(hi);
            }
        });
    d
}

/// The image noise's standard deviation (gray levels), estimated robustly:
/// Immerkær's Laplacian-difference mask ("Fast noise variance estimation",
/// CVIU 1996), whose response to Gaussian noise of deviation σ is Gaussian with
/// deviation 6σ, taken at the 25th percentile of its magnitude over the image
/// (0.3186·6σ for pure noise), so that edges and texture, which only raise the
/// upper quantiles, do not count as noise.
pub fn noise_sigma(img: &GrayImage) -> f32 {
    let (w, h) = (img.width, img.height);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: usize, y: usize| img.data[y * w + x] as i32;
    // A histogram of |L| (at most 16·255), every second row and column.
    let mut hist = vec![0u32; 16 * 255 + 1];
    let mut n = 0u32;
    for y in (1..h - 1).step_by(2) {
        for x in (1..w - 1).step_by(2) {
            let l = at(x - 1, y - 1) - 2 * at(x, y - 1) + at(x + 1, y - 1) - 2 * at(x - 1, y)
                + 4 * at(x, y)
                - 2 * at(x + 1, y)
                + at(x - 1, y + 1)
                - 2 * at(x, y + 1)
                + at(x + 1, y + 1);
            hist[l.unsigned_abs() as usize] += 1;
            n += 1;
        }
    }
    let quarter = n.div_ceil(4);
    let mut seen = 0;
    for (v, &c) in hist.iter().enumerate() {
        seen += c;
        if seen >= quarter {
            return v as f32 / (0.3186 * 6.0);
        }
    }
    0.0
}

/// The texture threshold of an image whose noise has deviation `sigma`, for a
/// census window of `window` pixels: `factor` times what noise alone gives the
/// summed horizontal gradient of [`invalidate_featureless`] (`window` rows of
/// `window` differences; a difference of two noisy pixels has mean magnitude
/// 2σ/√π), and at least one gray level. An image with flat areas over a quarter
/// of it measures σ = 0 and gets that floor.
pub fn texture_threshold(sigma: f32, window: usize, factor: f32) -> u32 {
    if factor <= 0.0 {
        return 0;
    }
    let diffs = (window * window) as f32;
    let noise = diffs * 2.0 * sigma / std::f32::consts::PI.sqrt();
    (factor * noise).ceil().max(1.0) as u32
}

/// Invalidate pixels whose window holds too little texture to match.
pub fn invalidate_featureless(d: &mut Disparity, img: &GrayImage, window: usize, threshold: u32) {
    if threshold == 0 {
        return;
    }
    let (w, h, r) = (img.width, img.height, window / 2);
    if w <= 2 * r || h <= 2 * r {
        return;
    }
    // Per row, the horizontal gradient summed over the window's width (from prefix
    // sums); per pixel, those sums over the window's rows. Both loops run across a
    // row, so they vectorise.
    let n = w - 2 * r;
    let mut hsum = vec![0u32; n * h];
    hsum.par_chunks_mut(n).enumerate().for_each(|(y, out)| {
        let row = &img.data[y * w..(y + 1) * w];
        let mut pre = vec![0u32; w + 1];
        for x in 0..w - 1 {
            pre[x + 1] = pre[x] + row[x].abs_diff(row[x + 1]) as u32;
        }
        pre[w] = pre[w - 1];
        // Pixel x + r sums the 2r + 1 differences from column x on (the last
        // reaches one column past its window).
        for (x, o) in out.iter_mut().enumerate() {
            *o = pre[x + 2 * r + 1] - pre[x];
        }
    });
    d.valid.par_chunks_mut(w).enumerate().for_each(|(y, vrow)| {
        if y < r || y + r >= h {
            return;
        }
        let mut sum = vec![0u32; n];
        for yy in y - r..=y + r {
            for (s, &v) in sum.iter_mut().zip(&hsum[yy * n..(yy + 1) * n]) {
                *s += v;
            }
        }
        for (v, &s) in vrow[r..w - r].iter_mut().zip(&sum) {
            *v &= s >= threshold;
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
///
/// Regions are found as runs: each row splits into runs of valid pixels whose
/// neighbours step by at most `range`, and a union-find joins the runs that touch
/// within `range` across rows — the same regions as a flood fill over pixels
/// (a test compares them), for a fraction of the work on smooth maps.
pub fn filter_speckles(d: &mut Disparity, size: usize, range: f32) {
    const NONE: u32 = u32::MAX;
    let (w, h) = (d.width, d.height);
    let (disp, valid) = (&d.disp, &mut d.valid);
    // Runs as pixel ranges; `parent` is the union-find forest over run ids.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    let (mut above, mut here) = (vec![NONE; w], vec![NONE; w]);
    for y in 0..h {
        let row = y * w;
        let mut x = 0;
        while x < w {
            if !valid[row + x] {
                here[x] = NONE;
                x += 1;
                continue;
            }
            let id = runs.len() as u32;
            let start = x;
            here[x] = id;
            x += 1;
            while x < w && valid[row + x] && (disp[row + x] - disp[row + x - 1]).abs() <= range {
                here[x] = id;
                x += 1;
            }
            runs.push((row + start, row + x));
            parent.push(id);
        }
        if y > 0 {
            let mut joined = (NONE, NONE);
            for x in 0..w {
                let pair = (here[x], above[x]);
                if pair.0 != NONE
                    && pair.1 != NONE
                    && pair != joined
                    && (disp[row + x] - disp[row - w + x]).abs() <= range
                {
                    union(&mut parent, pair.0, pair.1);
                    joined = pair;
                }
            }
        }
        std::mem::swap(&mut above, &mut here);
    }
    let mut pixels = vec![0usize; runs.len()];
    for (i, &(a, b)) in runs.iter().enumerate() {
        pixels[find(&mut parent, i as u32) as usize] += b - a;
    }
    for (i, &(a, b)) in runs.iter().enumerate() {
        if pixels[find(&mut parent, i as u32) as usize] < size {
            valid[a..b].fill(false);
        }
    }
}

/// The root of `i`'s tree, halving the path on the way.
fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let up = parent[parent[i as usize] as usize];
        parent[i as usize] = up;
        i = up;
    }
    i
}

/// Join the trees of `a` and `b` (the smaller root becomes the parent).
fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb) as usize] = ra.min(rb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain flood fill over pixels: the reference for [`filter_speckles`].
    fn flood_fill_speckles(d: &mut Disparity, size: usize, range: f32) {
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
            stack.push((start, start % w));
            region.clear();
            // Pixels on the stack carry their column: no division per pixel.
            while let Some((p, x)) = stack.pop() {
                // Only a region that stays small is removed: past `size` pixels, its
                // members need not be remembered (the fill still labels them all).
                if region.len() < size {
                    region.push(p);
                }
                let dp = d.disp[p];
                let mut visit = |q: usize, qx: usize| {
                    if d.valid[q] && label[q] == 0 && (d.disp[q] - dp).abs() <= range {
                        label[q] = next;
                        stack.push((q, qx));
                    }
                };
                if x > 0 {
                    visit(p - 1, x - 1);
                }
                if x + 1 < w {
                    visit(p + 1, x + 1);
                }
                if p >= w {
                    visit(p - w, x);
                }
                if p + w < w * h {
                    visit(p + w, x);
                }
            }
            if region.len() < size {
                for &p in &region {
                    d.valid[p] = false;
                }
            }
        }
    }

    #[test]
    fn speckle_regions_by_runs_equal_a_flood_fill_over_pixels() {
        let mut rng = sim::rng::Rng::new(11);
        for case in 0..40 {
            let (w, h) = (1 + rng.below(40) as usize, 1 + rng.below(30) as usize);
            // Few disparity levels and plenty of holes: many regions of every size,
            // with U shapes that only join rows below.
            let levels = 1 + case % 4;
            let disp: Vec<f32> = (0..w * h)
                .map(|_| rng.below(levels as u64) as f32 * 1.5 + rng.below(3) as f32 * 0.4)
                .collect();
            let valid: Vec<bool> = (0..w * h).map(|_| rng.below(5) != 0).collect();
            let d = Disparity {
                width: w,
                height: h,
                disp,
                valid,
                confidence: vec![1.0; w * h],
            };
            for size in [1, 3, 8, 40] {
                let (mut a, mut b) = (d.clone(), d.clone());
                filter_speckles(&mut a, size, 1.0);
                flood_fill_speckles(&mut b, size, 1.0);
                assert_eq!(a.valid, b.valid, "case {case}, {w}x{h}, size {size}");
            }
        }
    }

    #[test]
    fn speckles_smaller_than_the_window_are_removed() {
        let (w, h) = (10, 10);
        let mut d = Disparity {
            width: w,
            height: h,
            disp: vec![5.0; w * h],
            valid: vec![true; w * h],
            confidence: vec![1.0; w * h],
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
        let x = 19;
        // Parabola around d = 6.25.
        for d in 0..dn {
            let v = 20.0 + 4.0 * (d as f32 - 6.25).powi(2);
            f[x * dn + d] = v.round() as u16;
        }
        let r = winner_take_all(&mut f, w, h, dn, 0.1);
        assert!((r.left.disp[x] - 6.25).abs() < 0.1, "{}", r.left.disp[x]);
        assert!(r.left.valid[x]);
        // Two equal minima far apart: not unique.
        let mut f2 = vec![100u16; w * h * dn];
        f2[x * dn + 3] = 10;
        f2[x * dn + 12] = 10;
        let r = winner_take_all(&mut f2, w, h, dn, 0.1);
        assert!(!r.left.valid[x]);
    }
}
