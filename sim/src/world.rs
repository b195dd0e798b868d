//! The room and its obstacles: geometry, surface appearance and collision queries.
//!
//! World frame: x forward along the room (0 at the start wall), y to the left
//! (centred on 0), z up (0 on the floor). All obstacles are axis-aligned boxes
//! (blocks and thin panels) or vertical cylinders (poles), which keeps ray casts
//! exact and cheap.

use crate::context::{Context, START_CLEARANCE};
use crate::rng::Rng;

/// Thickness of the doorway wall (m).
pub const GATE_THICKNESS: f64 = 0.1;

/// Shape of one obstacle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Axis-aligned box between `min` and `max` (also used for thin panels).
    Box { min: [f64; 3], max: [f64; 3] },
    /// Vertical cylinder with axis at (`cx`, `cy`), from `z0` to `z1`.
    Cylinder {
        cx: f64,
        cy: f64,
        r: f64,
        z0: f64,
        z1: f64,
    },
}

/// What an obstacle stands for; affects only how it is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObstacleKind {
    /// A floor-standing block.
    Block,
    /// A pole from floor to ceiling.
    Pole,
    /// A thin panel, standing on the floor or hanging from the ceiling.
    Panel,
    /// A person-sized pole that walks across the room ([`Mover`]).
    Walker,
}

/// An obstacle that moves: a walker crossing the room at constant speed,
/// turning back at the side walls and at the room's ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mover {
    /// Index into [`World::obstacles`] (a [`Shape::Cylinder`]).
    pub obstacle: usize,
    /// Horizontal velocity (m/s, world frame) the walker walks at.
    pub velocity: [f64; 2],
    /// It stood still at its last step, waiting for the vehicle to clear its
    /// way (its velocity is then what it will walk at, not what it does).
    pub waiting: bool,
}

impl Mover {
    /// What the walker is doing now (m/s, world frame): zero while it waits.
    pub fn current_velocity(&self) -> [f64; 2] {
        if self.waiting {
            [0.0; 2]
        } else {
            self.velocity
        }
    }
}

/// How a surface looks: base albedo and a shift into the shared noise texture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Material {
    /// Mean reflectance in (0, 1].
    pub albedo: f32,
    /// Offset into the texture so that neighbouring surfaces differ.
    pub tex_offset: [f32; 2],
    /// Multiplier of the context's texture frequency for this surface.
    pub tex_scale: f32,
    /// Fraction of the context's texture contrast this surface shows: 1 for
    /// ordinary surfaces, 0 for a blank (textureless) one, which stereo
    /// matching cannot see.
    pub contrast: f32,
}

/// One obstacle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Obstacle {
    /// Its kind.
    pub kind: ObstacleKind,
    /// Its geometry.
    pub shape: Shape,
    /// Its appearance.
    pub material: Material,
}

/// A ray hit: distance along the (not necessarily unit) direction, surface normal,
/// and which surface was hit (`None` = a room wall, floor or ceiling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Ray parameter t: the point is origin + t * dir.
    pub t: f64,
    /// Outward unit normal of the surface hit.
    pub normal: [f64; 3],
    /// Index of the obstacle, or `None` for the room shell.
    pub obstacle: Option<usize>,
}

/// The room, its obstacles and appearance, generated from a context and a seed.
#[derive(Debug, Clone)]
pub struct World {
    /// The context it was built from.
    pub context: Context,
    /// Room extent: x in [0, len], y in [-w/2, w/2], z in [0, h].
    pub size: [f64; 3],
    /// The obstacles.
    pub obstacles: Vec<Obstacle>,
    /// Materials of the six room faces: -x, +x, -y, +y, floor, ceiling.
    pub room_materials: [Material; 6],
    /// Where vehicles start (x, y, z).
    pub start: [f64; 3],
    /// Obstacles that move (none unless [`World::add_walkers`] was called).
    pub movers: Vec<Mover>,
}

/// Obstacle horizontal bounds, for placement and broad-phase tests.
fn footprint(s: &Shape) -> ([f64; 2], [f64; 2]) {
    match *s {
        Shape::Box { min, max } => ([min[0], min[1]], [max[0], max[1]]),
        Shape::Cylinder { cx, cy, r, .. } => ([cx - r, cy - r], [cx + r, cy + r]),
    }
}

