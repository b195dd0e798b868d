//! Hand-fused small multi-layer perceptrons on the CPU, for learners whose
//! networks are so small (two hidden layers of 32–64) that a tensor library's
//! per-call cost, not arithmetic, would bound their speed.
//!
//! A network is one flat `f32` parameter vector (each layer's weights,
//! input-major, then its bias), so that Adam, Polyak averaging, gradient sums
//! and the firmware's weight table all see one array. Hidden layers use ReLU;
//! the output layer is linear or `tanh`. Batches are row-major
//! `[batch][features]`. The loops are written so that the compiler vectorises
//! them: register-blocked micro-kernels (4 rows × 8 outputs) for the forward
//! pass, the weight gradient and the input gradient (a forward pass through
//! the transposed weights).
//!
//! The forward pass of a single observation is the same arithmetic as
//! `fclink::policy` (the firmware's), so a policy trained here flies there with
//! the same numbers to rounding.

use types::rng::Rng;

/// What the output layer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Nothing (a critic's value).
    Linear,
    /// `tanh` (an actor's bounded action).
    Tanh,
}

/// A fully connected network: layer sizes and one flat parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    sizes: Vec<usize>,
    output: Output,
    /// Every layer's weights (`[input][output]`) then bias, layer after layer.
    pub params: Vec<f32>,
}

