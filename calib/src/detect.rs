//! Checkerboard inner-corner detection: a saddle-point (X-junction) response on a
//! smoothed image, non-maximum suppression, sub-pixel saddle refinement from a local
//! quadratic fit, and ordering into the board's grid row by row. Views that do not
//! show the complete grid are rejected (never returned partially or mis-ordered).

use thiserror::Error;

/// Why a view was rejected.
#[derive(Debug, Error, PartialEq)]
pub enum DetectError {
    /// Image buffer and size disagree.
    #[error("image buffer of {len} bytes does not match {width}x{height}")]
    Size {
        len: usize,
        width: usize,
        height: usize,
    },
    /// Fewer corner candidates than the board has.
    #[error("found {found} corner candidates, the {cols}x{rows} board needs {need}")]
    TooFew {
        found: usize,
        need: usize,
        cols: usize,
        rows: usize,
    },
    /// The candidates do not form the complete grid.
    #[error("corners do not form a complete {cols}x{rows} grid ({why})")]
    NoGrid {
        cols: usize,
        rows: usize,
        why: String,
    },
}

fn blur(img: &[f32], w: usize, h: usize, passes: usize) -> Vec<f32> {
    // Repeated 3-tap binomial filter ≈ Gaussian.
    let mut a = img.to_vec();
    let mut b = vec![0.0; w * h];
    for _ in 0..passes {
        for y in 0..h {
            for x in 0..w {
                let l = a[y * w + x.saturating_sub(1)];
                let r = a[y * w + (x + 1).min(w - 1)];
                b[y * w + x] = 0.25 * l + 0.5 * a[y * w + x] + 0.25 * r;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let u = b[y.saturating_sub(1) * w + x];
                let d = b[(y + 1).min(h - 1) * w + x];
                a[y * w + x] = 0.25 * u + 0.5 * b[y * w + x] + 0.25 * d;
            }
        }
    }
    a
}

/// Whether the neighbourhood of (x, y) looks like an X-junction: around a ring the
/// intensity crosses its mid-level exactly four times and opposite sectors match (an
/// L-corner or T-junction at the board's edge crosses twice or three times).
fn is_x_junction(s: &[f32], w: usize, h: usize, x: f64, y: f64, radius: f64) -> bool {
    const N: usize = 32;
    let mut ring = [0f32; N];
    for (k, v) in ring.iter_mut().enumerate() {
        let a = k as f64 * std::f64::consts::TAU / N as f64;
        let (px, py) = (x + radius * a.cos(), y + radius * a.sin());
        if px < 0.0 || py < 0.0 || px >= (w - 1) as f64 || py >= (h - 1) as f64 {
            return false;
        }
        let (x0, y0) = (px as usize, py as usize);
        let (fx, fy) = ((px - x0 as f64) as f32, (py - y0 as f64) as f32);
        let i = y0 * w + x0;
        let top = s[i] + (s[i + 1] - s[i]) * fx;
        let bot = s[i + w] + (s[i + w + 1] - s[i + w]) * fx;
        *v = top + (bot - top) * fy;
    }
    let (lo, hi) = ring
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if hi - lo < 20.0 {
        return false;
    }
    let mid = (lo + hi) / 2.0;
    let crossings = (0..N)
        .filter(|&k| (ring[k] > mid) != (ring[(k + 1) % N] > mid))
        .count();
    // Opposite points of an X-junction have the same colour.
    let symmetric = (0..N / 2)
        .filter(|&k| (ring[k] > mid) == (ring[k + N / 2] > mid))
        .count();
    crossings == 4 && symmetric >= N / 2 - 4
}

