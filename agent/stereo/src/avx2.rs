//! Hand-written AVX2 versions of the two hottest loops, for byte path costs:
//! the fused path recurrence of semi-global matching and the sum of its paths.
//! The compiler's own vectorisation of the generic kernels uses 16-byte vectors
//! (the loop mixes byte and word lanes); these work on 32 bytes at a time. They
//! compute exactly what the generic kernels compute (a unit test compares them).
//!
//! Every function here requires AVX2 and is only reached through
//! [`crate::sgm`]'s `Avx2` kernel, a value of which exists only after AVX2 was
//! detected on the running CPU.

use crate::paths::{Prev, RowJob, walk_row};
use std::arch::x86_64::*;

/// One path's predecessor costs (length D + 2, sentinels at both ends), their
/// minimum, and the P2 that applies.
#[derive(Clone, Copy)]
pub(crate) struct PrevU8<'a> {
    pub l: &'a [u8],
    pub min: u8,
    pub p2: u8,
}

/// The recurrence on 32 disparities of one path, given its predecessor's costs at
/// d - 1, d and d + 1: L(d) = C(d) + min(L'(d), min(L'(d-1), L'(d+1)) + P1,
/// min L' + P2) - min L'.
#[target_feature(enable = "avx2")]
#[inline]
fn step32(
    cd: __m256i,
    [pm, p0, pp]: [__m256i; 3],
    p1: __m256i,
    lim: __m256i,
    min: __m256i,
) -> __m256i {
    let near = _mm256_adds_epu8(_mm256_min_epu8(pm, pp), p1);
    let best = _mm256_min_epu8(_mm256_min_epu8(p0, near), lim);
    _mm256_add_epi8(cd, _mm256_sub_epi8(best, min))
}

/// A path's predecessor costs at d - 1, d, d + 1 for the 32 disparities from `d`,
/// read from memory.
///
/// # Safety
/// AVX2 must be available and `l` must hold `d + 34` bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn loaded(l: &[u8], d: usize) -> [__m256i; 3] {
    debug_assert!(l.len() >= d + 34);
    // SAFETY: the caller guarantees l[d..d + 34]; unaligned loads.
    unsafe {
        let base = l.as_ptr().add(d);
        [
            _mm256_loadu_si256(base as *const __m256i),
            _mm256_loadu_si256(base.add(1) as *const __m256i),
            _mm256_loadu_si256(base.add(2) as *const __m256i),
        ]
    }
}

/// A path's predecessor costs at d - 1, d, d + 1 built in registers from the
/// aligned 32-byte chunks before, at and after d. The horizontal path's predecessor
/// was written by the previous pixel moments ago: loads that straddle those stores
/// cannot be forwarded from the store buffer and stall, loads of exactly the stored
/// chunks can.
#[target_feature(enable = "avx2")]
#[inline]
fn shifted(before: __m256i, at: __m256i, after: __m256i) -> [__m256i; 3] {
    let low = _mm256_permute2x128_si256(before, at, 0x21);
    let high = _mm256_permute2x128_si256(at, after, 0x21);
    [
        _mm256_alignr_epi8(at, low, 15),
        at,
        _mm256_alignr_epi8(high, at, 1),
    ]
}

