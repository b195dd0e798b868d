//! Stereo rendering with exact ground truth.
//!
//! Every pixel is a ray cast against the true scene geometry (room shell, boxes,
//! cylinders), so depth is exact and a point at depth Z appears with disparity
//! f·B/Z between the two eyes. Speed comes from casting each obstacle only over its
//! projected bounding rectangle, from structure-of-arrays ray buffers the compiler
//! vectorises, and from shading only the visible surface.

use crate::camera::StereoRig;
use crate::rng::Rng;
use crate::texture::{TEXELS_PER_FEATURE, Texture, mip_level};
use crate::world::{Shape, World};

/// Rotation (camera → world, columns are the camera axes in world coordinates)
/// and position of a camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraPose {
    /// Optical centre in the world frame (m).
    pub position: [f64; 3],
    /// Camera-to-world rotation, row-major.
    pub rotation: [[f64; 3]; 3],
}

pub use types::CAMERA_TO_BODY;

impl CameraPose {
    /// The left camera of a rig mounted at the body origin looking along body x.
    /// `body_to_world` is row-major.
    pub fn from_body(position: [f64; 3], body_to_world: [[f64; 3]; 3]) -> Self {
        let mut r = [[0.0; 3]; 3];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3)
                    .map(|k| body_to_world[i][k] * CAMERA_TO_BODY[k][j])
                    .sum();
            }
        }
        Self {
            position,
            rotation: r,
        }
    }

    /// A camera at `position` looking along world +x, upright, with yaw `yaw` (rad).
    pub fn looking_forward(position: [f64; 3], yaw: f64) -> Self {
        let (s, c) = yaw.sin_cos();
        Self::from_body(position, [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    }

    /// World point into this camera's frame.
    pub fn world_to_camera(&self, p: [f64; 3]) -> [f64; 3] {
        let d = [
            p[0] - self.position[0],
            p[1] - self.position[1],
            p[2] - self.position[2],
        ];
        let r = &self.rotation;
        [
            r[0][0] * d[0] + r[1][0] * d[1] + r[2][0] * d[2],
            r[0][1] * d[0] + r[1][1] * d[1] + r[2][1] * d[2],
            r[0][2] * d[0] + r[1][2] * d[1] + r[2][2] * d[2],
        ]
    }

    /// The pose shifted by `offset` metres along its own x axis (the right eye).
    pub fn shifted_right(&self, offset: f64) -> Self {
        let r = &self.rotation;
        Self {
            position: [
                self.position[0] + r[0][0] * offset,
                self.position[1] + r[1][0] * offset,
                self.position[2] + r[2][0] * offset,
            ],
            rotation: self.rotation,
        }
    }
}

/// One rendered stereo pair with ground truth.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StereoFrame {
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Left grayscale image, row-major.
    pub left: Vec<u8>,
    /// Right grayscale image, row-major.
    pub right: Vec<u8>,
    /// Ground-truth depth Z (m, along the optical axis) of every left pixel.
    pub depth: Vec<f32>,
    /// Ground-truth depth Z of every right pixel.
    pub depth_right: Vec<f32>,
}

impl StereoFrame {
    /// An empty frame of the given size.
    pub fn new(width: usize, height: usize) -> Self {
        let n = width * height;
        Self {
            width,
            height,
            left: vec![0; n],
            right: vec![0; n],
            depth: vec![0.0; n],
            depth_right: vec![0.0; n],
        }
    }

    /// Ground-truth disparity f·B/Z of every left pixel (pixels).
    pub fn disparity(&self, rig: &StereoRig) -> Vec<f32> {
        let fb = (rig.intrinsics.fx * rig.baseline) as f32;
        self.depth.iter().map(|&z| fb / z).collect()
    }
}