/// Sub-pixel saddle point of the smoothed image around (x, y) from a 5x5 quadratic fit.
fn saddle(s: &[f32], w: usize, x: usize, y: usize) -> Option<[f64; 2]> {
    // Least squares for f = a x² + b xy + c y² + d x + e y + g on offsets -2..=2.
    let mut ata = [[0.0f64; 6]; 6];
    let mut atb = [0.0f64; 6];
    for dy in -2i64..=2 {
        for dx in -2i64..=2 {
            let (fx, fy) = (dx as f64, dy as f64);
            let row = [fx * fx, fx * fy, fy * fy, fx, fy, 1.0];
            let v = s[(y as i64 + dy) as usize * w + (x as i64 + dx) as usize] as f64;
            for i in 0..6 {
                atb[i] += row[i] * v;
                for j in 0..6 {
                    ata[i][j] += row[i] * row[j];
                }
            }
        }
    }
    let m = nalgebra::Matrix6::from_fn(|i, j| ata[i][j]);
    let sol = m.lu().solve(&nalgebra::Vector6::from_column_slice(&atb))?;
    let (a, b, c, d, e) = (sol[0], sol[1], sol[2], sol[3], sol[4]);
    let det = 4.0 * a * c - b * b;
    if det >= 0.0 {
        return None; // not a saddle
    }
    let ox = (-2.0 * c * d + b * e) / det;
    let oy = (-2.0 * a * e + b * d) / det;
    (ox.abs() <= 1.5 && oy.abs() <= 1.5).then_some([x as f64 + ox, y as f64 + oy])
}

/// Find the `cols` x `rows` inner corners of a checkerboard in an 8-bit image, ordered
/// row by row starting at the corner nearest the image's top-left, rows running along
/// the board's `cols` direction.
pub fn find_corners(
    img: &[u8],
    width: usize,
    height: usize,
    cols: usize,
    rows: usize,
) -> Result<Vec<[f64; 2]>, DetectError> {
    if img.len() != width * height || width < 16 || height < 16 {
        return Err(DetectError::Size {
            len: img.len(),
            width,
            height,
        });
    }
    let need = cols * rows;
    let f: Vec<f32> = img.iter().map(|&v| v as f32).collect();
    let s = blur(&f, width, height, 3);
    // Saddle response: minus the Hessian determinant (positive at X-junctions).
    let mut resp = vec![0f32; width * height];
    for y in 2..height - 2 {
        for x in 2..width - 2 {
            let i = y * width + x;
            let ixx = s[i - 2] + s[i + 2] - 2.0 * s[i];
            let iyy = s[i - 2 * width] + s[i + 2 * width] - 2.0 * s[i];
            let ixy = (s[i - 2 * width - 2] + s[i + 2 * width + 2]
                - s[i - 2 * width + 2]
                - s[i + 2 * width - 2])
                / 4.0;
            resp[i] = (ixy * ixy - ixx * iyy).max(0.0);
        }
    }
    let max = resp.iter().copied().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return Err(DetectError::TooFew {
            found: 0,
            need,
            cols,
            rows,
        });
    }
    let thr = 0.08 * max;
    let mut cands: Vec<(f32, [f64; 2])> = Vec::new();
    let r = 4;
    for y in r..height - r {
        for x in r..width - r {
            let v = resp[y * width + x];
            if v < thr {
                continue;
            }
            let mut is_max = true;
            'n: for yy in y - r..=y + r {
                for xx in x - r..=x + r {
                    let o = resp[yy * width + xx];
                    if o > v || (o == v && (yy, xx) < (y, x)) {
                        is_max = false;
                        break 'n;
                    }
                }
            }
            if is_max
                && let Some(p) = saddle(&s, width, x, y)
                && is_x_junction(&s, width, height, p[0], p[1], 5.0)
            {
                cands.push((v, p));
            }
        }
    }
    if cands.len() < need {
        return Err(DetectError::TooFew {
            found: cands.len(),
            need,
            cols,
            rows,
        });
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    cands.truncate(need * 2);
    let pts: Vec<[f64; 2]> = cands.iter().map(|c| c.1).collect();
    let image = Smoothed {
        s: &s,
        w: width,
        h: height,
    };
    order_grid(&pts, cols, rows, &image).map_err(|why| DetectError::NoGrid { cols, rows, why })
}

fn sub(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] - b[0], a[1] - b[1]]
}
fn add(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] + b[0], a[1] + b[1]]
}
fn norm(a: [f64; 2]) -> f64 {
    (a[0] * a[0] + a[1] * a[1]).sqrt()
}

