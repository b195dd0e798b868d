//! Semi-global matching over census costs.
//!
//! Costs C(p, d) are Hamming distances of census strings; they are aggregated along
//! 8 (or 4) straight paths with the usual smoothness terms — P1 for a one-pixel
//! disparity change, P2 (lowered across image edges) for larger jumps — in two
//! raster passes (forward and backward) that run in parallel. Winner-take-all picks
//! the disparity, a parabola refines it to sub-pixel, and [`crate::post`] applies
//! uniqueness, left-right consistency, texture and speckle checks.

use crate::census::{CensusWord, bits, census};
use crate::image::{Disparity, GrayImage, StereoError, check_pair};
use crate::post;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Aggregation paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Paths {
    /// Horizontal, vertical and both diagonals, both ways.
    Eight,
    /// Horizontal and vertical only (cheaper, for low power).
    Four,
}

/// Matching parameters. Defaults suit 160x120 to 640x480 images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgmParams {
    /// Number of disparities searched (0..max_disp), a multiple of 16.
    pub max_disp: usize,
    /// Census window (odd, 3 to 7).
    pub census_window: usize,
    /// Penalty for a one-pixel disparity change.
    pub p1: u16,
    /// Penalty for larger jumps (before edge adaptation).
    pub p2: u16,
    /// Intensity step at which P2 is halved (edge adaptation); 0 disables it.
    pub p2_edge: u16,
    /// Aggregation paths.
    pub paths: Paths,
    /// Best cost must beat every non-neighbouring disparity by this fraction.
    pub uniqueness: f32,
    /// Largest left-right disparity disagreement (pixels); negative disables the check.
    pub lr_max_diff: f32,
    /// Connected regions smaller than this (pixels) are speckles and made invalid; 0 disables.
    pub speckle_size: usize,
    /// Largest disparity step inside one region for the speckle filter (pixels).
    pub speckle_range: f32,
    /// Pixels whose summed horizontal gradient over the census window is below this are
    /// featureless and made invalid.
    pub texture_threshold: u32,
}

impl Default for SgmParams {
    fn default() -> Self {
        Self {
            max_disp: 64,
            census_window: 5,
            p1: 6,
            p2: 48,
            p2_edge: 24,
            paths: Paths::Eight,
            uniqueness: 0.08,
            lr_max_diff: 1.0,
            speckle_size: 40,
            speckle_range: 1.0,
            texture_threshold: 40,
        }
    }
}

impl SgmParams {
    /// Check parameter ranges.
    pub fn validate(&self) -> Result<(), StereoError> {
        let p = |name, value: f64, why| Err(StereoError::Param { name, value, why });
        if !(3..=7).contains(&self.census_window) || self.census_window.is_multiple_of(2) {
            return p(
                "census_window",
                self.census_window as f64,
                "must be 3, 5 or 7",
            );
        }
        if self.p1 == 0 || self.p2 <= self.p1 || self.p2 > 1000 {
            return p("p2", self.p2 as f64, "need 0 < p1 < p2 <= 1000");
        }
        if !(0.0..1.0).contains(&self.uniqueness) {
            return p("uniqueness", self.uniqueness as f64, "must be in [0, 1)");
        }
        if !self.lr_max_diff.is_finite() || !self.speckle_range.is_finite() {
            return p("lr_max_diff", self.lr_max_diff as f64, "must be finite");
        }
        Ok(())
    }
}

