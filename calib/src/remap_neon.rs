//! The fixed-point remap's window kernel for aarch64 (NEON, present on every
//! AArch64 core): the design of the AVX2 window kernel (see `remap_avx2`) —
//! three 16-byte row loads and four table lookups (`tbl`, whose out-of-range
//! indices give 0, as `pshufb`'s 0x80 does) fetch the 2 x 2 sources of eight
//! pixels, blended in 32-bit lanes with the scalar loop's integer arithmetic,
//! so the output is bit-identical. NEON has no gather: groups that fit no
//! window take the scalar loop.
#![allow(unsafe_code)]

use crate::rectify::Window;
use std::arch::aarch64::*;

/// Remaps `out.len()` pixels (a multiple of 8), one [`Window`] per group of 8,
/// with packed weights (`fx | fy << 16`) `weight`.
///
/// # Safety
/// Every window satisfies `base + 2 * w + 16 <= src.len()` (three 16-byte
/// reads at `base`, `base + w`, `base + 2w`).
pub(crate) unsafe fn run_windows(
    src: &[u8],
    w: usize,
    windows: &[Window],
    weight: &[u32],
    out: &mut [u8],
) {
    assert!(
        weight.len() == out.len() && out.len() == 8 * windows.len(),
        "window kernel: weight, output and window counts differ"
    );
    let base = src.as_ptr();
    for (g, win) in windows.iter().enumerate() {
        let k = 8 * g;
        // SAFETY: k + 8 <= len for weight and out (checked above); the three
        // row reads stay inside src by the caller's guarantee on every window.
        unsafe {
            let p = base.add(win.base as usize);
            let r0 = vld1q_u8(p);
            let r1 = vld1q_u8(p.add(w));
            let r2 = vld1q_u8(p.add(2 * w));
            let m0 = vld1q_u8(win.pick[0].as_ptr());
            let m1 = vld1q_u8(win.pick[1].as_ptr());
            // Bytes 0..8: the left sources of the 8 pixels, 8..16: the right.
            let top = vorrq_u8(vqtbl1q_u8(r0, m0), vqtbl1q_u8(r1, m1));
            let bot = vorrq_u8(vqtbl1q_u8(r1, m0), vqtbl1q_u8(r2, m1));
            let (a, b) = (vmovl_u8(vget_low_u8(top)), vmovl_u8(vget_high_u8(top)));
            let (c, d) = (vmovl_u8(vget_low_u8(bot)), vmovl_u8(vget_high_u8(bot)));
            let lo = blend4(
                vget_low_u16(a),
                vget_low_u16(b),
                vget_low_u16(c),
                vget_low_u16(d),
                vld1q_u32(weight.as_ptr().add(k)),
            );
            let hi = blend4(
                vget_high_u16(a),
                vget_high_u16(b),
                vget_high_u16(c),
                vget_high_u16(d),
                vld1q_u32(weight.as_ptr().add(k + 4)),
            );
            // Each lane holds 0..=255: narrowing keeps it.
            vst1_u8(out.as_mut_ptr().add(k), vmovn_u16(vcombine_u16(lo, hi)));
        }
    }
}

/// The scalar loop's blend of four pixels (sources `a`..`d` in 0..=255,
/// weights `fx | fy << 16`), as 16-bit lanes.
#[inline]
fn blend4(
    a: uint16x4_t,
    b: uint16x4_t,
    c: uint16x4_t,
    d: uint16x4_t,
    wt: uint32x4_t,
) -> uint16x4_t {
    // SAFETY: NEON is part of every AArch64 target; these are register-only
    // operations.
    unsafe {
        let s = |v: uint16x4_t| vreinterpretq_s32_u32(vmovl_u16(v));
        let (a, b, c, d) = (s(a), s(b), s(c), s(d));
        let fx = vreinterpretq_s32_u32(vandq_u32(wt, vdupq_n_u32(0xffff)));
        let fy = vreinterpretq_s32_u32(vshrq_n_u32::<16>(wt));
        let t = vaddq_s32(vshlq_n_s32::<8>(a), vmulq_s32(vsubq_s32(b, a), fx));
        let u = vaddq_s32(vshlq_n_s32::<8>(c), vmulq_s32(vsubq_s32(d, c), fx));
        let r = vaddq_s32(vshlq_n_s32::<8>(t), vmulq_s32(vsubq_s32(u, t), fy));
        let r = vshrq_n_s32::<16>(vaddq_s32(r, vdupq_n_s32(32768)));
        vmovn_u32(vreinterpretq_u32_s32(r))
    }
}