/// Number of parameters of a network with these layer sizes.
pub fn param_count(sizes: &[usize]) -> usize {
    sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

impl Net {
    /// Layers `sizes[0] -> ... -> sizes[last]`, weights uniform in
    /// ±1/sqrt(fan-in) (biases too), drawn from `seed`; the output layer's
    /// drawn `out_scale` times smaller (a near-zero first action or value).
    ///
    /// # Panics
    /// With fewer than two sizes or a zero size (a caller's constant).
    pub fn new(sizes: &[usize], output: Output, seed: u64, out_scale: f32) -> Self {
        assert!(
            sizes.len() >= 2 && sizes.iter().all(|&s| s > 0),
            "a network needs at least two non-zero layer sizes: {sizes:?}"
        );
        let mut rng = Rng::new(seed);
        let mut params = Vec::with_capacity(param_count(sizes));
        let last = sizes.len() - 2;
        for (l, w) in sizes.windows(2).enumerate() {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let scale = if l == last { f64::from(out_scale) } else { 1.0 };
            for _ in 0..w[0] * w[1] + w[1] {
                params.push((rng.range(-bound, bound) * scale) as f32);
            }
        }
        Self {
            sizes: sizes.to_vec(),
            output,
            params,
        }
    }

    /// A network from its sizes and parameters (a weight table).
    pub fn from_params(sizes: &[usize], output: Output, params: Vec<f32>) -> Option<Self> {
        (sizes.len() >= 2 && sizes.iter().all(|&s| s > 0) && params.len() == param_count(sizes))
            .then(|| Self {
                sizes: sizes.to_vec(),
                output,
                params,
            })
    }

    /// Layer sizes, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// What the output layer applies.
    pub fn output(&self) -> Output {
        self.output
    }

    /// Input width.
    pub fn input(&self) -> usize {
        self.sizes[0]
    }

    /// Output width.
    pub fn width(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// `self ← (1 − tau)·self + tau·online` (Polyak averaging of a target network).
    #[inline(always)]
    pub fn soft_update(&mut self, online: &Net, tau: f32) {
        for (t, o) in self.params.iter_mut().zip(&online.params) {
            *t += tau * (o - *t);
        }
    }

    /// The output for a batch `x` (`rows` × input), the activations kept in
    /// `ws` for [`Net::backward`]; returns the output rows.
    pub fn forward<'w>(&self, x: &[f32], rows: usize, ws: &'w mut Workspace) -> &'w [f32] {
        self.forward_with::<false>(x, rows, ws)
    }

    /// [`Net::forward`], its sums fused multiply-adds when `FMA` (for code
    /// compiled with the `fma` target feature; elsewhere `mul_add` would be a
    /// slow library call).
    #[inline(always)]
    pub(crate) fn forward_with<'w, const FMA: bool>(
        &self,
        x: &[f32],
        rows: usize,
        ws: &'w mut Workspace,
    ) -> &'w [f32] {
        ws.acts.resize_with(self.sizes.len(), Vec::new);
        let a0 = &mut ws.acts[0];
        a0.clear();
        a0.extend_from_slice(&x[..rows * self.input()]);
        let mut off = 0;
        let n = self.sizes.len() - 1;
        for l in 0..n {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let w = &self.params[off..off + i * o];
            let b = &self.params[off + i * o..off + i * o + o];
            off += i * o + o;
            let (before, after) = ws.acts.split_at_mut(l + 1);
            let y = &mut after[0];
            y.resize(rows * o, 0.0);
            dense_forward::<FMA>(&before[l], w, b, y, rows, i, o);
            if l + 1 < n {
                for v in y.iter_mut() {
                    *v = v.max(0.0);
                }
            } else if self.output == Output::Tanh {
                for v in y.iter_mut() {
                    *v = v.tanh();
                }
            }
        }
        &ws.acts[n]
    }

    /// Back-propagate `dy` (d loss / d output, `rows` × width) through the
    /// activations of the last [`Net::forward`] in `ws`: the parameter gradient
    /// is added to `grad` (when given) and d loss / d input left in
    /// `ws.dx` (when `want_dx`).
    pub fn backward(
        &self,
        dy: &[f32],
        rows: usize,
        ws: &mut Workspace,
        grad: Option<&mut [f32]>,
        want_dx: bool,
    ) {
        self.backward_with::<false>(dy, rows, ws, grad, want_dx);
    }

    /// [`Net::backward`] with fused multiply-adds when `FMA` (see
    /// [`Net::forward_with`]).
    #[inline(always)]
    pub(crate) fn backward_with<const FMA: bool>(
        &self,
        dy: &[f32],
        rows: usize,
        ws: &mut Workspace,
        mut grad: Option<&mut [f32]>,
        want_dx: bool,
    ) {
        let n = self.sizes.len() - 1;
        let mut offs = Vec::with_capacity(n);
        let mut off = 0;
        for l in 0..n {
            offs.push(off);
            off += self.sizes[l] * self.sizes[l + 1] + self.sizes[l + 1];
        }
        let Workspace {
            acts,
            d,
            dx,
            wt,
            zeros,
        } = ws;
        d.clear();
        d.extend_from_slice(&dy[..rows * self.width()]);
        if self.output == Output::Tanh {
            for (g, y) in d.iter_mut().zip(&acts[n]) {
                *g *= 1.0 - y * y;
            }
        }
        for l in (0..n).rev() {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let w = &self.params[offs[l]..offs[l] + i * o];
            let x = &acts[l];
            if let Some(g) = grad.as_deref_mut() {
                let (gw, gb) = g[offs[l]..offs[l] + i * o + o].split_at_mut(i * o);
                dense_grad::<FMA>(x, d, gw, gb, rows, i, o);
            }
            if l == 0 && !want_dx {
                break;
            }
            dx.resize(rows * i, 0.0);
            // dx = d · Wᵀ as a forward pass through Wᵀ (`[output][input]`,
            // zero bias): the same register-blocked kernel.
            wt.resize(i * o, 0.0);
            for k in 0..i {
                for c in 0..o {
                    wt[c * i + k] = w[k * o + c];
                }
            }
            zeros.clear();
            zeros.resize(i, 0.0);
            dense_forward::<FMA>(d, wt, zeros, dx, rows, o, i);
            if l > 0 {
                // Through the ReLU of layer l − 1: its output is x.
                for (g, &a) in dx.iter_mut().zip(x.iter()) {
                    if a <= 0.0 {
                        *g = 0.0;
                    }
                }
                std::mem::swap(d, dx);
            }
        }
    }
}

/// Scratch space of a forward and backward pass (reused between calls, so
/// that training allocates nothing per step).
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    acts: Vec<Vec<f32>>,
    d: Vec<f32>,
    /// d loss / d input of the last [`Net::backward`] asked for it.
    pub dx: Vec<f32>,
    /// A layer's weights transposed.
    wt: Vec<f32>,
    /// A zero bias.
    zeros: Vec<f32>,
}

/// Rows a micro-kernel handles at once.
const R: usize = 4;
/// Output columns a micro-kernel handles at once (one AVX register, two SSE).
const C: usize = 8;