fn material(rng: &mut Rng, lo: f64, hi: f64) -> Material {
    Material {
        albedo: rng.range(lo, hi) as f32,
        tex_offset: [rng.range(0.0, 256.0) as f32, rng.range(0.0, 256.0) as f32],
        tex_scale: rng.range(0.7, 1.4) as f32,
        contrast: 1.0,
    }
}

impl World {
    /// Build the room for `context`; the same (context, seed) always gives the same room.
    /// The context should be valid ([`Context::validate`]); obstacles that cannot be
    /// placed without overlap after many tries are left out.
    pub fn generate(context: &Context, seed: u64) -> World {
        let mut rng = Rng::new(seed ^ 0x5bd1_e995);
        let (l, w, h) = (context.room_length, context.room_width, context.room_height);
        let mut room_materials = [material(&mut rng, 0.45, 0.75); 6];
        for m in room_materials.iter_mut() {
            *m = material(&mut rng, 0.45, 0.75);
        }
        room_materials[4].albedo = rng.range(0.3, 0.5) as f32; // darker floor
        let start = [1.0, 0.0, (h * 0.5).min(1.5)];
        let mut obstacles: Vec<Obstacle> = Vec::new();
        // The doorway wall goes in first, so the obstacles keep clear of it.
        if let Some((x, [y0, y1])) = context.gate() {
            let t = GATE_THICKNESS * 0.5;
            let material = material(&mut rng, 0.35, 0.8);
            for (lo, hi) in [(-w / 2.0, y0), (y1, w / 2.0)] {
                if hi - lo > 1e-3 {
                    obstacles.push(Obstacle {
                        kind: ObstacleKind::Panel,
                        shape: Shape::Box {
                            min: [x - t, lo, 0.0],
                            max: [x + t, hi, h],
                        },
                        material,
                    });
                }
            }
        }
        let margin = 0.3;
        let s = context.obstacle_size;
        for _ in 0..context.obstacle_count {
            for _try in 0..200 {
                let kind = match rng.below(3) {
                    0 => ObstacleKind::Block,
                    1 => ObstacleKind::Pole,
                    _ => ObstacleKind::Panel,
                };
                let x = rng.range(
                    START_CLEARANCE + s,
                    (l - s * 0.5).max(START_CLEARANCE + s + 1e-3),
                );
                let y = rng.range(-w / 2.0 + s * 0.5, w / 2.0 - s * 0.5);
                let shape = match kind {
                    ObstacleKind::Block => {
                        let sx = s * rng.range(0.6, 1.0) * 0.5;
                        let sy = s * rng.range(0.6, 1.0) * 0.5;
                        let top = h * rng.range(0.5, 1.0);
                        Shape::Box {
                            min: [x - sx, y - sy, 0.0],
                            max: [x + sx, y + sy, top],
                        }
                    }
                    ObstacleKind::Pole | ObstacleKind::Walker => Shape::Cylinder {
                        cx: x,
                        cy: y,
                        r: s * rng.range(0.15, 0.5),
                        z0: 0.0,
                        z1: h,
                    },
                    ObstacleKind::Panel => {
                        let half = s * rng.range(0.5, 1.0) * 0.5;
                        let thick = 0.025;
                        let (hx, hy) = if rng.below(2) == 0 {
                            (thick, half)
                        } else {
                            (half, thick)
                        };
                        let hang = rng.below(2) == 0;
                        let (z0, z1) = if hang {
                            (h * rng.range(0.3, 0.6), h)
                        } else {
                            (0.0, h * rng.range(0.4, 0.8))
                        };
                        Shape::Box {
                            min: [x - hx, y - hy, z0],
                            max: [x + hx, y + hy, z1],
                        }
                    }
                };
                let (a0, a1) = footprint(&shape);
                // Nothing stands in the doorway or right before or behind it.
                let in_doorway = context.gate().is_some_and(|(gx, _)| {
                    a0[0] < gx + GATE_THICKNESS + margin + s
                        && a1[0] > gx - GATE_THICKNESS - margin - s
                });
                let overlaps = in_doorway
                    || obstacles.iter().any(|o| {
                        let (b0, b1) = footprint(&o.shape);
                        a0[0] < b1[0] + margin
                            && b0[0] < a1[0] + margin
                            && a0[1] < b1[1] + margin
                            && b0[1] < a1[1] + margin
                    });
                if !overlaps {
                    let material = material(&mut rng, 0.2, 0.95);
                    obstacles.push(Obstacle {
                        kind,
                        shape,
                        material,
                    });
                    break;
                }
            }
        }
        World {
            context: context.clone(),
            size: [l, w, h],
            obstacles,
            room_materials,
            start,
            movers: Vec::new(),
        }
    }