#[inline(always)]
fn cost_row<W: CensusWord>(l: &[W], r: &[W], w: usize, dmax: usize, max_cost: u8, row: &mut [u8]) {
    // Right row reversed so that r(x - d) runs forwards in d.
    let rev: Vec<W> = r.iter().rev().copied().collect();
    for x in 0..w {
        let out = &mut row[x * dmax..(x + 1) * dmax];
        let lv = l[x];
        let n = (x + 1).min(dmax);
        let start = w - 1 - x;
        for (o, &rv) in out[..n].iter_mut().zip(&rev[start..start + n]) {
            *o = lv.hamming(rv);
        }
        out[n..].fill(max_cost);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn cost_row_avx2<W: CensusWord>(
    l: &[W],
    r: &[W],
    w: usize,
    dmax: usize,
    max_cost: u8,
    row: &mut [u8],
) {
    cost_row(l, r, w, dmax, max_cost, row)
}

/// Cost volume [y][x][d] of census Hamming distances; disparities beyond the left
/// border cost the maximum.
pub fn cost_volume<W: CensusWord>(
    cl: &[W],
    cr: &[W],
    w: usize,
    h: usize,
    dmax: usize,
    max_cost: u8,
) -> Vec<u8> {
    let mut c = Vec::new();
    cost_volume_into(cl, cr, w, h, dmax, max_cost, &mut c);
    c
}

/// [`cost_volume`] into a reused buffer.
pub fn cost_volume_into<W: CensusWord>(
    cl: &[W],
    cr: &[W],
    w: usize,
    h: usize,
    dmax: usize,
    max_cost: u8,
    c: &mut Vec<u8>,
) {
    c.resize(w * h * dmax, 0);
    let fast = uses_avx2() && popcnt();
    c.par_chunks_mut(w * dmax).enumerate().for_each(|(y, row)| {
        let (l, r) = (&cl[y * w..(y + 1) * w], &cr[y * w..(y + 1) * w]);
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: AVX2 and POPCNT were detected on this CPU; they are the only
            // requirements of `cost_row_avx2`, whose body is safe Rust.
            unsafe { cost_row_avx2(l, r, w, dmax, max_cost, row) };
            return;
        }
        let _ = fast;
        cost_row(l, r, w, dmax, max_cost, row)
    });
}

fn popcnt() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// Element type of the path costs L. With the default penalties L never exceeds
/// 255 (it is bounded by the largest census cost plus P2), so paths run on bytes —
/// twice the SIMD lanes of 16-bit words; larger penalties fall back to u16.
trait Cell: Copy + Ord + Send + Sync + 'static {
    /// Sentinel beyond the disparity range.
    const FAR: Self;
    const ZERO: Self;
    fn sat_add(self, o: Self) -> Self;
    fn wsub(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn from_u16(v: u16) -> Self;
    fn widen(self) -> u16;
}

impl Cell for u8 {
    const FAR: Self = u8::MAX;
    const ZERO: Self = 0;
    #[inline(always)]
    fn sat_add(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    #[inline(always)]
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn from_u16(v: u16) -> Self {
        v.min(255) as u8
    }
    #[inline(always)]
    fn widen(self) -> u16 {
        self as u16
    }
}

impl Cell for u16 {
    const FAR: Self = 0x3000;
    const ZERO: Self = 0;
    #[inline(always)]
    fn sat_add(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    #[inline(always)]
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn from_u16(v: u16) -> Self {
        v
    }
    #[inline(always)]
    fn widen(self) -> u16 {
        self
    }
}

/// One path's state going into a step: predecessor costs (with a sentinel at each
/// end, length D + 2), their minimum, and the P2 that applies.
#[derive(Clone, Copy)]
struct Prev<'a, T> {
    l: &'a [T],
    min: T,
    p2: T,
}

/// The recurrence of one path at one disparity:
/// L(p, d) = C(p, d) + min(L(p-r, d), L(p-r, d±1) + P1, min L(p-r) + P2) - min L(p-r).
/// Never overflows: the minimum is at least `min`, and C + P2 fits the type.
#[inline(always)]
fn lr<T: Cell>(cd: T, pm: T, p0: T, pp: T, p1: T, lim: T, min: T) -> T {
    cd.wadd(
        p0.min(pm.sat_add(p1))
            .min(pp.sat_add(p1))
            .min(lim)
            .wsub(min),
    )
}

/// Four paths at one pixel, fused so that the cost is read once and the pass's sum
/// written once (S = sum of the paths' L). Separate slice arguments let the
/// compiler prove they do not alias and vectorise over d. Returns the new minima.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused4<T: Cell>(
    c: &[u8],
    al: &[T],
    bl: &[T],
    el: &[T],
    fl: &[T],
    mins: [T; 4],
    p2s: [T; 4],
    oa: &mut [T],
    ob: &mut [T],
    oe: &mut [T],
    of: &mut [T],
    s: &mut [u16],
    p1: T,
) -> [T; 4] {
    let dn = c.len();
    let (s, oa, ob, oe, of) = (
        &mut s[..dn],
        &mut oa[1..dn + 1],
        &mut ob[1..dn + 1],
        &mut oe[1..dn + 1],
        &mut of[1..dn + 1],
    );
    let (al, bl, el, fl) = (&al[..dn + 2], &bl[..dn + 2], &el[..dn + 2], &fl[..dn + 2]);
    let lim: [T; 4] = std::array::from_fn(|k| mins[k].sat_add(p2s[k]));
    let mut m = [T::FAR; 4];
    for d in 0..dn {
        let cd = T::from_u16(c[d] as u16);
        let va = lr(cd, al[d], al[d + 1], al[d + 2], p1, lim[0], mins[0]);
        let vb = lr(cd, bl[d], bl[d + 1], bl[d + 2], p1, lim[1], mins[1]);
        let ve = lr(cd, el[d], el[d + 1], el[d + 2], p1, lim[2], mins[2]);
        let vf = lr(cd, fl[d], fl[d + 1], fl[d + 2], p1, lim[3], mins[3]);
        oa[d] = va;
        ob[d] = vb;
        oe[d] = ve;
        of[d] = vf;
        m[0] = m[0].min(va);
        m[1] = m[1].min(vb);
        m[2] = m[2].min(ve);
        m[3] = m[3].min(vf);
        s[d] = va.widen() + vb.widen() + ve.widen() + vf.widen();
    }
    m
}

/// Two paths at one pixel (the four-path mode's horizontal and vertical), as [`fused4`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused2<T: Cell>(
    c: &[u8],
    al: &[T],
    bl: &[T],
    mins: [T; 2],
    p2s: [T; 2],
    oa: &mut [T],
    ob: &mut [T],
    s: &mut [u16],
    p1: T,
) -> [T; 2] {
    let dn = c.len();
    let (s, oa, ob) = (&mut s[..dn], &mut oa[1..dn + 1], &mut ob[1..dn + 1]);
    let (al, bl) = (&al[..dn + 2], &bl[..dn + 2]);
    let lim: [T; 2] = std::array::from_fn(|k| mins[k].sat_add(p2s[k]));
    let mut m = [T::FAR; 2];
    for d in 0..dn {
        let cd = T::from_u16(c[d] as u16);
        let va = lr(cd, al[d], al[d + 1], al[d + 2], p1, lim[0], mins[0]);
        let vb = lr(cd, bl[d], bl[d + 1], bl[d + 2], p1, lim[1], mins[1]);
        oa[d] = va;
        ob[d] = vb;
        m[0] = m[0].min(va);
        m[1] = m[1].min(vb);
        s[d] = va.widen() + vb.widen();
    }
    m
}