/// Per-view working buffers (structure of arrays), reused between frames.
#[derive(Debug, Clone, Default)]
struct Scratch {
    dir: [Vec<f32>; 3],
    inv: [Vec<f32>; 3],
    id: Vec<u16>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Identifier of the surface a pixel sees: 0..6 are the room faces
/// (-x, +x, -y, +y, floor, ceiling); obstacle i has ids 6 + 6 i + f where f is the
/// face (2 axis + 0 for its min side, + 1 for its max side; cylinders use f = 0).
const OBSTACLE_ID0: u16 = 6;

/// Largest number of obstacles the renderer draws (ids are 16-bit).
pub const MAX_RENDERED_OBSTACLES: usize = 10_000;

/// Shading constants of one surface id.
#[derive(Debug, Clone, Copy, Default)]
struct Surface {
    /// One-hot world axes that give the texture coordinates, scaled to texels per metre.
    tu: [f32; 3],
    tv: [f32; 3],
    /// Texel coordinates of the camera centre projected on the texture axes, plus the offset.
    origin: [f32; 2],
    /// Brightness = base + slope * texel byte.
    base: f32,
    slope: f32,
    /// A cylinder: (cx, cy, r); its texture and shading depend on the point.
    cylinder: Option<[f32; 3]>,
    /// Texels per metre (cylinders).
    freq: f32,
    /// Texture offset (cylinders).
    offset: [f32; 2],
    /// Exposure x albedo (cylinders, shading applied per pixel).
    albedo_gain: f32,
    /// The material's share of the context's contrast (cylinders).
    contrast: f32,
}

/// Renders stereo pairs of a [`World`] through a [`StereoRig`].
#[derive(Debug, Clone)]
pub struct Renderer {
    rig: StereoRig,
    rays: [Vec<f32>; 2],
    texture: Texture,
    /// Unit-variance Gaussian samples; each view reads them through a random
    /// permutation of pixel indices, which is cheaper than drawing per pixel.
    noise: Vec<f32>,
}

/// Size of the noise table (a power of two).
const NOISE_TABLE: usize = 1 << 16;

#[inline]
fn fast_atan2(y: f32, x: f32) -> f32 {
    // Max error ~1e-3 rad: ample for texture coordinates, never used for geometry.
    let ax = x.abs();
    let ay = y.abs();
    let (mn, mx) = if ax < ay { (ax, ay) } else { (ay, ax) };
    let a = mn / mx.max(1e-30);
    let s = a * a;
    let mut r = ((-0.046_496_474 * s + 0.159_314_22) * s - 0.327_622_77) * s * a + a;
    if ay > ax {
        r = std::f32::consts::FRAC_PI_2 - r;
    }
    if x < 0.0 {
        r = std::f32::consts::PI - r;
    }
    if y < 0.0 { -r } else { r }
}

impl Renderer {
    /// A renderer for `rig`; `texture_seed` fixes the shared surface texture.
    pub fn new(rig: StereoRig, texture_seed: u64) -> Self {
        let table = rig.ray_table();
        let rays = [
            table.iter().map(|r| r[0]).collect(),
            table.iter().map(|r| r[1]).collect(),
        ];
        Self {
            rig,
            rays,
            texture: Texture::new(texture_seed),
            noise: {
                let mut r = Rng::new(texture_seed ^ 0x006e_6f69_7365);
                (0..NOISE_TABLE).map(|_| r.normal() as f32).collect()
            },
        }
    }

    /// The rig this renderer draws.
    pub fn rig(&self) -> &StereoRig {
        &self.rig
    }

