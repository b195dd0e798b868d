//! The monocular depth cue: a small convolutional network that maps one grayscale
//! frame to a per-column depth scan, and the conversions between camera frames,
//! stereo depth maps and its tensors.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Shape of the network's input and output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonoShape {
    /// Input width after downsampling (pixels).
    pub width: usize,
    /// Input height after downsampling (pixels).
    pub height: usize,
    /// Columns of the output depth scan.
    pub columns: usize,
    /// Largest depth the scan reports (m).
    pub max_depth: f32,
    /// Smallest depth the scan reports (m).
    pub min_depth: f32,
    /// Fraction of the image rows, centred on the horizon, that the scan looks at
    /// (so that floor and ceiling do not read as obstacles).
    pub band: f32,
    /// Which network: `patch` (the default, made for two CPU cores) or `unet`
    /// (an encoder-decoder with skip connections, made for a GPU).
    pub arch: MonoArch,
}

/// The architecture of the monocular network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonoArch {
    /// Strided patch convolutions (kernel = stride) and a fully connected scan
    /// head: ~15x faster to train on burn's CPU backend than 3x3 convolutions.
    #[default]
    Patch,
    /// A U-Net-style encoder-decoder (Ronneberger et al., MICCAI 2015): 3x3
    /// convolutions down to 1/8 resolution and back to 1/2 with skip
    /// connections, a dense log-depth output pooled to the coarse map and a
    /// per-column head over the horizon band. Meant for a GPU (`--backend gpu`)
    /// at 160x120 or 320x240; on the CPU it trains far slower than `patch`.
    Unet,
}

impl Default for MonoShape {
    fn default() -> Self {
        Self {
            width: 80,
            height: 60,
            columns: 32,
            max_depth: 10.0,
            min_depth: 0.2,
            band: 0.2,
            arch: MonoArch::Patch,
        }
    }
}

/// Input that does not fit the network.
#[derive(Debug, Error, PartialEq)]
pub enum MonoError {
    /// Image size is not the configured one times an integer factor.
    #[error(
        "image of {got_w}x{got_h} ({len} bytes) cannot be reduced to the network's {want_w}x{want_h} input"
    )]
    ImageSize {
        got_w: usize,
        got_h: usize,
        len: usize,
        want_w: usize,
        want_h: usize,
    },
    /// Depth map and image sizes disagree.
    #[error("depth map of {len} values does not match a {w}x{h} image")]
    DepthSize { len: usize, w: usize, h: usize },
    /// The input size does not fit the network's patch grid.
    #[error(
        "network input {width}x{height} unsupported: width must be a multiple of 8, height of 8 or 12, columns at most the width"
    )]
    Shape { width: usize, height: usize },
    /// The input size does not fit the U-Net's three halvings.
    #[error(
        "network input {width}x{height} with {columns} columns unsupported by `unet`: width and height must be multiples of 8, columns at most half the width"
    )]
    UnetShape {
        width: usize,
        height: usize,
        columns: usize,
    },
    /// The network produced a tensor of the wrong size or non-finite values.
    #[error("network output unusable: {0}")]
    Output(String),
}

/// Encoder of strided patch convolutions (kernel = stride, so no two output
/// cells read the same pixel) with two heads: the per-column log-depth scan the
/// controller flies on and a coarse log-depth map.
///
/// Each layer is a convolution whose kernel equals its stride, written as a
/// reshape into patches followed by a matrix product. That form trains ~15x
/// faster on burn's CPU backend than overlapping 3x3 convolutions, whose input
/// gradient goes through a slow transposed convolution there (measured: 73 ms
/// against 4 ms per forward+backward of one 8->16 layer at batch 16); that is what
/// lets the learner keep up with a 30 Hz camera on two cores.
#[derive(Module, Debug)]
pub struct PatchNet {
    p1: Linear,
    p2: Linear,
    p3: Linear,
    map: Linear,
    fc1: Linear,
    fc2: Linear,
    act: Relu,
}