/// The fused kernels, compiled once per instruction set. Each is a real (not
/// inlined) function, so its slice arguments are known not to alias and the loop
/// over disparities vectorises without run-time overlap checks.
trait Kernel: Sync {
    #[allow(clippy::too_many_arguments)]
    fn four<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        e: Prev<T>,
        f: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        oe: &mut [T],
        of: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 4];
    #[allow(clippy::too_many_arguments)]
    fn two<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 2];
}

/// Baseline instruction set.
struct Base;

/// The per-instruction-set entry points of the fused kernels: real (not inlined)
/// functions whose slice arguments the compiler knows do not alias.
macro_rules! kernel_entry_points {
    ($four:ident, $two:ident $(, $feature:literal)?) => {
        $(#[target_feature(enable = $feature)])?
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn $four<T: Cell>(c: &[u8], al: &[T], bl: &[T], el: &[T], fl: &[T], mins: [T; 4], p2s: [T; 4], oa: &mut [T], ob: &mut [T], oe: &mut [T], of: &mut [T], s: &mut [u16], p1: T) -> [T; 4] {
            fused4(c, al, bl, el, fl, mins, p2s, oa, ob, oe, of, s, p1)
        }

        $(#[target_feature(enable = $feature)])?
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn $two<T: Cell>(c: &[u8], al: &[T], bl: &[T], mins: [T; 2], p2s: [T; 2], oa: &mut [T], ob: &mut [T], s: &mut [u16], p1: T) -> [T; 2] {
            fused2(c, al, bl, mins, p2s, oa, ob, s, p1)
        }
    };
}

kernel_entry_points!(four_base, two_base);
#[cfg(target_arch = "x86_64")]
kernel_entry_points!(four_avx2, two_avx2, "avx2");

impl Kernel for Base {
    fn four<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        e: Prev<T>,
        f: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        oe: &mut [T],
        of: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 4] {
        four_base(
            c,
            a.l,
            b.l,
            e.l,
            f.l,
            [a.min, b.min, e.min, f.min],
            [a.p2, b.p2, e.p2, f.p2],
            oa,
            ob,
            oe,
            of,
            s,
            p1,
        )
    }
    fn two<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 2] {
        two_base(c, a.l, b.l, [a.min, b.min], [a.p2, b.p2], oa, ob, s, p1)
    }
}

