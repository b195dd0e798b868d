//! The multi-layer perceptron every learner builds on, and the small tensor
//! conversions between replay rows and burn tensors.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

/// The CPU device (with `device`'s autodiff) on which networks draw their
/// initial weights before moving to `device`.
pub fn init_device(device: &Device) -> Device {
    // burn 0.22 marks ndarray deprecated in favour of `flex`; the project keeps
    // ndarray as its CPU backend until flex is measured on the target.
    #[allow(deprecated)]
    let cpu = Device::ndarray();
    if device.gradient_checkpointing_strategy().is_some() {
        cpu.autodiff()
    } else {
        cpu
    }
}

/// Fully connected layers with ReLU between them (none after the last).
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Relu,
}

impl Mlp {
    /// Layers `sizes[0] -> sizes[1] -> ... -> sizes[last]`, weights drawn from `seed`.
    ///
    /// The weights are drawn on the CPU and moved to `device`: each backend's own
    /// generator draws different numbers, and a seed should mean one network on
    /// every backend (a GPU run starts where the CPU run does).
    pub fn seeded(sizes: &[usize], device: &Device, seed: u64) -> Self {
        let _guard = types::NETWORK_INIT
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let draw = init_device(device);
        draw.seed(seed);
        let layers: Vec<Linear> = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(&draw))
            .collect();
        // burn initialises parameters lazily; draw them now, under the lock.
        for l in &layers {
            let _ = l.weight.val();
            if let Some(b) = &l.bias {
                let _ = b.val();
            }
        }
        Self {
            layers,
            act: Relu::new(),
        }
        .fork(device)
    }

    /// The same network with its output layer's weights and bias set to zero, so
    /// that it outputs exactly 0 (and passes no gradient to its input) until trained.
    pub fn zero_output(mut self) -> Self {
        if let Some(last) = self.layers.last_mut() {
            let w = last.weight.val();
            last.weight = Param::from_tensor(w.zeros_like());
            if let Some(b) = &last.bias {
                last.bias = Some(Param::from_tensor(b.val().zeros_like()));
            }
        }
        self
    }

    /// Squared L2 norm of the gradient `grads` holds for this network's parameters.
    pub fn grad_norm_sq(&self, grads: &burn::tensor::Gradients) -> f32 {
        let mut sum = 0.0;
        for l in &self.layers {
            if let Some(g) = l.weight.val().grad(grads) {
                sum += values(g.powi_scalar(2).sum())[0];
            }
            if let Some(g) = l.bias.as_ref().and_then(|b| b.val().grad(grads)) {
                sum += values(g.powi_scalar(2).sum())[0];
            }
        }
        sum
    }

    /// Input width.
    pub fn input(&self) -> usize {
        self.layers.first().map_or(0, |l| l.weight.dims()[0])
    }

    /// Output width.
    pub fn output(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weight.dims()[1])
    }

    /// Layer widths, input first.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.input()];
        s.extend(self.layers.iter().map(|l| l.weight.dims()[1]));
        s
    }

    /// `[batch, input] -> [batch, output]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x);
            if i < last {
                x = self.act.forward(x);
            }
        }
        x
    }

    /// Move every weight a fraction `tau` of the way towards `online`'s (Polyak
    /// averaging for target networks); `tau = 1` copies. Both must have the same
    /// sizes and live on plain (non-autodiff) devices.
    pub fn soft_update(self, online: &Mlp, tau: f64) -> Mlp {
        let layers = self
            .layers
            .into_iter()
            .zip(&online.layers)
            .map(|(t, o)| {
                let mix1 = |a: Tensor<1>, b: Tensor<1>| a.mul_scalar(1.0 - tau) + b.mul_scalar(tau);
                let weight = Param::from_tensor(
                    t.weight.val().mul_scalar(1.0 - tau) + o.weight.val().mul_scalar(tau),
                );
                let bias = match (t.bias, &o.bias) {
                    (Some(tb), Some(ob)) => Some(Param::from_tensor(mix1(tb.val(), ob.val()))),
                    (b, _) => b,
                };
                Linear { weight, bias }
            })
            .collect();
        Mlp {
            layers,
            act: Relu::new(),
        }
    }
}

impl Mlp {
    /// A network of `sizes` from flat parameters: per layer, the weights
    /// input-major (`w[input][output]`, burn's `Linear` layout) then the
    /// bias. None if the count does not match.
    pub fn from_weights(sizes: &[usize], params: &[f32], device: &Device) -> Option<Self> {
        let need: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        if sizes.len() < 2 || params.len() != need {
            return None;
        }
        let mut at = 0;
        let layers = sizes
            .windows(2)
            .map(|w| {
                let (i, o) = (w[0], w[1]);
                let weight = matrix(params[at..at + i * o].to_vec(), i, o, device);
                let bias = Tensor::<1>::from_data(
                    TensorData::new(params[at + i * o..at + i * o + o].to_vec(), [o]),
                    device,
                );
                at += i * o + o;
                Linear {
                    weight: Param::from_tensor(weight),
                    bias: Some(Param::from_tensor(bias)),
                }
            })
            .collect();
        Some(Self {
            layers,
            act: Relu::new(),
        })
    }

    /// The flat parameters in [`Mlp::from_weights`]' order.
    pub fn weights(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.extend(values(l.weight.val()));
            match &l.bias {
                Some(b) => out.extend(values(b.val())),
                None => out.extend(std::iter::repeat_n(0.0, l.weight.dims()[1])),
            }
        }
        out
    }
}

/// Layer widths `input -> hidden... -> output`, as [`Mlp::seeded`] takes them.
pub fn layer_sizes(input: usize, hidden: &[usize], output: usize) -> Vec<usize> {
    let mut s = vec![input];
    s.extend(hidden);
    s.push(output);
    s
}

/// The index of the largest value (the first of equals; 0 for an empty row):
/// the greedy action over Q-values or logits.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// A `[rows, cols]` tensor from row-major values.
pub fn matrix(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(values, [rows, cols]), device)
}

/// The values of a tensor, row-major.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cpu;

    #[test]
    fn same_seed_same_network_and_soft_update_interpolates() {
        let d = cpu();
        let a = Mlp::seeded(&[3, 8, 2], &d, 4);
        let b = Mlp::seeded(&[3, 8, 2], &d, 4);
        let c = Mlp::seeded(&[3, 8, 2], &d, 5);
        let x = matrix(vec![0.1, -0.2, 0.3], 1, 3, &d);
        let ya = values(a.forward(x.clone()));
        assert_eq!(ya, values(b.forward(x.clone())));
        let yc = values(c.forward(x.clone()));
        assert_ne!(ya, yc);
        assert_eq!(a.sizes(), vec![3, 8, 2]);
        // tau = 1 copies, tau = 0 keeps.
        let copied = a.clone().soft_update(&c, 1.0);
        assert_eq!(values(copied.forward(x.clone())), yc);
        let kept = a.clone().soft_update(&c, 0.0);
        assert_eq!(values(kept.forward(x)), ya);
    }
}