    /// Render both eyes with ground-truth depth into `frame` (resized if needed).
    /// `noise_seed` fixes the image noise, so a frame is reproducible.
    pub fn render(
        &self,
        world: &World,
        left: &CameraPose,
        noise_seed: u64,
        frame: &mut StereoFrame,
    ) {
        let k = &self.rig.intrinsics;
        if frame.width != k.width
            || frame.height != k.height
            || frame.left.len() != k.width * k.height
        {
            *frame = StereoFrame::new(k.width, k.height);
        }
        let mut rng = Rng::new(noise_seed);
        SCRATCH.with_borrow_mut(|scratch| {
            self.prepare_rays(left, scratch);
            self.render_view(
                world,
                left,
                &mut frame.left,
                &mut frame.depth,
                scratch,
                &mut rng,
            );
            let right = left.shifted_right(self.rig.baseline);
            self.render_view(
                world,
                &right,
                &mut frame.right,
                &mut frame.depth_right,
                scratch,
                &mut rng,
            );
        });
    }

    /// Render one eye: grayscale image and depth.
    pub fn render_eye(
        &self,
        world: &World,
        pose: &CameraPose,
        noise_seed: u64,
        image: &mut [u8],
        depth: &mut [f32],
    ) {
        let mut rng = Rng::new(noise_seed);
        SCRATCH.with_borrow_mut(|scratch| {
            self.prepare_rays(pose, scratch);
            self.render_view(world, pose, image, depth, scratch, &mut rng)
        });
    }

    /// World-frame ray directions of every pixel for a camera rotation, and their
    /// inverses. Both eyes of a rig share them (same rotation, parallel axes).
    fn prepare_rays(&self, pose: &CameraPose, s: &mut Scratch) {
        let k = &self.rig.intrinsics;
        let n = k.width * k.height;
        for a in 0..3 {
            s.dir[a].resize(n, 0.0);
            s.inv[a].resize(n, 0.0);
        }
        s.id.resize(n, 0);
        let r = pose.rotation.map(|row| row.map(|v| v as f32));
        // Zipped iterators: no bounds checks, so the loops vectorise.
        let (rx, ry) = (&self.rays[0][..n], &self.rays[1][..n]);
        for ((row, dir), inv) in r.iter().zip(s.dir.iter_mut()).zip(s.inv.iter_mut()) {
            let (ra0, ra1, ra2) = (row[0], row[1], row[2]);
            for (((d, iv), &x), &y) in dir.iter_mut().zip(inv.iter_mut()).zip(rx).zip(ry) {
                let v = ra0 * x + ra1 * y + ra2;
                *d = v;
                *iv = 1.0 / v;
            }
        }
    }