/// AVX2. A value exists only on CPUs that have AVX2: [`Avx2::detect`] is the only constructor.
#[cfg(target_arch = "x86_64")]
struct Avx2 {
    _private: (),
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2 { _private: () })
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    fn four<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        e: Prev<T>,
        f: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        oe: &mut [T],
        of: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 4] {
        // SAFETY: an `Avx2` value exists only after AVX2 was detected on this CPU
        // (`Avx2::detect`), the only requirement of `four_avx2`, whose body is safe Rust.
        unsafe {
            four_avx2(
                c,
                a.l,
                b.l,
                e.l,
                f.l,
                [a.min, b.min, e.min, f.min],
                [a.p2, b.p2, e.p2, f.p2],
                oa,
                ob,
                oe,
                of,
                s,
                p1,
            )
        }
    }
    fn two<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 2] {
        // SAFETY: as for `four`: AVX2 was detected before this value was made.
        unsafe { two_avx2(c, a.l, b.l, [a.min, b.min], [a.p2, b.p2], oa, ob, s, p1) }
    }
}

/// P2 for every intensity step 0..=255 between neighbours along a path: lowered across edges.
fn p2_table(p1: u16, p2: u16, edge: u16) -> [u16; 256] {
    std::array::from_fn(|g| {
        if edge == 0 {
            p2
        } else {
            let e = edge as u32;
            ((p2 as u32 * e / (e + g as u32)) as u16).max(p1 + 1)
        }
    })
}

/// One raster pass (forward: top-left to bottom-right; backward: the reverse),
/// writing into `s` the sum of the paths that arrive from behind the raster order
/// (horizontal, vertical and, with eight paths, both diagonals).
#[allow(clippy::too_many_arguments)]
fn aggregate_pass_impl<T: Cell, Kr: Kernel>(
    kr: &Kr,
    cost: &[u8],
    img: &[u8],
    w: usize,
    h: usize,
    dn: usize,
    prm: &SgmParams,
    backward: bool,
    s: &mut [u16],
) {
    let stride = dn + 2;
    let new_row = || vec![T::FAR; w * stride];
    // A path's first pixel has no predecessor: an all-zero predecessor gives L = C.
    let mut zero = vec![T::ZERO; stride];
    zero[0] = T::FAR;
    zero[stride - 1] = T::FAR;
    // Previous-row buffers for the vertical and two diagonal paths, and this row's.
    let (mut pv, mut cv) = (new_row(), new_row());
    let (mut pd1, mut cd1) = (new_row(), new_row());
    let (mut pd2, mut cd2) = (new_row(), new_row());
    let (mut mv, mut mcv) = (vec![T::ZERO; w], vec![T::ZERO; w]);
    let (mut md1, mut mcd1) = (vec![T::ZERO; w], vec![T::ZERO; w]);
    let (mut md2, mut mcd2) = (vec![T::ZERO; w], vec![T::ZERO; w]);
    let mut hbuf = vec![T::FAR; 2 * stride];
    let diagonals = prm.paths == Paths::Eight;
    let p1 = T::from_u16(prm.p1);
    let p2t: [T; 256] = p2_table(prm.p1, prm.p2, prm.p2_edge).map(T::from_u16);
    let p2_at = |a: usize, b: usize| p2t[(img[a] as i32 - img[b] as i32).unsigned_abs() as usize];
    let sg: isize = if backward { -1 } else { 1 };
    for yi in 0..h {
        let y = if backward { h - 1 - yi } else { yi };
        let mut hmin = T::ZERO;
        for xi in 0..w {
            let x = if backward { w - 1 - xi } else { xi };
            let p = y * w + x;
            let c = &cost[p * dn..(p + 1) * dn];
            let sp = &mut s[p * dn..(p + 1) * dn];
            let (ha, hb) = hbuf.split_at_mut(stride);
            let (hprev, hout) = if xi % 2 == 0 { (&*ha, hb) } else { (&*hb, ha) };
            let first_col = xi == 0;
            let first_row = yi == 0;
            // Predecessor pixels along each path (offsets against the raster direction).
            let q = |dx: isize, dy: isize| (p as isize - sg * (dy * w as isize + dx)) as usize;
            let start = Prev {
                l: &zero[..],
                min: T::ZERO,
                p2: T::ZERO,
            };
            let hp = if first_col {
                start
            } else {
                Prev {
                    l: hprev,
                    min: hmin,
                    p2: p2_at(p, q(1, 0)),
                }
            };
            let vp = if first_row {
                start
            } else {
                Prev {
                    l: &pv[x * stride..(x + 1) * stride],
                    min: mv[x],
                    p2: p2_at(p, q(0, 1)),
                }
            };
            let vout = &mut cv[x * stride..(x + 1) * stride];
            if diagonals {
                let back_x = (x as isize - sg) as usize; // previous column in raster order
                let fwd_x = (x as isize + sg) as usize; // next column in raster order
                let d1 = if first_row || back_x >= w {
                    start
                } else {
                    Prev {
                        l: &pd1[back_x * stride..(back_x + 1) * stride],
                        min: md1[back_x],
                        p2: p2_at(p, q(1, 1)),
                    }
                };
                let d2 = if first_row || fwd_x >= w {
                    start
                } else {
                    Prev {
                        l: &pd2[fwd_x * stride..(fwd_x + 1) * stride],
                        min: md2[fwd_x],
                        p2: p2_at(p, q(-1, 1)),
                    }
                };
                let d1out = &mut cd1[x * stride..(x + 1) * stride];
                let d2out = &mut cd2[x * stride..(x + 1) * stride];
                let m = kr.four(c, hp, vp, d1, d2, hout, vout, d1out, d2out, sp, p1);
                hmin = m[0];
                mcv[x] = m[1];
                mcd1[x] = m[2];
                mcd2[x] = m[3];
            } else {
                let m = kr.two(c, hp, vp, hout, vout, sp, p1);
                hmin = m[0];
                mcv[x] = m[1];
            }
        }
        std::mem::swap(&mut pv, &mut cv);
        std::mem::swap(&mut mv, &mut mcv);
        std::mem::swap(&mut pd1, &mut cd1);
        std::mem::swap(&mut md1, &mut mcd1);
        std::mem::swap(&mut pd2, &mut cd2);
        std::mem::swap(&mut md2, &mut mcd2);
    }
}

