//! A tileable procedural texture shared by every surface.
//!
//! Value noise in three octaves on a 256x256 tile, normalised to [0, 1]. Surfaces
//! sample it at their own offset and scale, so stereo matching sees texture
//! everywhere and the same world point always has the same brightness in both eyes.

use crate::rng::Rng;

/// Side of the square tile in texels.
pub const TILE: usize = 256;
/// Texels per feature of the coarsest octave; a context's `texture_frequency`
/// counts these features per metre.
pub const TEXELS_PER_FEATURE: f32 = 16.0;

/// The shared noise tile.
#[derive(Debug, Clone)]
pub struct Texture {
    texels: Vec<f32>,
    /// For every texel of every mip level, its own value and those of its right,
    /// lower and lower-right neighbours as four bytes, so a bilinear sample is one
    /// load. Level l is a (256 >> l)² tile of 2^l x 2^l box averages, stored at
    /// offset `level_start[l]`.
    quads: Vec<u32>,
    level_start: [usize; MIP_LEVELS],
}

/// Number of mip levels (256² down to 8²).
pub const MIP_LEVELS: usize = 6;

fn lattice(rng: &mut Rng, period: usize) -> Vec<f32> {
    let n = TILE / period;
    (0..n * n).map(|_| rng.uniform_f32()).collect()
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

impl Texture {
    /// Build the tile from a seed.
    pub fn new(seed: u64) -> Texture {
        let mut rng = Rng::new(seed ^ 0x7e57_u64);
        let mut texels = vec![0.0f32; TILE * TILE];
        for (period, amp) in [(16usize, 0.5f32), (8, 0.3), (4, 0.2)] {
            let n = TILE / period;
            let lat = lattice(&mut rng, period);
            for y in 0..TILE {
                let gy = y / period;
                let fy = smooth((y % period) as f32 / period as f32);
                for x in 0..TILE {
                    let gx = x / period;
                    let fx = smooth((x % period) as f32 / period as f32);
                    let v00 = lat[gy * n + gx];
                    let v10 = lat[gy * n + (gx + 1) % n];
                    let v01 = lat[((gy + 1) % n) * n + gx];
                    let v11 = lat[((gy + 1) % n) * n + (gx + 1) % n];
                    let a = v00 + (v10 - v00) * fx;
                    let b = v01 + (v11 - v01) * fx;
                    texels[y * TILE + x] += amp * (a + (b - a) * fy);
                }
            }
        }
        let (lo, hi) = texels
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let span = (hi - lo).max(1e-6);
        for v in texels.iter_mut() {
            *v = (*v - lo) / span;
        }
        // Mip chain by 2x2 box averaging (wrapping), then packed quads per level.
        let mut levels = vec![texels.clone()];
        for l in 1..MIP_LEVELS {
            let prev = &levels[l - 1];
            let ps = TILE >> (l - 1);
            let sz = TILE >> l;
            let mut next = vec![0.0f32; sz * sz];
            for y in 0..sz {
                for x in 0..sz {
                    let at = |xx: usize, yy: usize| prev[(yy % ps) * ps + (xx % ps)];
                    next[y * sz + x] = 0.25
                        * (at(2 * x, 2 * y)
                            + at(2 * x + 1, 2 * y)
                            + at(2 * x, 2 * y + 1)
                            + at(2 * x + 1, 2 * y + 1));
                }
            }
            levels.push(next);
        }
        let mut quads = Vec::new();
        let mut level_start = [0usize; MIP_LEVELS];
        for (l, lv) in levels.iter().enumerate() {
            level_start[l] = quads.len();
            let sz = TILE >> l;
            let byte = |x: usize, y: usize| (lv[(y % sz) * sz + (x % sz)] * 255.0).round() as u32;
            quads.extend((0..sz * sz).map(|i| {
                let (x, y) = (i % sz, i / sz);
                byte(x, y) | byte(x + 1, y) << 8 | byte(x, y + 1) << 16 | byte(x + 1, y + 1) << 24
            }));
        }
        Texture {
            texels,
            quads,
            level_start,
        }
    }

    /// The exact value of texel (x, y), wrapping.
    pub fn texel(&self, x: i64, y: i64) -> f32 {
        self.texels
            [(y.rem_euclid(TILE as i64) as usize) * TILE + x.rem_euclid(TILE as i64) as usize]
    }

    /// Bilinear sample at texel coordinates (wrapping), in [0, 1].
    #[inline]
    pub fn sample(&self, u: f32, v: f32) -> f32 {
        self.sample_raw(u, v) * (1.0 / 255.0)
    }

    /// Bilinear sample at texel coordinates (wrapping), in [0, 255].
    #[inline]
    pub fn sample_raw(&self, u: f32, v: f32) -> f32 {
        self.sample_level(u, v, 0)
    }

    /// Bilinear sample at level-0 texel coordinates from mip level `level`
    /// (clamped to the chain), in [0, 255]. Use the level whose texels are about
    /// one pixel wide so that distant surfaces neither alias nor thrash the cache.
    #[inline]
    pub fn sample_level(&self, u: f32, v: f32, level: usize) -> f32 {
        const SCALE: [f32; MIP_LEVELS] = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125];
        let level = level.min(MIP_LEVELS - 1);
        let scale = SCALE[level];
        let (u, v) = (u * scale, v * scale);
        let mask = (TILE >> level) - 1;
        // Floor without a libm call (baseline x86-64 has no rounding instruction).
        let iu = u as i32;
        let iu = iu - ((iu as f32) > u) as i32;
        let iv = v as i32;
        let iv = iv - ((iv as f32) > v) as i32;
        let (du, dv) = (u - iu as f32, v - iv as f32);
        let idx =
            self.level_start[level] + ((iv as usize) & mask) * (mask + 1) + ((iu as usize) & mask);
        let q = self.quads[idx];
        let t00 = (q & 0xff) as f32;
        let t10 = ((q >> 8) & 0xff) as f32;
        let t01 = ((q >> 16) & 0xff) as f32;
        let t11 = (q >> 24) as f32;
        let a = t00 + (t10 - t00) * du;
        let b = t01 + (t11 - t01) * du;
        a + (b - a) * dv
    }
}

