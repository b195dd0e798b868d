//! Stereo depth, the robot's trusted cue.
//!
//! Input: a rectified 8-bit stereo pair. Output: a disparity map with sub-pixel
//! precision and a validity mask ([`Disparity`]), depth via f·B/d or a Q matrix,
//! and the compact obstacle features the controllers use ([`features`]).
//!
//! Two matchers share the census transform: semi-global matching ([`sgm`], 8 or 4
//! paths) and a fast block matcher ([`bm`]) for the lowest-power path. Hot loops
//! are written so the compiler vectorises them; on x86-64 they are compiled a
//! second time for AVX2 (and the cost rows for AVX-512 with vector popcount) and
//! picked at run time when the CPU has it; the path recurrence on bytes and the
//! per-pixel steps of the passes have hand-written AVX2 and NEON (aarch64)
//! kernels ([`sgm::simd`] says which run), equal bit for bit to the generic code. [`eval`] scores disparity maps against ground truth,
//! on real Middlebury pairs among others.

// The SIMD kernels (`avx2`, `neon`, the run-time dispatch, the `target_feature`
// rows of `census`, `costs`, `paths` and `pass`) are this crate's unsafe code.
#![allow(unsafe_code)]

/// `$vis fn $name(args)` runs the plain function `$plain` with the same arguments,
/// compiled a second time for AVX2 and taken when the CPU has it (the compiler
/// vectorises the loop of the plain function with the wider registers).
macro_rules! with_avx2 {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $plain:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn fast($($arg: $ty),*) {
                    $plain($($arg),*)
                }
                if crate::sgm::uses_avx2() {
                    // SAFETY: AVX2 was detected on this CPU, the only requirement of
                    // `fast`, whose body is safe Rust.
                    unsafe { fast($($arg),*) };
                    return;
                }
            }
            $plain($($arg),*)
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod bm;
pub mod census;
pub mod costs;
pub mod eval;
pub mod features;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod image;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;
mod pass;
mod paths;
pub mod post;
pub mod sgm;

pub use image::{Disparity, GrayImage, StereoError};
pub use sgm::{Paths, Sgm, SgmParams, Simd};