/// Patch grid of the network for an input size (rows first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchPlan {
    /// Rows of the second patch layer's kernel.
    pub rows2: usize,
    /// Cells of the coarse depth map (rows, columns).
    pub map: (usize, usize),
}

/// Channels of the three patch layers.
const CH: [usize; 3] = [32, 64, 96];

/// The monocular network, of either architecture (see [`MonoArch`]).
// The U-Net's handles are larger than the patch network's (2 KB against 1 KB);
// a network is built once and moved a few times per weight update, so boxing
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum MonoNet {
    /// The patch encoder.
    Patch(PatchNet),
    /// The encoder-decoder.
    Unet(UNet),
}

/// The encoder-decoder of [`MonoArch::Unet`].
#[derive(Module, Debug)]
pub struct UNet {
    e1: Conv2d,
    e2: Conv2d,
    e3: Conv2d,
    e4: Conv2d,
    d3: Conv2d,
    d2: Conv2d,
    depth: Conv2d,
    column: Conv2d,
    act: Relu,
    /// Rows (at half resolution) of the horizon band the scan head reads.
    band: [usize; 2],
    columns: usize,
    /// The shape it was made for (width, height, columns, band in 1e-4), kept
    /// in checkpoints: the convolutions fit any size, so a checkpoint would
    /// otherwise load under another shape without a word. Takes no gradient.
    made_for: Param<Tensor<1>>,
}

/// Channels of the U-Net's levels (full, 1/2, 1/4 and 1/8 resolution).
const UCH: [usize; 4] = [16, 32, 64, 96];

fn conv3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// [B, C, H, W] -> [B, C, 2H, 2W], each value repeated (nearest neighbour).
fn up2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let x: Tensor<6> = x.reshape([b, c, h, 1, w, 1]);
    x.repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([b, c, 2 * h, 2 * w])
}

impl UNet {
    fn shape_tag(shape: &MonoShape) -> [f32; 4] {
        [
            shape.width as f32,
            shape.height as f32,
            shape.columns as f32,
            (shape.band * 1e4).round(),
        ]
    }

    fn init(shape: &MonoShape, device: &Device) -> Self {
        let half = shape.height / 2;
        let rows = ((half as f32 * shape.band).round() as usize).clamp(1, half);
        let top = (half - rows) / 2;
        Self {
            e1: conv3(1, UCH[0], 1, device),
            e2: conv3(UCH[0], UCH[1], 2, device),
            e3: conv3(UCH[1], UCH[2], 2, device),
            e4: conv3(UCH[2], UCH[3], 2, device),
            d3: conv3(UCH[3] + UCH[2], UCH[2], 1, device),
            d2: conv3(UCH[2] + UCH[1], UCH[1], 1, device),
            depth: Conv2dConfig::new([UCH[1], 1], [1, 1]).init(device),
            column: Conv2dConfig::new([UCH[1], 1], [1, 1]).init(device),
            act: Relu::new(),
            band: [top, top + rows],
            columns: shape.columns,
            made_for: Param::from_tensor(Tensor::from_floats(Self::shape_tag(shape), device))
                .set_require_grad(false),
        }
    }

    fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let [b, _, h, w] = x.dims();
        let a1 = self.act.forward(self.e1.forward(x));
        let a2 = self.act.forward(self.e2.forward(a1));
        let a3 = self.act.forward(self.e3.forward(a2.clone()));
        let a4 = self.act.forward(self.e4.forward(a3.clone()));
        let b3 = self
            .act
            .forward(self.d3.forward(Tensor::cat(vec![up2(a4), a3], 1)));
        let b2 = self
            .act
            .forward(self.d2.forward(Tensor::cat(vec![up2(b3), a2], 1)));
        // Dense log depth at 1/2 resolution, averaged over 4x4 blocks: the map.
        let dense: Tensor<6> = self
            .depth
            .forward(b2.clone())
            .reshape([b, 1, h / 8, 4, w / 8, 4]);
        let map: Tensor<3> = dense.mean_dim(5).mean_dim(3).reshape([b, h / 8, w / 8]);
        // The scan: a per-pixel value over the horizon band, averaged per column.
        let [top, bottom] = self.band;
        let band = b2.slice([0..b, 0..UCH[1], top..bottom, 0..w / 2]);
        let col: Tensor<3> = self.column.forward(band).mean_dim(2).reshape([b, 1, w / 2]);
        let scan =
            burn::tensor::module::adaptive_avg_pool1d(col, self.columns).reshape([b, self.columns]);
        (scan, map)
    }
}