/// The smoothed image the cell colours are read from.
struct Smoothed<'a> {
    s: &'a [f32],
    w: usize,
    h: usize,
}

impl Smoothed<'_> {
    /// Mean over 3x3 pixels around `p`; `None` outside the image.
    fn at(&self, p: [f64; 2]) -> Option<f32> {
        let (x, y) = (p[0].round() as i64, p[1].round() as i64);
        if x < 1 || y < 1 || x >= self.w as i64 - 1 || y >= self.h as i64 - 1 {
            return None;
        }
        let (x, y) = (x as usize, y as usize);
        let mut sum = 0.0;
        for yy in y - 1..=y + 1 {
            for xx in x - 1..=x + 1 {
                sum += self.s[yy * self.w + xx];
            }
        }
        Some(sum / 9.0)
    }
}

type Grid = std::collections::HashMap<(i64, i64), usize>;

/// Two grid corners on a window's edge and the outward step, in grid units.
type Edge = ((i64, i64), (i64, i64), (i64, i64));

/// How well the cells just outside a window of corners continue the
/// checkerboard inside it, per side (top, bottom, left, right): the fraction of
/// readable cells whose colour the inside's parity predicts, or `None` when too
/// few cells are readable. The inner corners of the board have board squares all
/// round them; a window that includes a row of corners along the board's edge
/// has the margin (one colour) beyond it, which agrees with only half the cells.
fn ring_scores(
    grid: &Grid,
    pts: &[[f64; 2]],
    img: &Smoothed<'_>,
    (i0, j0): (i64, i64),
    (gw, gh): (i64, i64),
) -> Option<[Option<f64>; 4]> {
    let inside = |i: i64, j: i64| i >= i0 && i < i0 + gw && j >= j0 && j < j0 + gh;
    let corner = |i: i64, j: i64| -> Option<[f64; 2]> {
        if let Some(&k) = grid.get(&(i, j)) {
            return Some(pts[k]);
        }
        // Outside the grown grid: extrapolate one step out from the window's edge.
        let (ci, cj) = (i.clamp(i0, i0 + gw - 1), j.clamp(j0, j0 + gh - 1));
        let (di, dj) = (i - ci, j - cj);
        let c = pts[*grid.get(&(ci, cj))?];
        let b = pts[*grid.get(&(ci - di, cj - dj))?];
        Some([2.0 * c[0] - b[0], 2.0 * c[1] - b[1]])
    };
    let cell = |i: i64, j: i64| -> Option<f32> {
        let c = [
            corner(i, j)?,
            corner(i + 1, j)?,
            corner(i, j + 1)?,
            corner(i + 1, j + 1)?,
        ];
        img.at([
            c.iter().map(|p| p[0]).sum::<f64>() / 4.0,
            c.iter().map(|p| p[1]).sum::<f64>() / 4.0,
        ])
    };
    // Parity -> colour from the cells inside the window.
    let (mut sum, mut n) = ([0.0f64; 2], [0usize; 2]);
    for j in j0..j0 + gh - 1 {
        for i in i0..i0 + gw - 1 {
            debug_assert!(inside(i, j));
            if let Some(v) = cell(i, j) {
                let p = ((i + j).rem_euclid(2)) as usize;
                sum[p] += f64::from(v);
                n[p] += 1;
            }
        }
    }
    if n[0] == 0 || n[1] == 0 {
        return None;
    }
    let (m0, m1) = (sum[0] / n[0] as f64, sum[1] / n[1] as f64);
    if (m0 - m1).abs() < 20.0 {
        return None;
    }
    let mid = (m0 + m1) / 2.0;
    let light0 = m0 > m1;
    // A side's cells are read near the window's edge (a third of a square out),
    // so narrow outer squares (boards cut at the print's edge) are still seen.
    let outer = |a: (i64, i64), b: (i64, i64), out: (i64, i64)| -> Option<f32> {
        let (pa, pb) = (corner(a.0, a.1)?, corner(b.0, b.1)?);
        let (qa, qb) = (
            corner(a.0 + out.0, a.1 + out.1)?,
            corner(b.0 + out.0, b.1 + out.1)?,
        );
        let f = 0.33;
        img.at([
            0.5 * (pa[0] + pb[0]) + f * 0.5 * (qa[0] - pa[0] + qb[0] - pb[0]),
            0.5 * (pa[1] + pb[1]) + f * 0.5 * (qa[1] - pa[1] + qb[1] - pb[1]),
        ])
    };
    // `edges`: the two window corners of each outside cell and the outward step.
    let side = |edges: Vec<Edge>| -> Option<f64> {
        let (mut agree, mut read) = (0usize, 0usize);
        for (a, b, out) in &edges {
            if let Some(v) = outer(*a, *b, *out) {
                read += 1;
                // The cell beyond edge a-b has the parity of its lowest corner.
                let (ci, cj) = (a.0.min(b.0).min(a.0 + out.0), a.1.min(b.1).min(a.1 + out.1));
                let light = f64::from(v) > mid;
                let even = (ci + cj).rem_euclid(2) == 0;
                agree += usize::from(light == (even == light0));
            }
        }
        (read * 2 >= edges.len() && read >= 2).then(|| agree as f64 / read as f64)
    };
    let (i1, j1) = (i0 + gw - 1, j0 + gh - 1);
    Some([
        side((i0..i1).map(|i| ((i, j0), (i + 1, j0), (0, -1))).collect()),
        side((i0..i1).map(|i| ((i, j1), (i + 1, j1), (0, 1))).collect()),
        side((j0..j1).map(|j| ((i0, j), (i0, j + 1), (-1, 0))).collect()),
        side((j0..j1).map(|j| ((i1, j), (i1, j + 1), (1, 0))).collect()),
    ])
}