/// Smallest byte of a vector.
#[target_feature(enable = "avx2")]
#[inline]
fn hmin(v: __m256i) -> u8 {
    let m = _mm_min_epu8(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let m = _mm_min_epu8(m, _mm_srli_si128(m, 8));
    let m = _mm_min_epu8(m, _mm_srli_si128(m, 4));
    let m = _mm_min_epu8(m, _mm_srli_si128(m, 2));
    let m = _mm_min_epu8(m, _mm_srli_si128(m, 1));
    _mm_cvtsi128_si32(m) as u8
}

/// `N` paths at one pixel: each path's new costs into `outs[k][1..=D]`, the sum of
/// the paths into `s[..D]`; returns the paths' new minima. D = `c.len()`, a
/// multiple of 32. Path 0 is the one along the row, whose predecessor is the
/// previous pixel's `outs[0]`.
///
/// Always inlined, and not itself marked for AVX2 (Rust does not allow both): it
/// is meant to be inlined into a function compiled for AVX2 ([`row`]), where its
/// intrinsics compile to AVX2 instructions. (As an AVX2 function of its own, the
/// compiler stopped inlining it once [`row`] grew, and a call per pixel cost 15 %.)
///
/// # Safety
/// AVX2 must be available, and the caller must be compiled with AVX2 enabled.
#[inline(always)]
pub(crate) unsafe fn fused<const N: usize>(
    c: &[u8],
    prev: [PrevU8; N],
    outs: [&mut [u8]; N],
    s: &mut [u16],
    p1: u8,
) -> [u8; N] {
    let dn = c.len();
    assert!(dn.is_multiple_of(32) && s.len() >= dn);
    for k in 0..N {
        assert!(prev[k].l.len() >= dn + 2 && outs[k].len() >= dn + 2);
    }
    // SAFETY: AVX2 is available (the caller's guarantee), which is all the
    // intrinsics need; the loads and stores: d + 32 <= D, so path k reads
    // l[d..d + 34] (and row[d + 1..d + 65] while d + 64 <= D) within its D + 2
    // bytes, writes out[d + 1..d + 33] within its D + 2, and c[d..d + 32],
    // s[d..d + 32] lie within D (all asserted above).
    unsafe {
        let p1v = _mm256_set1_epi8(p1 as i8);
        let far = _mm256_set1_epi8(-1);
        let lims: [__m256i; N] =
            std::array::from_fn(|k| _mm256_set1_epi8(prev[k].min.saturating_add(prev[k].p2) as i8));
        let minv: [__m256i; N] = std::array::from_fn(|k| _mm256_set1_epi8(prev[k].min as i8));
        let mut acc = [far; N];
        let row = prev[0].l;
        let mut at = _mm256_loadu_si256(row.as_ptr().add(1) as *const __m256i);
        let mut before = far;
        let mut d = 0;
        while d < dn {
            let after = if d + 32 < dn {
                _mm256_loadu_si256(row.as_ptr().add(d + 33) as *const __m256i)
            } else {
                far
            };
            let cd = _mm256_loadu_si256(c.as_ptr().add(d) as *const __m256i);
            let mut lo = _mm256_setzero_si256();
            let mut hi = _mm256_setzero_si256();
            for k in 0..N {
                let pred = if k == 0 {
                    shifted(before, at, after)
                } else {
                    loaded(prev[k].l, d)
                };
                let v = step32(cd, pred, p1v, lims[k], minv[k]);
                _mm256_storeu_si256(outs[k].as_mut_ptr().add(d + 1) as *mut __m256i, v);
                acc[k] = _mm256_min_epu8(acc[k], v);
                lo = _mm256_add_epi16(lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)));
                hi = _mm256_add_epi16(hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1)));
            }
            let sp = s.as_mut_ptr().add(d);
            _mm256_storeu_si256(sp as *mut __m256i, lo);
            _mm256_storeu_si256(sp.add(16) as *mut __m256i, hi);
            before = at;
            at = after;
            d += 32;
        }
        acc.map(|v| hmin(v))
    }
}

impl<'a> From<Prev<'a, u8>> for PrevU8<'a> {
    fn from(p: Prev<'a, u8>) -> Self {
        PrevU8 {
            l: p.l,
            min: p.min,
            p2: p.p2,
        }
    }
}

/// One row of a pass with byte cells and D a multiple of 32, every pixel's
/// [`fused`] and `each` inlined into one loop, compiled for AVX2 (the per-pixel
/// calls cost a fifth of the pass at 320x240).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn row(job: RowJob<u8>, each: &mut impl FnMut(usize, &mut [u16])) {
    let p1 = job.p1;
    walk_row(
        job,
        // SAFETY (both): AVX2 is available, this function's own requirement.
        |c, p, o, s| unsafe { fused(c, p.map(PrevU8::from), o, s, p1) },
        |c, p, o, s| unsafe { fused(c, p.map(PrevU8::from), o, s, p1) },
        each,
    )
}

/// Smallest u16 of a vector.
#[target_feature(enable = "avx2")]
#[inline]
fn hmin16(v: __m256i) -> u16 {
    let m = _mm_min_epu16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_cvtsi128_si32(_mm_minpos_epu16(m)) as u16
}

/// [`crate::pass`]'s squeeze on 16 sums at a time: store one pixel's sums as their
/// minimum (returned) and byte excesses over it, saturated at 255.
///
/// Compiled for AVX2 itself (unlike [`fused`], which only the row kernel calls):
/// it is called from the closures of the passes, which the compiler may or may
/// not inline into the AVX2 row kernel, and its intrinsics must be inlined
/// either way.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn squeeze(sums: &[u16], excess: &mut [u8]) -> u16 {
    let dn = sums.len();
    assert!(dn.is_multiple_of(16) && excess.len() >= dn);
    // SAFETY: AVX2 is available (the caller's guarantee); every load reads
    // sums[d..d + 16] and every store writes excess[d..d + 16] or [d..d + 32]
    // with d + 16 <= D, resp. d + 32 <= D, within both slices (asserted above).
    unsafe {
        let at = |d: usize| _mm256_loadu_si256(sums.as_ptr().add(d) as *const __m256i);
        let mut minv = _mm256_set1_epi16(-1);
        for d in (0..dn).step_by(16) {
            minv = _mm256_min_epu16(minv, at(d));
        }
        let m = hmin16(minv);
        let (mv, cap) = (_mm256_set1_epi16(m as i16), _mm256_set1_epi16(255));
        let over = |d: usize| _mm256_min_epu16(_mm256_sub_epi16(at(d), mv), cap);
        let out = excess.as_mut_ptr();
        let mut d = 0;
        while d + 32 <= dn {
            // packus interleaves the two vectors' 128-bit halves; put them back in order.
            let packed = _mm256_packus_epi16(over(d), over(d + 16));
            let ordered = _mm256_permute4x64_epi64(packed, 0b11_01_10_00);
            _mm256_storeu_si256(out.add(d) as *mut __m256i, ordered);
            d += 32;
        }
        if d < dn {
            let v = over(d);
            let packed =
                _mm_packus_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storeu_si128(out.add(d) as *mut __m128i, packed);
        }
        m
    }
}