/// Whether the AVX2 versions of the hot loops run on this machine.
pub fn uses_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether path costs fit bytes: L is at most the largest census cost plus P2.
fn fits_u8(prm: &SgmParams) -> bool {
    bits(prm.census_window) + prm.p2 as u32 <= 254
}

#[allow(clippy::too_many_arguments)]
fn aggregate_pass(
    cost: &[u8],
    img: &[u8],
    w: usize,
    h: usize,
    dn: usize,
    prm: &SgmParams,
    backward: bool,
    s: &mut [u16],
) {
    let bytes = fits_u8(prm);
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = Avx2::detect() {
        return if bytes {
            aggregate_pass_impl::<u8, _>(&k, cost, img, w, h, dn, prm, backward, s)
        } else {
            aggregate_pass_impl::<u16, _>(&k, cost, img, w, h, dn, prm, backward, s)
        };
    }
    if bytes {
        aggregate_pass_impl::<u8, _>(&Base, cost, img, w, h, dn, prm, backward, s)
    } else {
        aggregate_pass_impl::<u16, _>(&Base, cost, img, w, h, dn, prm, backward, s)
    }
}

/// Census of both images (32-bit words up to 5x5 windows, else 64-bit) and the cost volume.
pub fn census_costs(
    left: &GrayImage,
    right: &GrayImage,
    window: usize,
    dn: usize,
    cost: &mut Vec<u8>,
) {
    fn with<W: CensusWord>(
        left: &GrayImage,
        right: &GrayImage,
        window: usize,
        dn: usize,
        cost: &mut Vec<u8>,
    ) {
        let (cl, cr) = rayon::join(|| census::<W>(left, window), || census::<W>(right, window));
        cost_volume_into(
            &cl,
            &cr,
            left.width,
            left.height,
            dn,
            bits(window) as u8,
            cost,
        );
    }
    if bits(window) <= u32::BITS {
        with::<u32>(left, right, window, dn, cost)
    } else {
        with::<u64>(left, right, window, dn, cost)
    }
}

/// A semi-global matcher that keeps its working memory (cost volume and two
/// aggregation volumes) between frames, so a video stream does not pay for
/// allocating and page-faulting tens of megabytes per frame.
#[derive(Debug, Default)]
pub struct Sgm {
    /// Parameters.
    pub params: SgmParams,
    cost: Vec<u8>,
    fwd: Vec<u16>,
    bwd: Vec<u16>,
}

impl Sgm {
    /// A matcher with `params`.
    pub fn new(params: SgmParams) -> Result<Self, StereoError> {
        params.validate()?;
        Ok(Self {
            params,
            ..Self::default()
        })
    }