/// Mip level whose texels are about `texels_per_pixel` wide on screen: floor(log2), from the float's exponent.
#[inline]
pub fn mip_level(texels_per_pixel: f32) -> usize {
    let e = ((texels_per_pixel.to_bits() >> 23) & 0xff) as i32 - 127;
    e.clamp(0, MIP_LEVELS as i32 - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_is_normalised_tileable_and_textured() {
        let t = Texture::new(1);
        let mean: f32 = t.texels.iter().sum::<f32>() / t.texels.len() as f32;
        assert!(t.texels.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!((0.3..0.7).contains(&mean), "{mean}");
        // Wraps: sampling one tile apart gives the same value.
        assert!((t.sample(3.3, 7.7) - t.sample(3.3 + 256.0, 7.7 - 512.0)).abs() < 1e-5);
        // Bilinear samples agree with the float tile to 8-bit precision, across the wrap too.
        for &(u, v) in &[
            (3.25f32, 7.5f32),
            (255.5, 0.25),
            (-0.75, 255.9),
            (100.0, 100.0),
        ] {
            let (x0, y0) = (u.floor(), v.floor());
            let at = |x: f32, y: f32| t.texel(x as i64, y as i64);
            let (du, dv) = (u - x0, v - y0);
            let a = at(x0, y0) * (1.0 - du) + at(x0 + 1.0, y0) * du;
            let b = at(x0, y0 + 1.0) * (1.0 - du) + at(x0 + 1.0, y0 + 1.0) * du;
            let want = a * (1.0 - dv) + b * dv;
            assert!(
                (t.sample(u, v) - want).abs() < 2.5 / 255.0,
                "{u},{v}: {} vs {want}",
                t.sample(u, v)
            );
        }
        // Has contrast at the finest octave: neighbouring 4-texel steps differ.
        let var: f32 = (0..200)
            .map(|i| (t.sample(i as f32 * 4.0, 10.0) - t.sample(i as f32 * 4.0 + 4.0, 10.0)).abs())
            .sum::<f32>()
            / 200.0;
        assert!(var > 0.02, "{var}");
        // Mip levels: a coarse level is the average of the fine one and keeps the mean.
        let fine: f32 = (0..64)
            .map(|i| t.sample_level(i as f32 * 4.0 + 0.5, 9.5, 0))
            .sum::<f32>()
            / 64.0;
        let coarse: f32 = (0..64)
            .map(|i| t.sample_level(i as f32 * 4.0 + 0.5, 9.5, 2))
            .sum::<f32>()
            / 64.0;
        assert!((fine - coarse).abs() < 20.0, "{fine} {coarse}");
        assert_eq!(mip_level(0.3), 0);
        assert_eq!(mip_level(1.0), 0);
        assert_eq!(mip_level(2.5), 1);
        assert_eq!(mip_level(9.0), 3);
        assert_eq!(mip_level(1e9), MIP_LEVELS - 1);
    }
}
