//! NEON versions of the hand-written kernels of [`crate::avx2`], for aarch64
//! (every Jetson): the fused path recurrence of semi-global matching on byte
//! costs, one whole row at a time, and the per-pixel steps of the passes (store
//! the sums squeezed, add them back, pick the winner). They work on 16 bytes
//! (or 8 words) at a time and compute exactly what the generic kernels compute:
//! the unit tests compare them, and `stereo simd-check` compares whole
//! disparity maps on the benchmark's pairs (run under qemu-aarch64 in CI).
//!
//! NEON is part of the aarch64 baseline (the `neon` target feature is on for
//! every aarch64 Linux target), so no run-time detection is needed; the module
//! is compiled only where that holds. Rust still asks for `unsafe` around the
//! intrinsics (they are `#[target_feature]` functions): each block says why it
//! holds — NEON is present, and every load and store lies within bounds
//! asserted at the top of its function.

use crate::paths::{Prev, RowJob, walk_row};
use crate::post;
use std::arch::aarch64::*;

/// The recurrence on 16 disparities of one path, given its predecessor's costs
/// at d - 1, d and d + 1: L(d) = C(d) + min(L'(d), min(L'(d-1), L'(d+1)) + P1,
/// min L' + P2) - min L' (byte lanes; the subtraction never wraps below zero,
/// the sum never passes 255: see [`crate::paths`]).
#[inline(always)]
fn step16(
    cd: uint8x16_t,
    [pm, p0, pp]: [uint8x16_t; 3],
    p1: uint8x16_t,
    lim: uint8x16_t,
    min: uint8x16_t,
) -> uint8x16_t {
    // SAFETY: NEON is present (this module's condition); no memory is touched.
    unsafe {
        let near = vqaddq_u8(vminq_u8(pm, pp), p1);
        let best = vminq_u8(vminq_u8(p0, near), lim);
        vaddq_u8(cd, vsubq_u8(best, min))
    }
}

/// `N` paths at one pixel: each path's new costs into `outs[k][1..=D]`, the sum
/// of the paths into `s[..D]`; returns the paths' new minima. D = `c.len()`, a
/// multiple of 16. Path 0 is the one along the row, whose predecessor is the
/// previous pixel's `outs[0]`: its neighbours at d ± 1 are built in registers
/// from the 16-byte chunks that pixel stored (`vext`), never loaded across two
/// stores just made (such loads cannot be forwarded from the store buffer), as
/// the AVX2 kernel does.
#[inline(always)]
fn fused<const N: usize>(
    c: &[u8],
    prev: [Prev<u8>; N],
    outs: [&mut [u8]; N],
    s: &mut [u16],
    p1: u8,
) -> [u8; N] {
    let dn = c.len();
    assert!(dn >= 16 && dn.is_multiple_of(16) && s.len() >= dn);
    for k in 0..N {
        assert!(prev[k].l.len() >= dn + 2 && outs[k].len() >= dn + 2);
    }
    let row = prev[0].l;
    debug_assert!(row[0] == u8::MAX && row[dn + 1] == u8::MAX, "sentinels");
    // SAFETY: NEON is present (this module's condition). d + 16 <= D throughout, so path k reads l[d..d + 18] (and path 0
    // row[d + 17..d + 33] while d + 32 <= D) within its D + 2 bytes, writes
    // out[d + 1..d + 17] within its D + 2, and c[d..d + 16], s[d..d + 16] lie
    // within D (all asserted above). NEON loads and stores need no alignment.
    unsafe {
        let p1v = vdupq_n_u8(p1);
        let far = vdupq_n_u8(u8::MAX);
        let lims: [uint8x16_t; N] =
            std::array::from_fn(|k| vdupq_n_u8(prev[k].min.saturating_add(prev[k].p2)));
        let minv: [uint8x16_t; N] = std::array::from_fn(|k| vdupq_n_u8(prev[k].min));
        let mut acc = [far; N];
        let mut at = vld1q_u8(row.as_ptr().add(1));
        // The sentinels beyond both ends of the range, as in the stored rows.
        let mut before = far;
        let mut d = 0;
        while d < dn {
            let after = if d + 16 < dn {
                vld1q_u8(row.as_ptr().add(d + 17))
            } else {
                far
            };
            let cd = vld1q_u8(c.as_ptr().add(d));
            let mut lo = vdupq_n_u16(0);
            let mut hi = vdupq_n_u16(0);
            for k in 0..N {
                let pred = if k == 0 {
                    [vextq_u8::<15>(before, at), at, vextq_u8::<1>(at, after)]
                } else {
                    let l = prev[k].l.as_ptr().add(d);
                    [vld1q_u8(l), vld1q_u8(l.add(1)), vld1q_u8(l.add(2))]
                };
                let v = step16(cd, pred, p1v, lims[k], minv[k]);
                vst1q_u8(outs[k].as_mut_ptr().add(d + 1), v);
                acc[k] = vminq_u8(acc[k], v);
                lo = vaddw_u8(lo, vget_low_u8(v));
                hi = vaddw_high_u8(hi, v);
            }
            let sp = s.as_mut_ptr().add(d);
            vst1q_u16(sp, lo);
            vst1q_u16(sp.add(8), hi);
            before = at;
            at = after;
            d += 16;
        }
        acc.map(|v| vminvq_u8(v))
    }
}