    /// Match a rectified pair: disparity of the left image.
    pub fn match_pair(
        &mut self,
        left: &GrayImage,
        right: &GrayImage,
    ) -> Result<Disparity, StereoError> {
        let prm = self.params;
        prm.validate()?;
        check_pair(left, right, prm.max_disp, prm.census_window)?;
        let (w, h, dn) = (left.width, left.height, prm.max_disp);
        let n = w * h * dn;
        census_costs(left, right, prm.census_window, dn, &mut self.cost);
        self.fwd.resize(n, 0);
        self.bwd.resize(n, 0);
        let (cost, fwd, bwd) = (&self.cost, &mut self.fwd, &mut self.bwd);
        rayon::join(
            || aggregate_pass(cost, &left.data, w, h, dn, &prm, false, fwd),
            || aggregate_pass(cost, &left.data, w, h, dn, &prm, true, bwd),
        );
        let wta = post::winner_take_all(&self.fwd, &self.bwd, w, h, dn, prm.uniqueness);
        let mut disp = post::check_left_right(wta, prm.lr_max_diff);
        post::invalidate_featureless(&mut disp, left, prm.census_window, prm.texture_threshold);
        post::invalidate_border(&mut disp, prm.census_window / 2);
        if prm.speckle_size > 0 {
            post::filter_speckles(&mut disp, prm.speckle_size, prm.speckle_range);
        }
        Ok(disp)
    }
}

/// Full semi-global matching of a rectified pair (a one-off [`Sgm`]).
pub fn match_pair(
    left: &GrayImage,
    right: &GrayImage,
    prm: &SgmParams,
) -> Result<Disparity, StereoError> {
    Sgm::new(*prm)?.match_pair(left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: usize, h: usize, shift: usize) -> GrayImage {
        let mut rng = sim::rng::Rng::new(4);
        let bw = w + 16;
        let base: Vec<u8> = (0..bw * h).map(|_| rng.below(256) as u8).collect();
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .map(|(y, x)| base[y * bw + x + shift])
            .collect();
        GrayImage::new(w, h, data, "left").unwrap()
    }

    #[test]
    fn byte_and_word_kernels_and_instruction_sets_agree_exactly() {
        let (w, h, dn) = (48, 20, 16);
        let (l, r) = (textured(w, h, 5), textured(w, h, 0));
        let prm = SgmParams {
            max_disp: dn,
            ..SgmParams::default()
        };
        assert!(fits_u8(&prm));
        let cost = cost_volume(&census::<u32>(&l, 5), &census::<u32>(&r, 5), w, h, dn, 24);
        for paths in [Paths::Eight, Paths::Four] {
            let prm = SgmParams { paths, ..prm };
            for backward in [false, true] {
                let mut a = vec![0u16; w * h * dn];
                let mut b = vec![0u16; w * h * dn];
                aggregate_pass_impl::<u8, _>(
                    &Base, &cost, &l.data, w, h, dn, &prm, backward, &mut a,
                );
                aggregate_pass_impl::<u16, _>(
                    &Base, &cost, &l.data, w, h, dn, &prm, backward, &mut b,
                );
                assert_eq!(a, b, "{paths:?} backward={backward}");
                #[cfg(target_arch = "x86_64")]
                if let Some(k) = Avx2::detect() {
                    let mut c = vec![0u16; w * h * dn];
                    aggregate_pass_impl::<u8, _>(
                        &k, &cost, &l.data, w, h, dn, &prm, backward, &mut c,
                    );
                    assert_eq!(a, c);
                }
            }
        }
    }

    #[test]
    fn a_shifted_random_texture_is_matched_at_its_shift() {
        let (w, h) = (96, 40);
        let (l, r) = (textured(w, h, 0), textured(w, h, 7));
        // right(x) = base(x + 7) and left(x) = base(x): left pixel x matches right x - 7.
        let d = match_pair(
            &l,
            &r,
            &SgmParams {
                max_disp: 16,
                ..SgmParams::default()
            },
        )
        .unwrap();
        let mut good = 0;
        let mut valid = 0;
        for y in 3..h - 3 {
            for x in 20..w - 3 {
                let i = y * w + x;
                if d.valid[i] {
                    valid += 1;
                    good += ((d.disp[i] - 7.0).abs() < 0.5) as usize;
                }
            }
        }
        assert!(valid > 2000 && good * 100 >= valid * 99, "{good}/{valid}");
    }
}
