//! Matching costs: Hamming distances between the census strings of a left pixel
//! and the right pixels it may match, computed per row as the matchers need them
//! ([`CensusPair`]), and the whole volume as a test reference.

use crate::census::{CensusWord, bits, census};
use crate::image::GrayImage;
use rayon::prelude::*;

/// Costs of one row: `rev` is the right image's census row reversed, so that
/// r(x - d) runs forwards in d.
#[inline(always)]
fn cost_row<W: CensusWord>(l: &[W], rev: &[W], dmax: usize, max_cost: u8, row: &mut [u8]) {
    let w = l.len();
    for x in 0..w {
        let out = &mut row[x * dmax..(x + 1) * dmax];
        let lv = l[x];
        let start = w - 1 - x;
        if x + 1 >= dmax {
            // Every disparity inside the image: fixed 16-wide chunks, no remainder
            // loops or length checks in the common case.
            let rs = &rev[start..start + dmax];
            let mut chunks = out.chunks_exact_mut(16);
            let mut rchunks = rs.chunks_exact(16);
            for (o, r) in (&mut chunks).zip(&mut rchunks) {
                for k in 0..16 {
                    o[k] = lv.hamming(r[k]);
                }
            }
            for (o, &rv) in chunks.into_remainder().iter_mut().zip(rchunks.remainder()) {
                *o = lv.hamming(rv);
            }
            continue;
        }
        let n = x + 1;
        for (o, &rv) in out[..n].iter_mut().zip(&rev[start..start + n]) {
            *o = lv.hamming(rv);
        }
        out[n..].fill(max_cost);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn cost_row_avx2<W: CensusWord>(l: &[W], rev: &[W], dmax: usize, max_cost: u8, row: &mut [u8]) {
    cost_row(l, rev, dmax, max_cost, row)
}

/// [`cost_row`] where the CPU counts bits in vector lanes (AVX-512 VPOPCNTDQ):
/// without it, a vector popcount takes a table lookup per nibble.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt")]
fn cost_row_avx512<W: CensusWord>(l: &[W], rev: &[W], dmax: usize, max_cost: u8, row: &mut [u8]) {
    cost_row(l, rev, dmax, max_cost, row)
}

/// Which cost kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CostIsa {
    Base,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl CostIsa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if crate::sgm::simd() == crate::sgm::Simd::Avx2 {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512vpopcntdq")
                && has!("avx2")
                && has!("popcnt")
            {
                return CostIsa::Avx512;
            }
            if has!("avx2") && has!("popcnt") {
                return CostIsa::Avx2;
            }
        }
        CostIsa::Base
    }
}

/// The census strings of a pair, from which the matching costs of any row are
/// computed when a pass needs them: cheaper than reading a stored cost volume
/// (tens of megabytes at 640x480) from memory twice.
pub struct CensusPair<W: CensusWord> {
    left: Vec<W>,
    /// The right image's rows, each reversed.
    right_rev: Vec<W>,
    pub(crate) width: usize,
    pub(crate) dn: usize,
    max_cost: u8,
    isa: CostIsa,
}

impl<W: CensusWord> CensusPair<W> {
    /// Census both images with a `window` x `window` neighbourhood, for `dn` disparities.
    pub fn new(left: &GrayImage, right: &GrayImage, window: usize, dn: usize) -> Self {
        let (l, mut r) = rayon::join(|| census::<W>(left, window), || census::<W>(right, window));
        let w = left.width;
        for row in r.chunks_exact_mut(w) {
            row.reverse();
        }
        Self {
            left: l,
            right_rev: r,
            width: w,
            dn,
            max_cost: bits(window) as u8,
            isa: CostIsa::detect(),
        }
    }

    /// Costs C(x, d) of row `y` into `out` (`width x dn`, pixel-major); disparities
    /// beyond the left border cost the maximum.
    pub fn row(&self, y: usize, out: &mut [u8]) {
        let w = self.width;
        let (l, r) = (
            &self.left[y * w..(y + 1) * w],
            &self.right_rev[y * w..(y + 1) * w],
        );
        match self.isa {
            // SAFETY: `CostIsa::detect` found every feature `cost_row_avx512` enables
            // on this CPU; its body is safe Rust.
            #[cfg(target_arch = "x86_64")]
            CostIsa::Avx512 => unsafe { cost_row_avx512(l, r, self.dn, self.max_cost, out) },
            // SAFETY: as above, AVX2 and POPCNT for `cost_row_avx2`.
            #[cfg(target_arch = "x86_64")]
            CostIsa::Avx2 => unsafe { cost_row_avx2(l, r, self.dn, self.max_cost, out) },
            CostIsa::Base => cost_row(l, r, self.dn, self.max_cost, out),
        }
    }
}

/// The whole cost volume [y][x][d] of census Hamming distances (disparities beyond
/// the left border cost the maximum), computed the plain way: the reference the
/// per-row costs of [`CensusPair`] are tested against. The matchers never store it.
pub fn cost_volume<W: CensusWord>(
    cl: &[W],
    cr: &[W],
    w: usize,
    h: usize,
    dmax: usize,
    max_cost: u8,
) -> Vec<u8> {
    let mut c = vec![0; w * h * dmax];
    c.par_chunks_mut(w * dmax).enumerate().for_each(|(y, row)| {
        let l = &cl[y * w..(y + 1) * w];
        let rev: Vec<W> = cr[y * w..(y + 1) * w].iter().rev().copied().collect();
        cost_row(l, &rev, dmax, max_cost, row)
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgm::tests::textured;

    #[test]
    fn costs_computed_per_row_equal_the_cost_volume() {
        let (w, h, dn) = (40, 9, 16);
        let (l, r) = (textured(w, h, 3), textured(w, h, 0));
        let volume = cost_volume(&census::<u32>(&l, 5), &census::<u32>(&r, 5), w, h, dn, 24);
        let pair = CensusPair::<u32>::new(&l, &r, 5, dn);
        let mut row = vec![0u8; w * dn];
        for y in 0..h {
            pair.row(y, &mut row);
            assert_eq!(row, volume[y * w * dn..(y + 1) * w * dn], "row {y}");
        }
    }
}