    /// Trace and shade one eye whose rays [`Renderer::prepare_rays`] computed.
    fn render_view(
        &self,
        world: &World,
        pose: &CameraPose,
        image: &mut [u8],
        depth: &mut [f32],
        s: &mut Scratch,
        rng: &mut Rng,
    ) {
        let k = &self.rig.intrinsics;
        let (w, h) = (k.width, k.height);
        let n = w * h;
        let o = pose.position.map(|v| v as f32);

        // Room shell: exit distance of every ray.
        let [l, wd, hh] = world.size.map(|v| v as f32);
        let lo = [0.0 - o[0], -wd / 2.0 - o[1], 0.0 - o[2]];
        let hi = [l - o[0], wd / 2.0 - o[1], hh - o[2]];
        {
            let (ix, iy, iz) = (&s.inv[0][..n], &s.inv[1][..n], &s.inv[2][..n]);
            let depth = &mut depth[..n];
            let id = &mut s.id[..n];
            for ((((z, f), &ix), &iy), &iz) in
                depth.iter_mut().zip(id.iter_mut()).zip(ix).zip(iy).zip(iz)
            {
                let tx = if ix > 0.0 { hi[0] * ix } else { lo[0] * ix };
                let ty = if iy > 0.0 { hi[1] * iy } else { lo[1] * iy };
                let tz = if iz > 0.0 { hi[2] * iz } else { lo[2] * iz };
                let fx = if ix > 0.0 { 1u16 } else { 0 };
                let fy = if iy > 0.0 { 3u16 } else { 2 };
                let fz = if iz > 0.0 { 5u16 } else { 4 };
                let mut t = tx;
                let mut face = fx;
                if ty < t {
                    t = ty;
                    face = fy;
                }
                if tz < t {
                    t = tz;
                    face = fz;
                }
                *z = t;
                *f = face;
            }
        }

        // Obstacles, each over its projected bounding rectangle.
        let distorted = !self.rig.distortion.is_zero();
        for (oi, ob) in world
            .obstacles
            .iter()
            .enumerate()
            .take(MAX_RENDERED_OBSTACLES)
        {
            let (bmin, bmax) = match ob.shape {
                Shape::Box { min, max } => (min, max),
                Shape::Cylinder { cx, cy, r, z0, z1 } => {
                    ([cx - r, cy - r, z0], [cx + r, cy + r, z1])
                }
            };
            let Some([u0, u1, v0, v1]) = screen_rect(pose, k, bmin, bmax, distorted) else {
                continue;
            };
            let oid = OBSTACLE_ID0 + 6 * oi as u16;
            match ob.shape {
                Shape::Box { min, max } => {
                    let mn = [
                        min[0] as f32 - o[0],
                        min[1] as f32 - o[1],
                        min[2] as f32 - o[2],
                    ];
                    let mx = [
                        max[0] as f32 - o[0],
                        max[1] as f32 - o[1],
                        max[2] as f32 - o[2],
                    ];
                    for v in v0..=v1 {
                        let span = v * w + u0..=v * w + u1;
                        let ix = &s.inv[0][span.clone()];
                        let iy = &s.inv[1][span.clone()];
                        let iz = &s.inv[2][span.clone()];
                        let zs = &mut depth[span.clone()];
                        let ids = &mut s.id[span];
                        for ((((z, id), &ix), &iy), &iz) in
                            zs.iter_mut().zip(ids.iter_mut()).zip(ix).zip(iy).zip(iz)
                        {
                            let (ax, bx) = (mn[0] * ix, mx[0] * ix);
                            let (ay, by) = (mn[1] * iy, mx[1] * iy);
                            let (az, bz) = (mn[2] * iz, mx[2] * iz);
                            let (ex, ey, ez) = (ax.min(bx), ay.min(by), az.min(bz));
                            let tmin = ex.max(ey).max(ez);
                            let tmax = ax.max(bx).min(ay.max(by)).min(az.max(bz));
                            let hit = tmin <= tmax && tmin > 0.0 && tmin < *z;
                            // Entry face: the slab that set tmin; its max side when the ray runs backwards.
                            let face = if tmin == ex {
                                (ix < 0.0) as u16
                            } else if tmin == ey {
                                2 + (iy < 0.0) as u16
                            } else {
                                4 + (iz < 0.0) as u16
                            };
                            *z = if hit { tmin } else { *z };
                            *id = if hit { oid + face } else { *id };
                        }
                    }
                }
                Shape::Cylinder { cx, cy, r, z0, z1 } => {
                    let (ox, oy) = (o[0] - cx as f32, o[1] - cy as f32);
                    let c = ox * ox + oy * oy - (r * r) as f32;
                    if c <= 0.0 {
                        continue; // camera inside the pole: a collision, nothing sensible to draw
                    }
                    let (z0, z1) = (z0 as f32 - o[2], z1 as f32 - o[2]);
                    for v in v0..=v1 {
                        let span = v * w + u0..=v * w + u1;
                        let dxs = &s.dir[0][span.clone()];
                        let dys = &s.dir[1][span.clone()];
                        let dzs = &s.dir[2][span.clone()];
                        let zs = &mut depth[span.clone()];
                        let ids = &mut s.id[span];
                        for ((((z, id), &dx), &dy), &dz) in
                            zs.iter_mut().zip(ids.iter_mut()).zip(dxs).zip(dys).zip(dzs)
                        {
                            let a = dx * dx + dy * dy;
                            let b = ox * dx + oy * dy;
                            let disc = b * b - a * c;
                            let t = (-b - disc.max(0.0).sqrt()) / a;
                            let h = t * dz;
                            let hit =
                                disc >= 0.0 && b < 0.0 && t > 0.0 && t < *z && h >= z0 && h <= z1;
                            *z = if hit { t } else { *z };
                            *id = if hit { oid } else { *id };
                        }
                    }
                }
            }
        }

        // Shade the visible surface from a per-surface table.
        let ctx = &world.context;
        let gain = (ctx.light * 255.0) as f32;
        let contrast = ctx.texture_contrast as f32;
        let freq = ctx.texture_frequency as f32 * TEXELS_PER_FEATURE;
        let noise = ctx.pixel_noise as f32;
        const LIGHT: [f32; 3] = [0.267, 0.178, 0.947];
        let shade_of = |nrm: [f32; 3]| {
            0.6 + 0.4 * (nrm[0] * LIGHT[0] + nrm[1] * LIGHT[1] + nrm[2] * LIGHT[2]).max(0.0)
        };
        let surface = |m: &crate::world::Material, axis: usize, normal_sign: f32| {
            let mut nrm = [0.0f32; 3];
            nrm[axis] = normal_sign;
            let [a, b] = match axis {
                0 => [1, 2],
                1 => [0, 2],
                _ => [0, 1],
            };
            let f = freq * m.tex_scale;
            let (mut tu, mut tv) = ([0.0f32; 3], [0.0f32; 3]);
            tu[a] = f;
            tv[b] = f;
            let k = gain * shade_of(nrm) * m.albedo;
            let contrast = contrast * m.contrast;
            Surface {
                tu,
                tv,
                origin: [o[a] * f + m.tex_offset[0], o[b] * f + m.tex_offset[1]],
                base: k * (1.0 - contrast),
                slope: 2.0 * k * contrast / 255.0,
                cylinder: None,
                freq: f,
                offset: m.tex_offset,
                albedo_gain: gain * m.albedo,
                contrast: m.contrast,
            }
        };
        let n_obs = world.obstacles.len().min(MAX_RENDERED_OBSTACLES);
        let mut table = Vec::with_capacity(6 + 6 * n_obs);
        for face in 0..6 {
            // Room faces look inwards: the -x wall's normal is +x, and so on.
            let sign = if face % 2 == 0 { 1.0 } else { -1.0 };
            table.push(surface(&world.room_materials[face], face / 2, sign));
        }
        for ob in world.obstacles.iter().take(n_obs) {
            for face in 0..6 {
                let sign = if face % 2 == 0 { -1.0 } else { 1.0 };
                let mut sf = surface(&ob.material, face / 2, sign);
                if let Shape::Cylinder { cx, cy, r, .. } = ob.shape {
                    sf.cylinder = Some([cx as f32, cy as f32, r as f32]);
                }
                table.push(sf);
            }
        }
        // Texels per pixel at depth t on a surface of `freq` texels per metre is t·freq/f.
        let inv_f = (1.0 / k.fx) as f32;
        let (noise_xor, noise_add) = (
            rng.below(NOISE_TABLE as u64) as usize,
            rng.below(NOISE_TABLE as u64) as usize,
        );
        let noise_table = &self.noise[..NOISE_TABLE];
        let ids = &s.id[..n];
        let (dxs, dys, dzs) = (&s.dir[0][..n], &s.dir[1][..n], &s.dir[2][..n]);
        for (i, ((((px, &t), &id), &dx), (&dy, &dz))) in image[..n]
            .iter_mut()
            .zip(depth[..n].iter())
            .zip(ids)
            .zip(dxs)
            .zip(dys.iter().zip(dzs))
            .enumerate()
        {
            let sf = &table[id as usize];
            let mut val = match sf.cylinder {
                None => {
                    let u = (dx * sf.tu[0] + dy * sf.tu[1] + dz * sf.tu[2]) * t + sf.origin[0];
                    let v = (dx * sf.tv[0] + dy * sf.tv[1] + dz * sf.tv[2]) * t + sf.origin[1];
                    let level = mip_level(t * sf.freq * inv_f);
                    sf.base + sf.slope * self.texture.sample_level(u, v, level)
                }
                Some([cx, cy, r]) => {
                    let p = [o[0] + t * dx, o[1] + t * dy, o[2] + t * dz];
                    let (nx, ny) = ((p[0] - cx) / r, (p[1] - cy) / r);
                    let k = sf.albedo_gain * shade_of([nx, ny, 0.0]);
                    let u = fast_atan2(ny, nx) * r * sf.freq + sf.offset[0];
                    let level = mip_level(t * sf.freq * inv_f);
                    let tex = self
                        .texture
                        .sample_level(u, p[2] * sf.freq + sf.offset[1], level)
                        * (1.0 / 255.0);
                    k * (1.0 + contrast * sf.contrast * (2.0 * tex - 1.0))
                }
            };
            if noise > 0.0 {
                val += noise * noise_table[((i ^ noise_xor) + noise_add) & (NOISE_TABLE - 1)];
            }
            *px = val.clamp(0.0, 255.0) as u8;
        }
    }
}

/// Pixel rectangle [u0, u1] x [v0, v1] that a world box can cover, or `None` when it
/// is wholly behind the camera. Falls back to the whole image when the box straddles
/// the camera plane or the lens distorts.
fn screen_rect(
    pose: &CameraPose,
    k: &crate::camera::Intrinsics,
    bmin: [f64; 3],
    bmax: [f64; 3],
    distorted: bool,
) -> Option<[usize; 4]> {
    let full = Some([0, k.width - 1, 0, k.height - 1]);
    let mut umin = f64::INFINITY;
    let mut umax = f64::NEG_INFINITY;
    let mut vmin = f64::INFINITY;
    let mut vmax = f64::NEG_INFINITY;
    let mut behind = 0;
    for c in 0..8 {
        let p = [
            if c & 1 == 0 { bmin[0] } else { bmax[0] },
            if c & 2 == 0 { bmin[1] } else { bmax[1] },
            if c & 4 == 0 { bmin[2] } else { bmax[2] },
        ];
        let q = pose.world_to_camera(p);
        if q[2] <= 1e-3 {
            behind += 1;
            continue;
        }
        let (u, v) = (k.fx * q[0] / q[2] + k.cx, k.fy * q[1] / q[2] + k.cy);
        umin = umin.min(u);
        umax = umax.max(u);
        vmin = vmin.min(v);
        vmax = vmax.max(v);
    }
    if behind == 8 {
        return None;
    }
    if behind > 0 || distorted {
        return full;
    }
    let (wmax, hmax) = ((k.width - 1) as f64, (k.height - 1) as f64);
    if umax < -1.0 || vmax < -1.0 || umin > wmax + 1.0 || vmin > hmax + 1.0 {
        return None;
    }
    let u0 = (umin - 1.0).floor().clamp(0.0, wmax) as usize;
    let u1 = (umax + 1.0).ceil().clamp(0.0, wmax) as usize;
    let v0 = (vmin - 1.0).floor().clamp(0.0, hmax) as usize;
    let v1 = (vmax + 1.0).ceil().clamp(0.0, hmax) as usize;
    Some([u0, u1, v0, v1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::world::{Obstacle, ObstacleKind};

    fn empty_world() -> World {
        let c = Context {
            obstacle_count: 0,
            pixel_noise: 0.0,
            ..Context::default()
        };
        World::generate(&c, 3)
    }

    #[test]
    fn fronto_parallel_wall_gives_exact_depth_and_disparity() {
        // Camera 4 m in front of the far wall: fx = 80, B = 0.1 → disparity exactly 2 px.
        let world = empty_world();
        let rig = StereoRig::default();
        let r = Renderer::new(rig, 1);
        let pose = CameraPose::looking_forward([16.0, 0.0, 1.5], 0.0);
        let mut f = StereoFrame::default();
        r.render(&world, &pose, 0, &mut f);
        let (w, h) = (f.width, f.height);
        let (cu, cv) = (w / 2, h / 2);
        assert!((f.depth[cv * w + cu] - 4.0).abs() < 1e-5);
        let d = f.disparity(&rig)[cv * w + cu];
        assert!((d - 2.0).abs() < 1e-5, "{d}");
        // Central window sees only the far wall: right(u - 2) == left(u).
        let mut max_diff = 0i32;
        for v in 40..80 {
            for u in 50..110 {
                let a = f.left[v * w + u] as i32;
                let b = f.right[v * w + u - 2] as i32;
                max_diff = max_diff.max((a - b).abs());
            }
        }
        assert!(max_diff <= 1, "max diff {max_diff}");
        // And the images are textured, not flat.
        let (mn, mx) = f
            .left
            .iter()
            .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(mx - mn > 60, "{mn}..{mx}");
    }

    #[test]
    fn rendered_depth_matches_the_reference_ray_caster_and_reprojects() {
        let c = Context {
            obstacle_count: 25,
            pixel_noise: 0.0,
            ..Context::default()
        };
        let world = World::generate(&c, 11);
        let rig = StereoRig::default();
        let r = Renderer::new(rig, 1);
        let pose = CameraPose::looking_forward([1.0, 0.3, 1.2], 0.1);
        let mut f = StereoFrame::default();
        r.render(&world, &pose, 0, &mut f);
        let k = rig.intrinsics;
        let rays = rig.ray_table();
        let mut hits_obstacle = 0;
        for (i, ray) in rays.iter().enumerate() {
            let rc = [ray[0] as f64, ray[1] as f64, 1.0];
            let rw = [0, 1, 2].map(|a| (0..3).map(|b| pose.rotation[a][b] * rc[b]).sum::<f64>());
            let hit = world.raycast(pose.position, rw);
            hits_obstacle += hit.obstacle.is_some() as usize;
            let z = f.depth[i] as f64;
            assert!(
                (z - hit.t).abs() <= 1e-4 * hit.t.max(1.0),
                "pixel {i}: {z} vs {}",
                hit.t
            );
        }
        assert!(
            hits_obstacle > 500,
            "scene should show obstacles ({hits_obstacle} px)"
        );
        // Every left pixel's 3D point, projected into the right camera, lands at u - f·B/Z
        // on the same row, and the right eye sees that same point there: its depth at the
        // nearest pixel agrees except at occlusions and depth edges.
        let right = pose.shifted_right(rig.baseline);
        let mut agree = 0;
        let mut total = 0;
        for v in 0..k.height {
            for u in 0..k.width {
                let z = f.depth[v * k.width + u] as f64;
                let p = [
                    (u as f64 - k.cx) / k.fx * z,
                    (v as f64 - k.cy) / k.fy * z,
                    z,
                ];
                let pw = [0, 1, 2].map(|a| {
                    pose.position[a] + (0..3).map(|b| pose.rotation[a][b] * p[b]).sum::<f64>()
                });
                let q = right.world_to_camera(pw);
                let [ur, vr] = k.project(q).unwrap();
                assert!((ur - (u as f64 - rig.disparity(z))).abs() < 1e-6 * z.max(1.0));
                assert!((vr - v as f64).abs() < 1e-6 * z.max(1.0));
                assert!((q[2] - z).abs() < 1e-9 * z.max(1.0));
                let uri = ur.round();
                if uri >= 0.0 {
                    total += 1;
                    let zr = f.depth_right[v * k.width + uri as usize] as f64;
                    if (zr - z).abs() < 0.03 * z {
                        agree += 1;
                    }
                }
            }
        }
        assert!(
            total > 10_000 && agree * 100 >= total * 90,
            "{agree}/{total}"
        );
    }

    #[test]
    fn pole_appears_where_geometry_says() {
        let mut world = empty_world();
        world.obstacles.push(Obstacle {
            kind: ObstacleKind::Pole,
            shape: Shape::Cylinder {
                cx: 5.0,
                cy: 0.0,
                r: 0.25,
                z0: 0.0,
                z1: 3.0,
            },
            material: world.room_materials[0],
        });
        let rig = StereoRig::default();
        let r = Renderer::new(rig, 1);
        let pose = CameraPose::looking_forward([1.0, 0.0, 1.5], 0.0);
        let mut f = StereoFrame::default();
        r.render(&world, &pose, 0, &mut f);
        let w = f.width;
        // Centre pixel hits the pole's front at 5 - 0.25 - 1 = 3.75 m (centre ray is 0.5 px off axis).
        let z = f.depth[60 * w + 80] as f64;
        assert!((z - 3.75).abs() < 2e-3, "{z}");
        // Pole half-width 0.25 m at ~4 m → about ±5 px around the centre; far wall beyond.
        assert!(f.depth[60 * w + 80 + 12] > 10.0);
        assert!(f.depth[60 * w + 80 - 12] > 10.0);
    }

    #[test]
    fn noise_is_seeded_and_light_scales_brightness() {
        let c = Context {
            pixel_noise: 5.0,
            ..Context::default()
        };
        let world = World::generate(&c, 2);
        let r = Renderer::new(StereoRig::default(), 1);
        let pose = CameraPose::looking_forward([1.0, 0.0, 1.5], 0.0);
        let (mut a, mut b, mut d) = (
            StereoFrame::default(),
            StereoFrame::default(),
            StereoFrame::default(),
        );
        r.render(&world, &pose, 9, &mut a);
        r.render(&world, &pose, 9, &mut b);
        r.render(&world, &pose, 10, &mut d);
        assert_eq!(a, b);
        assert_ne!(a.left, d.left);
        assert_eq!(a.depth, d.depth);
        let mut dim = c.clone();
        dim.light = 0.3;
        let world_dim = World::generate(&dim, 2);
        let mut e = StereoFrame::default();
        r.render(&world_dim, &pose, 9, &mut e);
        let mean = |v: &[u8]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!(mean(&e.left) < 0.5 * mean(&a.left));
    }

    #[test]
    fn distorted_rig_bends_straight_lines_but_keeps_the_centre() {
        let world = empty_world();
        let mut rig = StereoRig::default();
        let plain = Renderer::new(rig, 1);
        rig.distortion.k1 = -0.05;
        rig.distortion.p1 = 0.002;
        let bent = Renderer::new(rig, 1);
        let pose = CameraPose::looking_forward([1.0, 0.0, 1.5], 0.0);
        let (mut a, mut b) = (StereoFrame::default(), StereoFrame::default());
        plain.render(&world, &pose, 0, &mut a);
        bent.render(&world, &pose, 0, &mut b);
        let w = a.width;
        // On the optical axis the two agree; at the corner barrel distortion sees wider.
        assert!((a.depth[60 * w + 80] - b.depth[60 * w + 80]).abs() < 1e-3);
        assert_ne!(a.depth[0], b.depth[0]);
        // Depth stays exact along each distorted ray.
        let rays = rig.ray_table();
        let hit = world.raycast(pose.position, {
            let rc = [rays[0][0] as f64, rays[0][1] as f64, 1.0];
            [0, 1, 2].map(|i| (0..3).map(|j| pose.rotation[i][j] * rc[j]).sum::<f64>())
        });
        assert!(
            (b.depth[0] as f64 - hit.t).abs() < 1e-4 * hit.t,
            "{} vs {} ({:?})",
            b.depth[0],
            hit.t,
            rays[0]
        );
    }
}