/// `y = x · W + b` for `rows` rows. Blocks of 4 rows × 8 outputs keep their
/// sums in registers while the weights stream past once per block; the
/// block's inputs are first packed input-major, so that the inner loop walks
/// two slices in step (no index arithmetic, no bounds checks).
#[inline(always)]
fn dense_forward<const F: bool>(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    rows: usize,
    i: usize,
    o: usize,
) {
    let full_c = o / C * C;
    let full_r = rows / R * R;
    let w = &w[..i * o];
    let mut xt = [0.0f32; R * 256];
    for r0 in (0..full_r).step_by(R) {
        if i > 256 {
            break;
        }
        for rr in 0..R {
            for (k, &v) in x[(r0 + rr) * i..(r0 + rr + 1) * i].iter().enumerate() {
                xt[k * R + rr] = v;
            }
        }
        let xt = &xt[..i * R];
        for c0 in (0..full_c).step_by(C) {
            let mut acc = [[0.0f32; C]; R];
            let bias: [f32; C] = b[c0..c0 + C].try_into().unwrap_or([0.0; C]);
            for a in acc.iter_mut() {
                *a = bias;
            }
            for (wrow, xk) in w.chunks_exact(o).zip(xt.chunks_exact(R)) {
                let wk: [f32; C] = wrow[c0..c0 + C].try_into().unwrap_or([0.0; C]);
                for (a, &xv) in acc.iter_mut().zip(xk) {
                    for l in 0..C {
                        a[l] = madd::<F>(xv, wk[l], a[l]);
                    }
                }
            }
            for (rr, a) in acc.iter().enumerate() {
                y[(r0 + rr) * o + c0..(r0 + rr) * o + c0 + C].copy_from_slice(a);
            }
        }
    }
    // The rest: narrow outputs (an action, a value), the last rows, and
    // layers too wide for the packing buffer.
    let blocked_r = if i > 256 { 0 } else { full_r };
    for r in 0..rows {
        let xr = &x[r * i..r * i + i];
        let c_from = if r < blocked_r { full_c } else { 0 };
        for c in c_from..o {
            let mut s = b[c];
            for (k, &xk) in xr.iter().enumerate() {
                s = madd::<F>(xk, w[k * o + c], s);
            }
            y[r * o + c] = s;
        }
    }
}

/// `gW += xᵀ · d`, `gb += Σ_rows d`.
#[inline(always)]
fn dense_grad<const F: bool>(
    x: &[f32],
    d: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    rows: usize,
    i: usize,
    o: usize,
) {
    for r in 0..rows {
        for (g, v) in gb.iter_mut().zip(&d[r * o..r * o + o]) {
            *g += v;
        }
    }
    let full_c = o / C * C;
    let full_k = i / R * R;
    // Blocks of 4 inputs × 8 outputs, summed over the rows in registers.
    for k0 in (0..full_k).step_by(R) {
        for c0 in (0..full_c).step_by(C) {
            let mut acc = [[0.0f32; C]; R];
            for (dr, xr) in d[..rows * o]
                .chunks_exact(o)
                .zip(x[..rows * i].chunks_exact(i))
            {
                let dv: [f32; C] = dr[c0..c0 + C].try_into().unwrap_or([0.0; C]);
                let xv: [f32; R] = xr[k0..k0 + R].try_into().unwrap_or([0.0; R]);
                for (a, &xk) in acc.iter_mut().zip(&xv) {
                    for l in 0..C {
                        a[l] = madd::<F>(xk, dv[l], a[l]);
                    }
                }
            }
            for (kk, a) in acc.iter().enumerate() {
                let g = &mut gw[(k0 + kk) * o + c0..(k0 + kk) * o + c0 + C];
                for l in 0..C {
                    g[l] += a[l];
                }
            }
        }
    }
    for k in 0..i {
        let c_from = if k < full_k { full_c } else { 0 };
        for c in c_from..o {
            let mut s = 0.0;
            for r in 0..rows {
                s += x[r * i + k] * d[r * o + c];
            }
            gw[k * o + c] += s;
        }
    }
}

/// `a·b + c`, fused when `F`.
#[inline(always)]
fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Adam (Kingma & Ba, 2015) over a flat parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
    /// Learning rate.
    pub lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