    /// Add `count` walkers (poles of `radius`, floor to ceiling) that cross the
    /// room mostly sideways at `speed`, placed clear of the start and drawn
    /// from `seed`. The same arguments give the same walkers.
    /// Put a blank (textureless) wall across the whole room at `x` (m along
    /// the room), floor to ceiling: what census matching cannot see, the test
    /// of a robot that must not read "no stereo answer" as free space. It goes
    /// first in [`World::obstacles`], so it is always rendered.
    pub fn add_blank_wall(&mut self, x: f64) {
        let [_, w, h] = self.size;
        let t = GATE_THICKNESS * 0.5;
        self.obstacles.insert(
            0,
            Obstacle {
                kind: ObstacleKind::Panel,
                shape: Shape::Box {
                    min: [x - t, -w / 2.0, 0.0],
                    max: [x + t, w / 2.0, h],
                },
                material: Material {
                    albedo: 0.6,
                    tex_offset: [0.0; 2],
                    tex_scale: 1.0,
                    contrast: 0.0,
                },
            },
        );
        for m in &mut self.movers {
            m.obstacle += 1;
        }
    }

    pub fn add_walkers(&mut self, count: usize, speed: f64, radius: f64, seed: u64) {
        let mut rng = Rng::new(seed ^ 0x003a_1ce5);
        let [l, w, h] = self.size;
        let x_lo = (START_CLEARANCE + 1.5).min(l * 0.5);
        for _ in 0..count {
            let x = rng.range(x_lo, (l - radius - 0.3).max(x_lo + 1e-3));
            let y = rng.range(-w / 2.0 + radius, w / 2.0 - radius);
            // Mostly across the room, a little along it.
            let heading = if rng.below(2) == 0 { 1.0 } else { -1.0 } * std::f64::consts::FRAC_PI_2
                + rng.range(-0.5, 0.5);
            let v = speed * rng.range(0.7, 1.0);
            self.obstacles.push(Obstacle {
                kind: ObstacleKind::Walker,
                shape: Shape::Cylinder {
                    cx: x,
                    cy: y,
                    r: radius,
                    z0: 0.0,
                    z1: h,
                },
                material: material(&mut rng, 0.2, 0.9),
            });
            self.movers.push(Mover {
                obstacle: self.obstacles.len() - 1,
                velocity: [v * heading.cos(), v * heading.sin()],
                waiting: false,
            });
        }
    }

    /// Move the walkers on by `dt` seconds, reflecting them off the side walls
    /// and off the band of the room they may walk in (clear of the start).
    pub fn advance_movers(&mut self, dt: f64) {
        self.advance_movers_yielding(dt, None, 0.0);
    }

    /// [`World::advance_movers`], except that a walker whose step would bring
    /// its centre closer than `keep` (m) to `vehicle` (x, y), and closer than
    /// it is now, waits this step instead, as people stop for something in
    /// their way.
    pub fn advance_movers_yielding(&mut self, dt: f64, vehicle: Option<[f64; 2]>, keep: f64) {
        let [l, w, _] = self.size;
        let x_lo = (START_CLEARANCE + 1.0).min(l * 0.5);
        for m in &mut self.movers {
            let Some(ob) = self.obstacles.get_mut(m.obstacle) else {
                continue;
            };
            if let Shape::Cylinder { cx, cy, r, .. } = &mut ob.shape {
                if let Some([vx, vy]) = vehicle {
                    let now = (*cx - vx).hypot(*cy - vy);
                    let next = (*cx + m.velocity[0] * dt - vx).hypot(*cy + m.velocity[1] * dt - vy);
                    if next < keep && next < now {
                        m.waiting = true;
                        continue;
                    }
                }
                m.waiting = false;
                *cx += m.velocity[0] * dt;
                *cy += m.velocity[1] * dt;
                let (ylo, yhi) = (-w / 2.0 + *r, w / 2.0 - *r);
                if *cy < ylo || *cy > yhi {
                    m.velocity[1] = -m.velocity[1];
                    *cy = cy.clamp(ylo, yhi);
                }
                let (xlo, xhi) = (x_lo, l - *r);
                if *cx < xlo || *cx > xhi {
                    m.velocity[0] = -m.velocity[0];
                    *cx = cx.clamp(xlo, xhi.max(xlo));
                }
            }
        }
    }