/// [`crate::pass`]'s unsqueeze, 16 sums at a time: this pixel's `sums` plus the
/// other pass's stored sums (byte `excess` over `base`) into `out`, `u16::MAX`
/// from `n_valid` on; returns their minimum.
///
/// Compiled for AVX2 itself, as [`squeeze`].
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn unsqueeze(
    sums: &[u16],
    (excess, base): (&[u8], u16),
    n_valid: usize,
    out: &mut [u16],
) -> u16 {
    let dn = sums.len();
    assert!(dn.is_multiple_of(16) && excess.len() >= dn && out.len() >= dn);
    assert!(dn < i16::MAX as usize);
    // SAFETY: AVX2 is available (the caller's guarantee); every load and store
    // touches sums[d..d + 16], excess[d..d + 16] or out[d..d + 16] with
    // d + 16 <= D, within all three slices (asserted above). Lane indices fit i16.
    unsafe {
        let lanes = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let all = _mm256_set1_epi16(-1);
        let (basev, nv) = (
            _mm256_set1_epi16(base as i16),
            _mm256_set1_epi16(n_valid as i16),
        );
        let mut minv = all;
        for d in (0..dn).step_by(16) {
            let e = _mm256_cvtepu8_epi16(_mm_loadu_si128(excess.as_ptr().add(d) as *const __m128i));
            let mine = _mm256_loadu_si256(sums.as_ptr().add(d) as *const __m256i);
            let v = _mm256_add_epi16(mine, _mm256_add_epi16(e, basev));
            // Lanes at or beyond n_valid become u16::MAX.
            let index = _mm256_add_epi16(lanes, _mm256_set1_epi16(d as i16));
            let v = _mm256_or_si256(v, _mm256_andnot_si256(_mm256_cmpgt_epi16(nv, index), all));
            _mm256_storeu_si256(out.as_mut_ptr().add(d) as *mut __m256i, v);
            minv = _mm256_min_epu16(minv, v);
        }
        hmin16(minv)
    }
}

/// [`crate::post::pick`] of total costs `s` whose minimum is `best`, 16 at a
/// time. The same result as the generic code, bit for bit (unit test).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn pick(s: &[u16], best: u16, n_valid: usize, keep: f32) -> crate::post::Pick {
    let dn = s.len();
    assert!(dn.is_multiple_of(16) && dn < i16::MAX as usize - 2);
    // SAFETY: AVX2 is available (the caller's guarantee); every load reads
    // s[d..d + 16] with d + 16 <= D (asserted above). Lane indices fit i16.
    unsafe {
        let at = |d: usize| _mm256_loadu_si256(s.as_ptr().add(d) as *const __m256i);
        let lanes = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let bv = _mm256_set1_epi16(best as i16);
        let mut bd = 0;
        for d in (0..dn).step_by(16) {
            let hit = _mm256_movemask_epi8(_mm256_cmpeq_epi16(at(d), bv)) as u32;
            if hit != 0 {
                bd = d + hit.trailing_zeros() as usize / 2;
                break;
            }
        }
        // The cheapest disparity further than one from the best.
        let (lo, hi) = (
            _mm256_set1_epi16(bd as i16 - 2),
            _mm256_set1_epi16(bd as i16 + 2),
        );
        let mut sec = _mm256_set1_epi16(-1);
        for d in (0..dn).step_by(16) {
            let i = _mm256_add_epi16(lanes, _mm256_set1_epi16(d as i16));
            let near = _mm256_and_si256(_mm256_cmpgt_epi16(i, lo), _mm256_cmpgt_epi16(hi, i));
            sec = _mm256_min_epu16(sec, _mm256_or_si256(at(d), near));
        }
        let margin = crate::post::margin(best, hmin16(sec), n_valid, keep);
        crate::post::refine(s, best, bd, margin)
    }
}