impl Adam {
    /// For `n` parameters at learning rate `lr` (β = 0.9, 0.999; ε = 1e-8).
    pub fn new(n: usize, lr: f32) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// One step along `grad` (which is then zeroed for the next accumulation).
    #[inline(always)]
    pub fn step(&mut self, params: &mut [f32], grad: &mut [f32]) {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        let step = self.lr * c2.sqrt() / c1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps * c2.sqrt());
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad.iter_mut())
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = b1 * *m + (1.0 - b1) * *g;
            *v = b2 * *v + (1.0 - b2) * *g * *g;
            *p -= step * *m / (v.sqrt() + eps);
            *g = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss L = Σ w·y for fixed weights w, so dL/dy = w.
    fn loss(net: &Net, x: &[f32], rows: usize, wy: &[f32]) -> f64 {
        let mut ws = Workspace::default();
        net.forward(x, rows, &mut ws)
            .iter()
            .zip(wy)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for output in [Output::Linear, Output::Tanh] {
            let net = Net::new(&[5, 9, 11, 3], output, 3, 1.0);
            let rows = 4;
            let mut rng = Rng::new(9);
            let x: Vec<f32> = (0..rows * 5).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            let wy: Vec<f32> = (0..rows * 3).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            let mut ws = Workspace::default();
            net.forward(&x, rows, &mut ws);
            let mut g = vec![0.0; net.params.len()];
            net.backward(&wy, rows, &mut ws, Some(&mut g), true);
            let h = 1e-2f32;
            let mut worst = 0.0f64;
            for p in (0..net.params.len()).step_by(7) {
                let mut a = net.clone();
                a.params[p] += h;
                let mut b = net.clone();
                b.params[p] -= h;
                let fd = (loss(&a, &x, rows, &wy) - loss(&b, &x, rows, &wy)) / (2.0 * f64::from(h));
                worst = worst.max((fd - f64::from(g[p])).abs());
            }
            for k in 0..x.len() {
                let mut xa = x.clone();
                xa[k] += h;
                let mut xb = x.clone();
                xb[k] -= h;
                let fd = (loss(&net, &xa, rows, &wy) - loss(&net, &xb, rows, &wy))
                    / (2.0 * f64::from(h));
                worst = worst.max((fd - f64::from(ws.dx[k])).abs());
            }
            // ReLU kinks within h of an input would show as an O(1) error.
            assert!(worst < 2e-3, "{output:?}: worst gradient error {worst}");
        }
    }

    #[test]
    fn batched_rows_equal_single_rows() {
        let net = Net::new(&[22, 64, 64, 4], Output::Tanh, 1, 0.1);
        let mut rng = Rng::new(2);
        let x: Vec<f32> = (0..5 * 22).map(|_| rng.range(-2.0, 2.0) as f32).collect();
        let mut ws = Workspace::default();
        let all = net.forward(&x, 5, &mut ws).to_vec();
        for r in 0..5 {
            let one = net.forward(&x[r * 22..r * 22 + 22], 1, &mut ws).to_vec();
            assert_eq!(one, all[r * 4..r * 4 + 4]);
        }
    }

    #[test]
    fn adam_fits_a_linear_map() {
        // y = A x: a one-layer linear network must recover A.
        let mut net = Net::new(&[3, 2], Output::Linear, 5, 1.0);
        let a = [[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.75]];
        let mut opt = Adam::new(net.params.len(), 0.05);
        let mut g = vec![0.0; net.params.len()];
        let mut rng = Rng::new(4);
        let mut ws = Workspace::default();
        let mut last = f32::MAX;
        for _ in 0..2000 {
            let x: Vec<f32> = (0..8 * 3).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            let y = net.forward(&x, 8, &mut ws).to_vec();
            let mut dy = vec![0.0; 16];
            last = 0.0;
            for r in 0..8 {
                for j in 0..2 {
                    let t: f32 = (0..3).map(|k| a[j][k] * x[r * 3 + k]).sum();
                    dy[r * 2 + j] = (y[r * 2 + j] - t) / 8.0;
                    last += (y[r * 2 + j] - t).powi(2);
                }
            }
            net.backward(&dy, 8, &mut ws, Some(&mut g), false);
            opt.step(&mut net.params, &mut g);
        }
        assert!(last < 1e-6, "squared error after training {last}");
    }
}