    /// Distance from `p` to the nearest walker's surface (infinite without walkers).
    pub fn mover_clearance(&self, p: [f64; 3]) -> f64 {
        self.movers
            .iter()
            .filter_map(|m| self.obstacles.get(m.obstacle))
            .map(|o| shape_distance(&o.shape, p))
            .fold(f64::INFINITY, f64::min)
    }

    /// Nearest surface along origin + t * dir for t > 0 (the origin must be inside the room).
    pub fn raycast(&self, o: [f64; 3], d: [f64; 3]) -> Hit {
        let mut best = self.room_hit(o, d);
        for (i, ob) in self.obstacles.iter().enumerate() {
            if let Some((t, n)) = intersect(&ob.shape, o, d, best.t) {
                best = Hit {
                    t,
                    normal: n,
                    obstacle: Some(i),
                };
            }
        }
        best
    }

    /// Exit point of a ray from inside the room shell.
    pub fn room_hit(&self, o: [f64; 3], d: [f64; 3]) -> Hit {
        let lo = [0.0, -self.size[1] / 2.0, 0.0];
        let hi = [self.size[0], self.size[1] / 2.0, self.size[2]];
        let mut t = f64::INFINITY;
        let mut normal = [0.0; 3];
        for a in 0..3 {
            if d[a] > 0.0 {
                let ta = (hi[a] - o[a]) / d[a];
                if ta < t {
                    t = ta;
                    normal = [0.0; 3];
                    normal[a] = -1.0;
                }
            } else if d[a] < 0.0 {
                let ta = (lo[a] - o[a]) / d[a];
                if ta < t {
                    t = ta;
                    normal = [0.0; 3];
                    normal[a] = 1.0;
                }
            }
        }
        Hit {
            t,
            normal,
            obstacle: None,
        }
    }

    /// Distance from point `p` to the nearest surface (room shell or obstacle);
    /// negative inside an obstacle or outside the room.
    pub fn clearance(&self, p: [f64; 3]) -> f64 {
        let [l, w, h] = self.size;
        let mut d = p[0]
            .min(l - p[0])
            .min(p[1] + w / 2.0)
            .min(w / 2.0 - p[1])
            .min(p[2])
            .min(h - p[2]);
        for ob in &self.obstacles {
            d = d.min(shape_distance(&ob.shape, p));
        }
        d
    }

    /// Whether a sphere of `radius` at `p` touches any surface.
    pub fn collides(&self, p: [f64; 3], radius: f64) -> bool {
        self.clearance(p) < radius
    }

    /// Like [`World::clearance`] but ignoring the floor, for ground robots.
    pub fn clearance_above_floor(&self, p: [f64; 3]) -> f64 {
        let [l, w, _] = self.size;
        let mut d = p[0].min(l - p[0]).min(p[1] + w / 2.0).min(w / 2.0 - p[1]);
        for ob in &self.obstacles {
            d = d.min(shape_distance(&ob.shape, p));
        }
        d
    }
}

/// Signed distance from `p` to a shape (negative inside).
pub fn shape_distance(s: &Shape, p: [f64; 3]) -> f64 {
    match *s {
        Shape::Box { min, max } => {
            let mut outside = 0.0f64;
            let mut inside = f64::NEG_INFINITY;
            for a in 0..3 {
                let c = (min[a] + max[a]) * 0.5;
                let e = (max[a] - min[a]) * 0.5;
                let q = (p[a] - c).abs() - e;
                outside += q.max(0.0).powi(2);
                inside = inside.max(q);
            }
            outside.sqrt() + inside.min(0.0)
        }
        Shape::Cylinder { cx, cy, r, z0, z1 } => {
            let radial = ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt() - r;
            let axial = (p[2] - (z0 + z1) * 0.5).abs() - (z1 - z0) * 0.5;
            let out = (radial.max(0.0).powi(2) + axial.max(0.0).powi(2)).sqrt();
            out + radial.max(axial).min(0.0)
        }
    }
}