/// Assign integer grid coordinates by growing from the strongest-connected
/// corner, then pick the complete `cols` x `rows` window whose surroundings
/// continue the checkerboard (so rows of corners along the board's edge, which
/// real boards with a margin produce, are left out rather than mis-ordered).
fn order_grid(
    pts: &[[f64; 2]],
    cols: usize,
    rows: usize,
    img: &Smoothed<'_>,
) -> Result<Vec<[f64; 2]>, String> {
    let n = pts.len();
    let nearest = |p: [f64; 2], exclude: &dyn Fn(usize) -> bool| -> Option<(usize, f64)> {
        (0..n)
            .filter(|&j| !exclude(j))
            .map(|j| (j, norm(sub(pts[j], p))))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    // Seed: the point whose four nearest neighbours are most regular (two opposite pairs).
    let mut best: Option<(f64, usize, [f64; 2], [f64; 2])> = None;
    for i in 0..n {
        let mut d: Vec<(f64, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| (norm(sub(pts[j], pts[i])), j))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        if d.len() < 4 {
            continue;
        }
        let v: Vec<[f64; 2]> = d[..4].iter().map(|&(_, j)| sub(pts[j], pts[i])).collect();
        // Pair each vector with its most opposite one.
        let u = v[0];
        let opp = (1..4)
            .min_by(|&a, &b| {
                (add(u, v[a]).iter().map(|x| x * x).sum::<f64>())
                    .total_cmp(&add(u, v[b]).iter().map(|x| x * x).sum::<f64>())
            })
            .unwrap_or(1);
        let others: Vec<usize> = (1..4).filter(|&k| k != opp).collect();
        let w = v[others[0]];
        let err = norm(add(u, v[opp])) + norm(add(w, v[others[1]]));
        let scale = d[3].0 / d[0].0;
        let score = err / d[0].0 + (scale - 1.0).abs();
        if best.as_ref().is_none_or(|b| score < b.0) {
            best = Some((score, i, u, w));
        }
    }
    let (_, seed, mut u, mut v) = best.ok_or("too few corners")?;
    // Make u point right-ish and v down-ish in the image.
    if u[0].abs() < v[0].abs() {
        std::mem::swap(&mut u, &mut v);
    }
    if u[0] < 0.0 {
        u = [-u[0], -u[1]];
    }
    if v[1] < 0.0 {
        v = [-v[0], -v[1]];
    }
    // Grow: each assigned corner predicts its four neighbours from local steps.
    let mut grid: std::collections::HashMap<(i64, i64), usize> = std::collections::HashMap::new();
    let mut used = vec![false; n];
    let mut step_u: std::collections::HashMap<(i64, i64), [f64; 2]> =
        std::collections::HashMap::new();
    let mut step_v: std::collections::HashMap<(i64, i64), [f64; 2]> =
        std::collections::HashMap::new();
    grid.insert((0, 0), seed);
    used[seed] = true;
    step_u.insert((0, 0), u);
    step_v.insert((0, 0), v);
    let mut queue = std::collections::VecDeque::from([(0i64, 0i64)]);
    while let Some((i, j)) = queue.pop_front() {
        let p = pts[grid[&(i, j)]];
        let (su, sv) = (step_u[&(i, j)], step_v[&(i, j)]);
        for (di, dj, step) in [
            (1, 0, su),
            (-1, 0, [-su[0], -su[1]]),
            (0, 1, sv),
            (0, -1, [-sv[0], -sv[1]]),
        ] {
            let key = (i + di, j + dj);
            if grid.contains_key(&key) {
                continue;
            }
            // The step from the nearest evidence: the corner behind continued
            // straight on, else the same move made one row or column aside, else
            // the step carried here. (A carried step can be twice too long where a
            // steeply tilted board's squares shrink, and would skip a row.)
            let at = |k: (i64, i64)| grid.get(&k).map(|&g| pts[g]);
            let (ai, aj) = (dj.abs(), di.abs());
            let step = at((i - di, j - dj))
                .map(|q| sub(p, q))
                .or_else(|| {
                    [1, -1].into_iter().find_map(|s| {
                        let a = (i + s * ai, j + s * aj);
                        Some(sub(at((a.0 + di, a.1 + dj))?, at(a)?))
                    })
                })
                .unwrap_or(step);
            let pred = add(p, step);
            if let Some((k, dist)) = nearest(pred, &|j| used[j])
                && dist < 0.3 * norm(step)
            {
                used[k] = true;
                grid.insert(key, k);
                let actual = sub(pts[k], p);
                let (nu, nv) = if di != 0 {
                    ([actual[0] * di as f64, actual[1] * di as f64], sv)
                } else {
                    (su, [actual[0] * dj as f64, actual[1] * dj as f64])
                };
                step_u.insert(key, nu);
                step_v.insert(key, nv);
                queue.push_back(key);
            }
        }
    }
    let (imin, imax) = (
        grid.keys().map(|k| k.0).min().unwrap_or(0),
        grid.keys().map(|k| k.0).max().unwrap_or(0),
    );
    let (jmin, jmax) = (
        grid.keys().map(|k| k.1).min().unwrap_or(0),
        grid.keys().map(|k| k.1).max().unwrap_or(0),
    );
    let (gw, gh) = ((imax - imin + 1) as usize, (jmax - jmin + 1) as usize);
    // Candidate windows of the board's size (either orientation) in which every
    // corner was found; each scored by how the cells around it continue the board.
    let mut windows: Vec<(f64, i64, i64, bool)> = Vec::new();
    for transposed in [false, true] {
        let (ww, wh) = if transposed {
            (rows, cols)
        } else {
            (cols, rows)
        };
        if ww > gw || wh > gh || (transposed && cols == rows) {
            continue;
        }
        for j0 in jmin..=jmax - wh as i64 + 1 {
            for i0 in imin..=imax - ww as i64 + 1 {
                let complete = (j0..j0 + wh as i64)
                    .all(|j| (i0..i0 + ww as i64).all(|i| grid.contains_key(&(i, j))));
                if !complete {
                    continue;
                }
                let Some(sides) = ring_scores(&grid, pts, img, (i0, j0), (ww as i64, wh as i64))
                else {
                    continue;
                };
                // Every readable side must continue the checkerboard; unreadable
                // sides (beyond the image) neither help nor hurt.
                let read: Vec<f64> = sides.iter().flatten().copied().collect();
                if read.iter().all(|&v| v >= 0.75) {
                    let score = read.iter().sum::<f64>() / read.len().max(1) as f64;
                    windows.push((score, i0, j0, transposed));
                }
            }
        }
    }
    windows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (_, i0, j0, transposed) = match windows.as_slice() {
        [] => {
            return Err(if grid.len() < cols * rows {
                format!("grid has {} of {} corners", grid.len(), cols * rows)
            } else {
                format!(
                    "grew a {gw}x{gh} grid with no {cols}x{rows} window surrounded by board squares"
                )
            });
        }
        [one] => *one,
        [a, b, ..] if a.0 - b.0 >= 0.15 => *a,
        _ => {
            return Err(format!(
                "grew a {gw}x{gh} grid in which {} {cols}x{rows} windows fit equally well",
                windows.len()
            ));
        }
    };
    let mut out = Vec::with_capacity(cols * rows);
    for r in 0..rows as i64 {
        for c in 0..cols as i64 {
            let key = if transposed {
                (i0 + r, j0 + c)
            } else {
                (i0 + c, j0 + r)
            };
            out.push(pts[*grid.get(&key).ok_or("hole in the grid")?]);
        }
    }
    // Start at the corner nearest the image's top-left (rotate the order by 180° if needed).
    let (first, last) = (out[0], out[out.len() - 1]);
    if first[0] + first[1] > last[0] + last[1] {
        out.reverse();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PinholeRadTan;
    use crate::mono::Pose;
    use crate::synthetic::render_board;

    fn render(
        cam: &PinholeRadTan,
        pose: &Pose,
        cols: usize,
        rows: usize,
        sq: f64,
        noise: f64,
    ) -> (Vec<u8>, Vec<[f64; 2]>) {
        render_board(cam, pose, cols, rows, sq, noise, 640, 480, 9)
    }

    #[test]
    fn finds_ordered_sub_pixel_corners_under_distortion_and_perspective() {
        let cam = PinholeRadTan {
            fx: 410.0,
            fy: 405.0,
            cx: 321.0,
            cy: 238.0,
            dist: [-0.25, 0.07, 0.001, -0.0005, 0.0],
        };
        for (k, pose) in [
            Pose {
                rvec: [0.0, 0.0, 0.0],
                t: [-0.1, -0.06, 0.4],
            },
            Pose {
                rvec: [0.3, -0.25, 0.1],
                t: [-0.09, -0.07, 0.42],
            },
            Pose {
                rvec: [-0.2, 0.35, -0.15],
                t: [-0.12, -0.05, 0.45],
            },
        ]
        .iter()
        .enumerate()
        {
            let (img, truth) = render(&cam, pose, 9, 6, 0.025, 4.0);
            let found =
                find_corners(&img, 640, 480, 9, 6).unwrap_or_else(|e| panic!("view {k}: {e}"));
            assert_eq!(found.len(), 54);
            // Same order as the truth (or its 180° rotation, whichever starts top-left).
            let same = norm(sub(found[0], truth[0])) < norm(sub(found[0], truth[53]));
            let mut err = 0.0f64;
            for (i, f) in found.iter().enumerate() {
                let t = if same { truth[i] } else { truth[53 - i] };
                err = err.max(norm(sub(*f, t)));
            }
            assert!(err < 0.25, "view {k}: max corner error {err} px");
        }
    }

    #[test]
    fn small_squares_on_the_far_side_of_a_steep_board_do_not_skip_a_row() {
        // A 90° lens and a 21x15 board of 2 cm squares close up, turned 31° about
        // each image axis in turn: the far side's squares are about half the near
        // side's (some 8 px), where a step carried over from the near side would
        // predict the next row two rows on.
        let cam = PinholeRadTan {
            fx: 320.0,
            fy: 320.0,
            cx: 319.5,
            cy: 239.5,
            dist: [-0.22, 0.06, 0.0008, -0.0005, 0.0],
        };
        let (cols, rows, sq) = (21, 15, 0.02);
        let (bw, bh) = (sq * (cols - 1) as f64, sq * (rows - 1) as f64);
        for (k, rvec) in [
            [0.0, 0.55, 0.05],
            [0.0, -0.55, 0.0],
            [0.55, 0.0, 0.0],
            [-0.5, 0.3, 0.1],
        ]
        .into_iter()
        .enumerate()
        {
            // Turned about the board's centre, which sits 0.32 m ahead.
            let c = nalgebra::Rotation3::new(nalgebra::Vector3::from(rvec))
                * nalgebra::Vector3::new(bw / 2.0, bh / 2.0, 0.0);
            let pose = Pose {
                rvec,
                t: [-c.x, -c.y, 0.32 - c.z],
            };
            let (img, truth) = render(&cam, &pose, cols, rows, sq, 2.0);
            assert!(
                truth
                    .iter()
                    .all(|c| c[0] > 8.0 && c[1] > 8.0 && c[0] < 631.0 && c[1] < 471.0),
                "view {k}: the board must be inside the image"
            );
            let found = find_corners(&img, 640, 480, cols, rows)
                .unwrap_or_else(|e| panic!("view {k}: {e}"));
            let n = cols * rows;
            let same = norm(sub(found[0], truth[0])) < norm(sub(found[0], truth[n - 1]));
            let err = (0..n)
                .map(|i| {
                    norm(sub(
                        found[i],
                        if same { truth[i] } else { truth[n - 1 - i] },
                    ))
                })
                .fold(0.0, f64::max);
            assert!(err < 0.3, "view {k}: max corner error {err} px");
        }
    }

    #[test]
    fn survives_blur_and_uneven_light() {
        let cam = PinholeRadTan {
            fx: 410.0,
            fy: 405.0,
            cx: 321.0,
            cy: 238.0,
            dist: [-0.25, 0.07, 0.0, 0.0, 0.0],
        };
        let pose = Pose {
            rvec: [0.25, -0.3, 0.05],
            t: [-0.1, -0.06, 0.42],
        };
        let (img, truth) = render(&cam, &pose, 9, 6, 0.025, 3.0);
        let (w, h) = (640, 480);
        // Light falling off from left (130 %) to right (35 %) and top to bottom, then a
        // 5x5 box blur (a slightly defocused lens).
        let lit: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                img[i] as f32 * (1.3 - 0.95 * x) * (1.0 - 0.3 * y)
            })
            .collect();
        let mut blurred = vec![0u8; w * h];
        for y in 2..h - 2 {
            for x in 2..w - 2 {
                let mut s = 0.0;
                for dy in 0..5 {
                    for dx in 0..5 {
                        s += lit[(y + dy - 2) * w + x + dx - 2];
                    }
                }
                blurred[y * w + x] = (s / 25.0).clamp(0.0, 255.0) as u8;
            }
        }
        let found = find_corners(&blurred, w, h, 9, 6).unwrap();
        let same = norm(sub(found[0], truth[0])) < norm(sub(found[0], truth[53]));
        let err = found
            .iter()
            .enumerate()
            .map(|(i, f)| norm(sub(*f, if same { truth[i] } else { truth[53 - i] })))
            .fold(0.0f64, f64::max);
        assert!(err < 0.3, "max corner error {err} px");
    }

    #[test]
    fn partial_or_blank_views_are_rejected() {
        let cam = PinholeRadTan {
            fx: 410.0,
            fy: 405.0,
            cx: 321.0,
            cy: 238.0,
            dist: [0.0; 5],
        };
        // Board partly out of view.
        let (img, truth) = render(
            &cam,
            &Pose {
                rvec: [0.0, 0.0, 0.0],
                t: [0.15, -0.06, 0.4],
            },
            9,
            6,
            0.025,
            2.0,
        );
        assert!(
            truth.iter().any(|p| p[0] > 640.0),
            "the board must be cut by the image border"
        );
        assert!(find_corners(&img, 640, 480, 9, 6).is_err());
        assert!(find_corners(&[128u8; 640 * 480], 640, 480, 9, 6).is_err());
        assert!(matches!(
            find_corners(&[0u8; 10], 640, 480, 9, 6),
            Err(DetectError::Size { .. })
        ));
    }
}