/// One row of a pass with byte cells and D a multiple of 16: every pixel's
/// [`fused`] and `each` inlined into one loop.
pub(crate) fn row(job: RowJob<u8>, each: &mut impl FnMut(usize, &mut [u16])) {
    let p1 = job.p1;
    walk_row(
        job,
        |c, p, o, s| fused(c, p, o, s, p1),
        |c, p, o, s| fused(c, p, o, s, p1),
        each,
    )
}

/// Lane numbers of an 8-word vector.
const LANES: [u16; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// [`crate::pass`]'s squeeze, 8 sums at a time: store one pixel's sums as their
/// minimum (returned) and byte excesses over it, saturated at 255.
pub(crate) fn squeeze(sums: &[u16], excess: &mut [u8]) -> u16 {
    let dn = sums.len();
    assert!(dn.is_multiple_of(8) && excess.len() >= dn);
    // SAFETY: NEON is present (this module's condition); every load reads
    // sums[d..d + 8] and every store writes
    // excess[d..d + 8] with d + 8 <= D, within both slices (asserted above).
    unsafe {
        let at = |d: usize| vld1q_u16(sums.as_ptr().add(d));
        let mut minv = vdupq_n_u16(u16::MAX);
        for d in (0..dn).step_by(8) {
            minv = vminq_u16(minv, at(d));
        }
        let m = vminvq_u16(minv);
        let mv = vdupq_n_u16(m);
        for d in (0..dn).step_by(8) {
            // Every sum is at least m; the narrowing saturates at 255.
            vst1_u8(excess.as_mut_ptr().add(d), vqmovn_u16(vsubq_u16(at(d), mv)));
        }
        m
    }
}

/// [`crate::pass`]'s unsqueeze, 8 sums at a time: this pixel's `sums` plus the
/// other pass's stored sums (byte `excess` over `base`) into `out`, `u16::MAX`
/// from `n_valid` on; returns their minimum.
pub(crate) fn unsqueeze(
    sums: &[u16],
    (excess, base): (&[u8], u16),
    n_valid: usize,
    out: &mut [u16],
) -> u16 {
    let dn = sums.len();
    assert!(dn.is_multiple_of(8) && excess.len() >= dn && out.len() >= dn);
    assert!(dn < u16::MAX as usize);
    // SAFETY: NEON is present (this module's condition); every load and store touches sums[d..d + 8], excess[d..d + 8] or
    // out[d..d + 8] with d + 8 <= D, within all three slices (asserted above);
    // LANES holds 8 words.
    unsafe {
        // Lane indices and n_valid (at most D) fit u16 (asserted above).
        let nv = vdupq_n_u16(n_valid.min(dn) as u16);
        let basev = vdupq_n_u16(base);
        let lanes = vld1q_u16(LANES.as_ptr());
        let mut minv = vdupq_n_u16(u16::MAX);
        for d in (0..dn).step_by(8) {
            let e = vmovl_u8(vld1_u8(excess.as_ptr().add(d)));
            let mine = vld1q_u16(sums.as_ptr().add(d));
            let v = vaddq_u16(mine, vaddq_u16(e, basev));
            // Lanes at or beyond n_valid become u16::MAX.
            let index = vaddq_u16(lanes, vdupq_n_u16(d as u16));
            let v = vorrq_u16(v, vmvnq_u16(vcltq_u16(index, nv)));
            vst1q_u16(out.as_mut_ptr().add(d), v);
            minv = vminq_u16(minv, v);
        }
        vminvq_u16(minv)
    }
}

/// [`crate::post::pick`] of total costs `s` whose minimum is `best`, 8 at a
/// time. The same result as the generic code, bit for bit (unit test).
pub(crate) fn pick(s: &[u16], best: u16, n_valid: usize, keep: f32) -> post::Pick {
    let dn = s.len();
    assert!(dn.is_multiple_of(8) && dn < i16::MAX as usize - 2);
    // SAFETY: NEON is present (this module's condition); every load reads
    // s[d..d + 8] with d + 8 <= D (asserted above);
    // LANES holds 8 words. Lane indices fit i16.
    unsafe {
        let at = |d: usize| vld1q_u16(s.as_ptr().add(d));
        let lanes = vld1q_u16(LANES.as_ptr());
        let none = vdupq_n_u16(u16::MAX);
        let bv = vdupq_n_u16(best);
        // The first disparity at the best cost: the smallest lane index whose
        // cost equals it (0 when none does, as the generic code).
        let mut bd = 0;
        for d in (0..dn).step_by(8) {
            let hit = vceqq_u16(at(d), bv);
            if vmaxvq_u16(hit) != 0 {
                bd = d + usize::from(vminvq_u16(vbslq_u16(hit, lanes, none)));
                break;
            }
        }
        // The cheapest disparity further than one from the best.
        let (lo, hi) = (vdupq_n_s16(bd as i16 - 2), vdupq_n_s16(bd as i16 + 2));
        let slanes = vreinterpretq_s16_u16(lanes);
        let mut sec = none;
        for d in (0..dn).step_by(8) {
            let i = vaddq_s16(slanes, vdupq_n_s16(d as i16));
            let near = vandq_u16(vcgtq_s16(i, lo), vcgtq_s16(hi, i));
            sec = vminq_u16(sec, vorrq_u16(at(d), near));
        }
        let margin = post::margin(best, vminvq_u16(sec), n_valid, keep);
        post::refine(s, best, bd, margin)
    }
}