impl MonoShape {
    /// The patch grid (or the U-Net's map grid), or why this input size does
    /// not fit the network: for `patch` the width must be a multiple of 8 and
    /// the height a multiple of 8 or 12; for `unet` both multiples of 8.
    pub fn plan(&self) -> Result<PatchPlan, MonoError> {
        if self.arch == MonoArch::Unet {
            let ok = self.width > 0
                && self.height > 0
                && self.width.is_multiple_of(8)
                && self.height.is_multiple_of(8)
                && self.columns > 0
                && self.columns <= self.width / 2;
            return if ok {
                Ok(PatchPlan {
                    rows2: 0,
                    map: (self.height / 8, self.width / 8),
                })
            } else {
                Err(MonoError::UnetShape {
                    width: self.width,
                    height: self.height,
                    columns: self.columns,
                })
            };
        }
        let bad = || MonoError::Shape {
            width: self.width,
            height: self.height,
        };
        if self.width == 0 || self.height == 0 || !self.width.is_multiple_of(8) {
            return Err(bad());
        }
        if !self.height.is_multiple_of(4) {
            return Err(bad());
        }
        let r1 = self.height / 4;
        let rows2 = if r1.is_multiple_of(3) {
            3
        } else if r1.is_multiple_of(2) {
            2
        } else {
            return Err(bad());
        };
        if self.columns == 0 || self.columns > self.width {
            return Err(bad());
        }
        Ok(PatchPlan {
            rows2,
            map: (r1 / rows2, self.width / 8),
        })
    }
}

/// [B, H, W, C] -> [B, H/ph, W/pw, ph*pw*C]: the patches a kernel-equals-stride convolution reads.
fn patches(x: Tensor<4>, ph: usize, pw: usize) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let x: Tensor<6> = x.reshape([b, h / ph, ph, w / pw, pw, c]).swap_dims(2, 3);
    x.reshape([b, h / ph, w / pw, ph * pw * c])
}

impl PatchNet {
    fn init(shape: &MonoShape, plan: PatchPlan, device: &Device) -> Self {
        let (rows, cols) = plan.map;
        Self {
            p1: LinearConfig::new(16, CH[0]).init(device),
            p2: LinearConfig::new(plan.rows2 * 2 * CH[0], CH[1]).init(device),
            p3: LinearConfig::new(rows * CH[1], CH[2]).init(device),
            map: LinearConfig::new(CH[1], 1).init(device),
            fc1: LinearConfig::new(cols * CH[2], 128).init(device),
            fc2: LinearConfig::new(128, shape.columns).init(device),
            act: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let [b, _, h, w] = x.dims();
        let x: Tensor<4> = x.reshape([b, h, w, 1]);
        let x = self.act.forward(self.p1.forward(patches(x, 4, 4)));
        let rows2 = if (h / 4).is_multiple_of(3) { 3 } else { 2 };
        let x = self.act.forward(self.p2.forward(patches(x, rows2, 2)));
        let [_, rows, cols, _] = x.dims();
        let map: Tensor<3> = self.map.forward(x.clone()).reshape([b, rows, cols]);
        let x = self.act.forward(self.p3.forward(patches(x, rows, 1)));
        let x: Tensor<2> = x.reshape([b, cols * CH[2]]);
        let x = self.act.forward(self.fc1.forward(x));
        (self.fc2.forward(x), map)
    }
}

impl MonoNet {
    /// A freshly initialised network on `device`, or why `shape` does not fit it.
    pub fn new(shape: &MonoShape, device: &Device) -> Result<Self, MonoError> {
        let _guard = types::NETWORK_INIT
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Self::init(shape, device)
    }