/// Nearest entry of ray o + t d into a shape with 0 < t < t_max, with the normal there.
#[inline]
pub fn intersect(s: &Shape, o: [f64; 3], d: [f64; 3], t_max: f64) -> Option<(f64, [f64; 3])> {
    match *s {
        Shape::Box { min, max } => {
            let mut t0 = 0.0f64;
            let mut t1 = t_max;
            let mut axis = usize::MAX;
            let mut sign = 0.0;
            for a in 0..3 {
                if d[a] == 0.0 {
                    if o[a] < min[a] || o[a] > max[a] {
                        return None;
                    }
                    continue;
                }
                let inv = 1.0 / d[a];
                let (mut ta, mut tb) = ((min[a] - o[a]) * inv, (max[a] - o[a]) * inv);
                let mut sg = -1.0;
                if ta > tb {
                    std::mem::swap(&mut ta, &mut tb);
                    sg = 1.0;
                }
                if ta > t0 {
                    t0 = ta;
                    axis = a;
                    sign = sg;
                }
                t1 = t1.min(tb);
                if t0 > t1 {
                    return None;
                }
            }
            if axis == usize::MAX || t0 <= 0.0 || t0 >= t_max {
                return None; // starts inside (a collision) or beyond the current hit
            }
            let mut n = [0.0; 3];
            n[axis] = sign;
            Some((t0, n))
        }
        Shape::Cylinder { cx, cy, r, z0, z1 } => {
            let (ox, oy) = (o[0] - cx, o[1] - cy);
            let a = d[0] * d[0] + d[1] * d[1];
            if a <= 0.0 {
                return None;
            }
            let b = ox * d[0] + oy * d[1];
            let c = ox * ox + oy * oy - r * r;
            let disc = b * b - a * c;
            if disc < 0.0 || c < 0.0 {
                return None;
            }
            let t = (-b - disc.sqrt()) / a;
            if t <= 0.0 || t >= t_max {
                return None;
            }
            let z = o[2] + t * d[2];
            if z < z0 || z > z1 {
                return None; // poles span floor to ceiling; caps are never seen from inside the room
            }
            let (nx, ny) = ((ox + t * d[0]) / r, (oy + t * d[1]) / r);
            Some((t, [nx, ny, 0.0]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_respects_the_start_zone() {
        let c = Context::default();
        let a = World::generate(&c, 5);
        let b = World::generate(&c, 5);
        let d = World::generate(&c, 6);
        assert_eq!(a.obstacles, b.obstacles);
        assert_ne!(a.obstacles, d.obstacles);
        assert_eq!(a.obstacles.len(), c.obstacle_count as usize);
        for o in &a.obstacles {
            let (lo, hi) = footprint(&o.shape);
            assert!(lo[0] >= START_CLEARANCE - 1e-9, "{o:?}");
            assert!(hi[0] <= c.room_length + 1e-9 && lo[1] >= -c.room_width / 2.0 - 1e-9);
        }
        assert!(!a.collides(a.start, 0.3));
    }

    #[test]
    fn a_doorway_wall_blocks_all_but_its_opening_and_keeps_obstacles_away() {
        let c = Context {
            room_length: 16.0,
            room_width: 6.0,
            obstacle_count: 20,
            obstacle_size: 0.5,
            gate_width: 1.0,
            gate_offset: 0.5,
            ..Context::default()
        };
        let (gx, [y0, y1]) = c.gate().unwrap();
        assert_eq!(gx, 8.0);
        // Half way from the middle to the left wall's limit: centre 0.5 * (6 - 1) / 2.
        assert!((y0 - 0.75).abs() < 1e-12 && (y1 - 1.75).abs() < 1e-12);
        let w = World::generate(&c, 3);
        assert_eq!(w.obstacles.len(), 2 + c.obstacle_count as usize);
        // Through the opening the ray reaches the far wall; beside it, the doorway wall.
        let empty = World::generate(
            &Context {
                obstacle_count: 0,
                ..c.clone()
            },
            3,
        );
        let through = empty.raycast([1.0, 1.25, 1.0], [1.0, 0.0, 0.0]);
        let blocked = empty.raycast([1.0, -1.0, 1.0], [1.0, 0.0, 0.0]);
        assert!((blocked.t - (gx - GATE_THICKNESS / 2.0 - 1.0)).abs() < 1e-9);
        assert!((through.t - 15.0).abs() < 1e-9, "{}", through.t);
        for o in &w.obstacles[2..] {
            let (lo, hi) = footprint(&o.shape);
            assert!(
                hi[0] < gx - GATE_THICKNESS || lo[0] > gx + GATE_THICKNESS,
                "{o:?}"
            );
        }
        // No doorway: the same world as before doorways existed (same draws).
        let plain = Context {
            gate_width: 0.0,
            ..c.clone()
        };
        assert!(plain.gate().is_none());
        assert_eq!(World::generate(&plain, 3).obstacles.len(), 20);
        // Openings narrower than 0.4 m or wider than the room are refused.
        for bad in [0.2, 7.0] {
            let e = Context {
                gate_width: bad,
                ..c.clone()
            }
            .validate()
            .unwrap_err();
            assert!(e.to_string().contains("gate_width"), "{e}");
        }
    }

    #[test]
    fn raycast_hits_walls_at_the_right_distance() {
        let c = Context {
            obstacle_count: 0,
            ..Context::default()
        };
        let w = World::generate(&c, 1);
        let hit = w.raycast([1.0, 0.0, 1.0], [1.0, 0.0, 0.0]);
        assert!((hit.t - 19.0).abs() < 1e-12);
        assert_eq!(hit.normal, [-1.0, 0.0, 0.0]);
        let hit = w.raycast([1.0, 0.0, 1.0], [0.0, 0.0, -2.0]);
        assert!((hit.t - 0.5).abs() < 1e-12);
    }

    #[test]
    fn box_and_cylinder_intersections_and_distances_are_exact() {
        let b = Shape::Box {
            min: [5.0, -1.0, 0.0],
            max: [6.0, 1.0, 2.0],
        };
        let (t, n) = intersect(&b, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], 100.0).unwrap();
        assert!((t - 5.0).abs() < 1e-12 && n == [-1.0, 0.0, 0.0]);
        assert!(intersect(&b, [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], 100.0).is_none());
        assert!(intersect(&b, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], 4.0).is_none());
        assert!((shape_distance(&b, [4.0, 0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((shape_distance(&b, [5.5, 0.0, 1.0]) + 0.5).abs() < 1e-12);
        let c = Shape::Cylinder {
            cx: 3.0,
            cy: 0.0,
            r: 0.5,
            z0: 0.0,
            z1: 3.0,
        };
        let (t, n) = intersect(&c, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], 100.0).unwrap();
        assert!((t - 2.5).abs() < 1e-12 && (n[0] + 1.0).abs() < 1e-12);
        let (t, _) = intersect(&c, [0.0, 0.3, 1.0], [2.0, 0.0, 0.0], 100.0).unwrap();
        let x = 3.0 - (0.25f64 - 0.09).sqrt();
        assert!((t * 2.0 - x).abs() < 1e-12);
        assert!((shape_distance(&c, [1.0, 0.0, 1.0]) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn collision_detection_sees_obstacles_walls_floor_and_ceiling() {
        let c = Context {
            obstacle_count: 0,
            ..Context::default()
        };
        let mut w = World::generate(&c, 1);
        w.obstacles.push(Obstacle {
            kind: ObstacleKind::Pole,
            shape: Shape::Cylinder {
                cx: 5.0,
                cy: 0.0,
                r: 0.2,
                z0: 0.0,
                z1: 3.0,
            },
            material: w.room_materials[0],
        });
        assert!(!w.collides([4.5, 0.0, 1.0], 0.25));
        assert!(w.collides([4.6, 0.0, 1.0], 0.25));
        assert!(w.collides([3.0, 0.0, 0.1], 0.15)); // floor
        assert!(w.collides([3.0, 0.0, 2.95], 0.15)); // ceiling
        assert!(w.collides([3.0, 3.9, 1.0], 0.15)); // side wall
        assert!(w.collides([19.9, 0.0, 1.0], 0.15)); // end wall
        assert!(!w.collides([3.0, 0.0, 1.5], 0.15));
        assert!(w.clearance_above_floor([3.0, 0.0, 0.0]) > 1.0);
    }

    #[test]
    fn walkers_walk_inside_the_room_and_are_seen() {
        let c = Context {
            obstacle_count: 0,
            ..Context::default()
        };
        let mut w = World::generate(&c, 5);
        w.add_walkers(3, 0.8, 0.25, 9);
        assert_eq!(w.movers.len(), 3);
        assert_eq!(w.obstacles.len(), 3);
        let mut same = World::generate(&c, 5);
        same.add_walkers(3, 0.8, 0.25, 9);
        assert_eq!(same.obstacles, w.obstacles, "same seed, same walkers");
        let start = w.obstacles.clone();
        let (l, half) = (w.size[0], w.size[1] / 2.0);
        for _ in 0..2000 {
            w.advance_movers(0.1);
            for o in &w.obstacles {
                let Shape::Cylinder { cx, cy, r, .. } = o.shape else {
                    panic!("walkers are cylinders")
                };
                assert!(
                    cy - r >= -half - 1e-9 && cy + r <= half + 1e-9,
                    "left the room: {cy}"
                );
                assert!(
                    cx >= START_CLEARANCE + 1.0 - 1e-9 && cx + r <= l + 1e-9,
                    "{cx}"
                );
            }
        }
        assert_ne!(w.obstacles, start, "walkers move");
        // The clearance and ray casts see them where they are now.
        let Shape::Cylinder { cx, cy, r, .. } = w.obstacles[0].shape else {
            unreachable!()
        };
        let p = [cx - 1.0, cy, 1.0];
        assert!((w.mover_clearance(p) - (1.0 - r)).abs() < 1e-9 || w.mover_clearance(p) < 1.0 - r);
        let hit = w.raycast(p, [1.0, 0.0, 0.0]);
        assert!(hit.t <= 1.0 - r + 1e-9, "{}", hit.t);
    }

    #[test]
    fn walkers_wait_for_the_vehicle_and_walk_on_when_it_is_gone() {
        let c = Context {
            obstacle_count: 0,
            ..Context::default()
        };
        let mut w = World::generate(&c, 5);
        w.add_walkers(1, 0.8, 0.25, 9);
        // The walker at the room's middle walking left at 0.8 m/s; the vehicle
        // 1 m ahead on its path.
        let mid = w.size[0] / 2.0;
        if let Shape::Cylinder { cx, cy, .. } = &mut w.obstacles[0].shape {
            (*cx, *cy) = (mid, 0.0);
        }
        w.movers[0].velocity = [0.0, 0.8];
        let speed = 0.8;
        let ahead = [mid, 1.0];
        assert!(w.size[1] / 2.0 > 1.5, "room too narrow for the test");
        let centre = |w: &World| match w.obstacles[0].shape {
            Shape::Cylinder { cx, cy, .. } => [cx, cy],
            _ => unreachable!(),
        };
        let mut closest = f64::INFINITY;
        for _ in 0..40 {
            w.advance_movers_yielding(0.05, Some(ahead), 0.7);
            let p = centre(&w);
            closest = closest.min((p[0] - ahead[0]).hypot(p[1] - ahead[1]));
        }
        assert!(closest >= 0.7 - 1e-9, "came within {closest} m");
        // It is seen to wait: standing still, though it means to walk on.
        assert!(w.movers[0].waiting);
        assert_eq!(w.movers[0].current_velocity(), [0.0; 2]);
        assert_eq!(w.movers[0].velocity, [0.0, 0.8]);
        assert!(
            closest < 0.7 + speed * 0.05 + 1e-9,
            "stopped early: {closest} m"
        );
        // Without the vehicle it walks on through that spot.
        let before = centre(&w);
        w.advance_movers_yielding(0.05, None, 0.7);
        assert_ne!(centre(&w), before, "a waiting walker walks on");
        assert!(!w.movers[0].waiting);
        assert_eq!(w.movers[0].current_velocity(), [0.0, 0.8]);
    }
}