    /// Draws the weights on the CPU (see [`crate::device::init_device`]) and
    /// moves them to `device`, so a seed means the same network on every backend.
    fn init(shape: &MonoShape, device: &Device) -> Result<Self, MonoError> {
        let target = device;
        let device = &crate::device::init_device(target);
        let net = Self::unloaded(shape, device)?;
        // burn draws parameters lazily, on first use: draw them now, under the lock.
        let _ = net.forward(Tensor::zeros([1, 1, shape.height, shape.width], device));
        Ok(net.fork(target))
    }

    /// The network of `shape` with parameters not drawn yet (burn draws them on
    /// first use): what a checkpoint is loaded into, without drawing weights
    /// or running a forward pass that the file's weights replace.
    fn unloaded(shape: &MonoShape, device: &Device) -> Result<Self, MonoError> {
        let plan = shape.plan()?;
        Ok(match shape.arch {
            MonoArch::Patch => Self::Patch(PatchNet::init(shape, plan, device)),
            MonoArch::Unet => Self::Unet(UNet::init(shape, device)),
        })
    }

    /// A network initialised from `seed`: the same seed gives the same weights,
    /// even while other threads create networks (burn's generator is global, so
    /// seeding and drawing happen under one lock).
    pub fn seeded(shape: &MonoShape, device: &Device, seed: u64) -> Result<Self, MonoError> {
        let _guard = types::NETWORK_INIT
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        crate::device::init_device(device).seed(seed);
        Self::init(shape, device)
    }

    /// Log-depth scan [batch, columns] and coarse log-depth map [batch, rows, cols]
    /// of images [batch, 1, height, width].
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        match self {
            Self::Patch(n) => n.forward(x),
            Self::Unet(n) => n.forward(x),
        }
    }
}

/// Box-filter a grayscale image down to the network input and normalise to about [-0.5, 0.5].
pub fn preprocess(
    image: &[u8],
    width: usize,
    height: usize,
    shape: &MonoShape,
) -> Result<Vec<f32>, MonoError> {
    let bad = || MonoError::ImageSize {
        got_w: width,
        got_h: height,
        len: image.len(),
        want_w: shape.width,
        want_h: shape.height,
    };
    if image.len() != width * height
        || shape.width == 0
        || shape.height == 0
        || !width.is_multiple_of(shape.width)
        || !height.is_multiple_of(shape.height)
    {
        return Err(bad());
    }
    let (fx, fy) = (width / shape.width, height / shape.height);
    if fx == 0 || fy == 0 {
        return Err(bad());
    }
    let norm = 1.0 / (255.0 * (fx * fy) as f32);
    let mut out = vec![0.0f32; shape.width * shape.height];
    for (y, row) in out.chunks_mut(shape.width).enumerate() {
        for (x, o) in row.iter_mut().enumerate() {
            let mut acc = 0u32;
            for dy in 0..fy {
                let base = (y * fy + dy) * width + x * fx;
                acc += image[base..base + fx]
                    .iter()
                    .map(|&v| v as u32)
                    .sum::<u32>();
            }
            *o = acc as f32 * norm - 0.5;
        }
    }
    Ok(out)
}

/// The per-column depth scan of a depth map: for each of `columns` vertical bands,
/// the nearest valid depth in the central `band` of the rows, clamped to the range.
/// Returns (scan, valid) where a column is invalid if no pixel had valid depth.
pub fn depth_scan(
    depth: &[f32],
    width: usize,
    height: usize,
    shape: &MonoShape,
) -> Result<(Vec<f32>, Vec<bool>), MonoError> {
    if depth.len() != width * height || width < shape.columns {
        return Err(MonoError::DepthSize {
            len: depth.len(),
            w: width,
            h: height,
        });
    }
    let half = ((height as f32 * shape.band.clamp(0.0, 1.0)) / 2.0)
        .round()
        .max(1.0) as usize;
    let (r0, r1) = (
        height / 2 - half.min(height / 2),
        (height / 2 + half).min(height),
    );
    let mut scan = vec![shape.max_depth; shape.columns];
    let mut valid = vec![false; shape.columns];
    for (c, (s, v)) in scan.iter_mut().zip(valid.iter_mut()).enumerate() {
        let (u0, u1) = (c * width / shape.columns, (c + 1) * width / shape.columns);
        for row in r0..r1 {
            for &z in &depth[row * width + u0..row * width + u1] {
                if z.is_finite() && z > 0.0 {
                    *v = true;
                    *s = s.min(z);
                }
            }
        }
        *s = s.clamp(shape.min_depth, shape.max_depth);
    }
    Ok((scan, valid))
}

/// What the network sees in one frame, in metres.
#[derive(Debug, Clone, PartialEq)]
pub struct MonoEstimate {
    /// Per-column depth scan, left to right.
    pub scan: Vec<f32>,
    /// Coarse depth map, row-major `map_size.0 x map_size.1`.
    pub map: Vec<f32>,
    /// Rows and columns of the coarse map.
    pub map_size: (usize, usize),
}

impl MonoEstimate {
    /// Nearest depth in the scan.
    pub fn nearest(&self) -> f32 {
        self.scan.iter().fold(f32::INFINITY, |m, &v| m.min(v))
    }
}

fn to_vec(t: TensorData) -> Result<Vec<f32>, MonoError> {
    t.try_to_vec::<f32>()
        .map_err(|e| MonoError::Output(format!("{e:?}")))
}

/// Run the network on one preprocessed image.
pub fn infer(
    net: &MonoNet,
    input: &[f32],
    shape: &MonoShape,
    device: &Device,
) -> Result<MonoEstimate, MonoError> {
    let plan = shape.plan()?;
    if input.len() != shape.width * shape.height {
        return Err(MonoError::ImageSize {
            got_w: input.len(),
            got_h: 1,
            len: input.len(),
            want_w: shape.width,
            want_h: shape.height,
        });
    }
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [1, 1, shape.height, shape.width]),
        device,
    );
    let (scan, map) = net.forward(x);
    let (scan, map) = (to_vec(scan.into_data())?, to_vec(map.into_data())?);
    let cells = plan.map.0 * plan.map.1;
    if scan.len() != shape.columns
        || map.len() != cells
        || scan.iter().chain(&map).any(|x| !x.is_finite())
    {
        return Err(MonoError::Output(format!(
            "{} scan values (want {}), {} map cells (want {cells}), all finite: {}",
            scan.len(),
            shape.columns,
            map.len(),
            scan.iter().chain(&map).all(|x| x.is_finite())
        )));
    }
    let metres = |v: Vec<f32>| -> Vec<f32> {
        v.iter()
            .map(|l| l.exp().clamp(shape.min_depth, shape.max_depth))
            .collect()
    };
    Ok(MonoEstimate {
        scan: metres(scan),
        map: metres(map),
        map_size: plan.map,
    })
}

/// The coarse-map target of a depth map (m; non-finite or non-positive = unknown):
/// the median depth of each cell, and whether at least a fifth of its pixels were known.
pub fn coarse_target(
    depth: &[f32],
    width: usize,
    height: usize,
    shape: &MonoShape,
) -> Result<(Vec<f32>, Vec<bool>), MonoError> {
    let (rows, cols) = shape.plan()?.map;
    if depth.len() != width * height || width < cols || height < rows {
        return Err(MonoError::DepthSize {
            len: depth.len(),
            w: width,
            h: height,
        });
    }
    let mut map = vec![shape.max_depth; rows * cols];
    let mut valid = vec![false; rows * cols];
    let mut vals = Vec::new();
    for r in 0..rows {
        let (y0, y1) = (r * height / rows, (r + 1) * height / rows);
        for c in 0..cols {
            let (x0, x1) = (c * width / cols, (c + 1) * width / cols);
            vals.clear();
            for y in y0..y1 {
                vals.extend(
                    depth[y * width + x0..y * width + x1]
                        .iter()
                        .filter(|z| z.is_finite() && **z > 0.0),
                );
            }
            if vals.len() * 5 >= (y1 - y0) * (x1 - x0) && !vals.is_empty() {
                let k = vals.len() / 2;
                let (_, m, _) = vals.select_nth_unstable_by(k, |a: &f32, b: &f32| a.total_cmp(b));
                map[r * cols + c] = m.clamp(shape.min_depth, shape.max_depth);
                valid[r * cols + c] = true;
            }
        }
    }
    Ok((map, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_box_filters_and_rejects_wrong_sizes() {
        let shape = MonoShape {
            width: 2,
            height: 1,
            ..MonoShape::default()
        };
        let img = [0u8, 0, 255, 255, 0, 0, 255, 255];
        let x = preprocess(&img, 4, 2, &shape).unwrap();
        assert_eq!(x, vec![-0.5, 0.5]);
        assert!(matches!(
            preprocess(&img, 3, 2, &shape),
            Err(MonoError::ImageSize { .. })
        ));
        assert!(preprocess(&img[..7], 4, 2, &shape).is_err());
    }

    #[test]
    fn depth_scan_takes_the_nearest_valid_depth_per_column() {
        let shape = MonoShape {
            columns: 2,
            band: 0.5,
            ..MonoShape::default()
        };
        let (w, h) = (4, 4);
        let mut d = vec![5.0f32; w * h];
        d[w + 1] = 2.0; // row 1 is in the central band (rows 1..3)
        d[3] = 0.5; // row 0 is outside the band
        d[2 * w + 3] = f32::NAN;
        let (scan, valid) = depth_scan(&d, w, h, &shape).unwrap();
        assert_eq!(scan, vec![2.0, 5.0]);
        assert_eq!(valid, vec![true, true]);
        assert!(depth_scan(&d[..5], w, h, &shape).is_err());
    }

    #[test]
    fn unet_gives_a_scan_and_a_map_at_an_eighth_and_learns() {
        let device = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let shape = MonoShape {
            width: 160,
            height: 120,
            arch: MonoArch::Unet,
            ..MonoShape::default()
        };
        assert_eq!(shape.plan().unwrap().map, (15, 20));
        let net = MonoNet::seeded(&shape, &device, 3).unwrap();
        assert!(matches!(net, MonoNet::Unet(_)));
        let input: Vec<f32> = (0..160 * 120)
            .map(|i| (i % 13) as f32 / 13.0 - 0.5)
            .collect();
        let est = infer(&net, &input, &shape, &device).unwrap();
        assert_eq!((est.scan.len(), est.map.len()), (32, 15 * 20));
        // Sizes the three halvings cannot take are refused by name.
        for (w, h, columns) in [(160, 124, 32), (164, 120, 32), (160, 120, 81)] {
            let bad = MonoShape {
                width: w,
                height: h,
                columns,
                ..shape
            };
            assert!(matches!(
                MonoNet::new(&bad, &device),
                Err(MonoError::UnetShape { .. })
            ));
        }
        // A few learner steps on one frame lower its loss.
        let ad = device.autodiff();
        let mut net = MonoNet::seeded(&shape, &ad, 3).unwrap();
        let sample = crate::learner::Sample {
            image: input,
            scan: (0..32).map(|c| 1.0 + c as f32 / 8.0).collect(),
            valid: vec![true; 32],
            map: vec![3.0; 300],
            map_valid: vec![true; 300],
            weight: 1.0,
        };
        let mut optim = burn::optim::AdamConfig::new().init();
        let cfg = crate::learner::LearnerConfig::default();
        let mut losses = Vec::new();
        for _ in 0..8 {
            let (n, l) =
                crate::learner::train_step(net, &mut optim, &[&sample], &shape, &cfg, &ad).unwrap();
            net = n;
            losses.push(l);
        }
        assert!(losses[7] < 0.5 * losses[0], "{losses:?}");
    }

    #[test]
    fn network_output_has_one_depth_per_column_and_a_coarse_map() {
        let device = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let shape = MonoShape::default();
        let net = MonoNet::new(&shape, &device).unwrap();
        let input = vec![0.1f32; shape.width * shape.height];
        let est = infer(&net, &input, &shape, &device).unwrap();
        assert_eq!(est.scan.len(), shape.columns);
        assert_eq!(est.map_size, (5, 10));
        assert_eq!(est.map.len(), 50);
        assert!(
            est.scan
                .iter()
                .chain(&est.map)
                .all(|z| (shape.min_depth..=shape.max_depth).contains(z))
        );
        assert!(net.num_params() < 300_000, "{}", net.num_params());
        assert!(matches!(
            infer(&net, &input[1..], &shape, &device),
            Err(MonoError::ImageSize { .. })
        ));
        for (w, h) in [(128, 96), (160, 120), (80, 60)] {
            let s = MonoShape {
                width: w,
                height: h,
                ..shape
            };
            let n = MonoNet::new(&s, &device).unwrap();
            let e = infer(&n, &vec![0.0; w * h], &s, &device).unwrap();
            assert_eq!(e.map.len(), e.map_size.0 * e.map_size.1);
        }
        let odd = MonoShape { width: 81, ..shape };
        assert!(matches!(
            MonoNet::new(&odd, &device),
            Err(MonoError::Shape { .. })
        ));
    }

    #[test]
    fn coarse_target_takes_cell_medians_and_marks_sparse_cells_unknown() {
        let shape = MonoShape::default(); // 5 x 10 map
        let (w, h) = (20, 10);
        let mut d = vec![f32::NAN; w * h];
        // Cell (0, 0) covers rows 0..2, columns 0..2: three known values of four.
        d[0] = 1.0;
        d[1] = 3.0;
        d[w] = 2.0;
        // Cell (1, 1): one known pixel of four is a fifth or more: known.
        d[2 * w + 2] = 4.0;
        let (map, valid) = coarse_target(&d, w, h, &shape).unwrap();
        assert_eq!((map[0], valid[0]), (2.0, true));
        assert_eq!((map[11], valid[11]), (4.0, true));
        assert!(!valid[2]);
        assert!(coarse_target(&d[1..], w, h, &shape).is_err());
    }
}

/// Save a trained network as a burnpack checkpoint, creating the folder.
pub fn save_checkpoint(net: &MonoNet, path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    // The architecture's own module is saved, not the enum around it: the
    // file's tensor names stay those of the patch network's earlier files.
    match net.valid() {
        MonoNet::Patch(n) => n.save_file(path),
        MonoNet::Unet(n) => n.save_file(path),
    }
    .map_err(|e| anyhow::anyhow!("cannot save checkpoint {}: {e:?}", path.display()))
}

/// Load network weights saved by `agent fly` (burnpack) onto `device`.
pub fn load_checkpoint(
    path: &std::path::Path,
    shape: &MonoShape,
    device: &Device,
) -> Result<MonoNet, CheckpointError> {
    if !path.is_file() {
        return Err(CheckpointError {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let refuse = |reason: String| CheckpointError {
        path: path.display().to_string(),
        reason,
    };
    let net = match MonoNet::unloaded(shape, device).map_err(|e| refuse(e.to_string()))? {
        MonoNet::Patch(n) => MonoNet::Patch(
            n.try_load_file(path)
                .map_err(|e| refuse(format!("{e:?}")))?,
        ),
        MonoNet::Unet(n) => {
            let n = n
                .try_load_file(path)
                .map_err(|e| refuse(format!("{e:?}")))?;
            let tag: Vec<f32> = n
                .made_for
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .map_err(|e| refuse(format!("its shape record is unreadable: {e:?}")))?;
            let want = UNet::shape_tag(shape);
            if tag != want {
                return Err(refuse(format!(
                    "it was trained for a `unet` of (width, height, columns, band x 1e4) {tag:?}, these settings are {want:?}"
                )));
            }
            MonoNet::Unet(n)
        }
    };
    // Weights that load but cannot give a depth (NaN or infinite values from
    // a diverged learner or a flipped bit) are refused here, before any node
    // flies on them: one inference on a mid-gray image must be finite.
    let gray = vec![0.5f32; shape.width * shape.height];
    infer(&net, &gray, shape, device).map_err(|e| CheckpointError {
        path: path.display().to_string(),
        reason: format!("its weights give no usable depth (non-finite weights?): {e}"),
    })?;
    Ok(net)
}

/// A checkpoint that could not be loaded.
#[derive(Debug, Error, PartialEq)]
#[error("cannot load mono checkpoint {path}: {reason}")]
pub struct CheckpointError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_bad_files_are_refused() {
        let device = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let shape = MonoShape::default();
        let net = MonoNet::seeded(&shape, &device, 11).unwrap();
        let dir = std::env::temp_dir().join(format!("mono-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bpk");
        let input: Vec<f32> = (0..shape.width * shape.height)
            .map(|i| (i % 13) as f32 / 13.0 - 0.5)
            .collect();
        let before = infer(&net, &input, &shape, &device).unwrap();
        save_checkpoint(&net, &path).unwrap();
        MonoNet::seeded(&shape, &device, 99).unwrap(); // other weights in the generator
        let loaded = load_checkpoint(&path, &shape, &device).unwrap();
        assert_eq!(infer(&loaded, &input, &shape, &device).unwrap(), before);
        assert!(load_checkpoint(&dir.join("missing.bpk"), &shape, &device).is_err());
        std::fs::write(dir.join("junk.bpk"), b"not a burnpack").unwrap();
        assert!(load_checkpoint(&dir.join("junk.bpk"), &shape, &device).is_err());
        // A checkpoint of another architecture (16 scan columns) is refused.
        let other = MonoShape {
            columns: 16,
            ..shape
        };
        save_checkpoint(
            &MonoNet::new(&other, &device).unwrap(),
            &dir.join("other.bpk"),
        )
        .unwrap();
        let e = load_checkpoint(&dir.join("other.bpk"), &shape, &device).unwrap_err();
        assert!(e.to_string().contains("other.bpk"), "{e}");
        // The U-Net's convolutions fit any size: its checkpoint says what it
        // was made for, and another shape (or the patch network) is refused.
        let unet = MonoShape {
            width: 160,
            height: 120,
            arch: MonoArch::Unet,
            ..shape
        };
        save_checkpoint(
            &MonoNet::new(&unet, &device).unwrap(),
            &dir.join("unet.bpk"),
        )
        .unwrap();
        assert!(load_checkpoint(&dir.join("unet.bpk"), &unet, &device).is_ok());
        for wrong in [
            MonoShape {
                columns: 16,
                ..unet
            },
            MonoShape {
                width: 320,
                height: 240,
                ..unet
            },
            MonoShape { band: 0.3, ..unet },
        ] {
            let e = load_checkpoint(&dir.join("unet.bpk"), &wrong, &device).unwrap_err();
            assert!(e.reason.contains("trained for a `unet`"), "{e}");
        }
        assert!(load_checkpoint(&dir.join("unet.bpk"), &shape, &device).is_err());
        assert!(load_checkpoint(&path, &unet, &device).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A checkpoint whose weights are NaN (every float of its tensor data set
    /// to NaN bytes) loads as a file but is refused for its output.
    #[test]
    fn nan_weights_are_refused() {
        let device = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let shape = MonoShape::default();
        let net = MonoNet::seeded(&shape, &device, 5).unwrap();
        let dir = std::env::temp_dir().join(format!("mono-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bpk");
        save_checkpoint(&net, &path).unwrap();
        let good = std::fs::read(&path).unwrap();
        // The tensor data is the bulk of the file, after its header: NaN
        // (0xFFFFFFFF) over its second half, float-aligned.
        let mut bad = good.clone();
        let from = (good.len() / 2) & !3;
        for b in &mut bad[from..] {
            *b = 0xFF;
        }
        std::fs::write(&path, &bad).unwrap();
        let e = load_checkpoint(&path, &shape, &device).unwrap_err();
        assert!(e.reason.contains("non-finite"), "{e}");
        std::fs::write(&path, &good).unwrap();
        assert!(load_checkpoint(&path, &shape, &device).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}
