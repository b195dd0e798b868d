//! The monocular depth cue: a small convolutional network that maps one grayscale
//! frame to a per-column depth scan, and the conversions between camera frames,
//! stereo depth maps and its tensors.

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
    /// The network produced a tensor of the wrong size or non-finite values.
    #[error("network output unusable: {0}")]
    Output(String),
}

/// Encoder of four stride-2 convolutions and a two-layer head to log-depth per column.
#[derive(Module, Debug)]
pub struct MonoNet {
    c1: Conv2d,
    c2: Conv2d,
    c3: Conv2d,
    c4: Conv2d,
    fc1: Linear,
    fc2: Linear,
    act: Relu,
}

fn conv(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

fn down(n: usize) -> usize {
    n.div_ceil(2)
}

impl MonoNet {
    /// A freshly initialised network on `device`.
    pub fn new(shape: &MonoShape, device: &Device) -> Self {
        let (mut w, mut h) = (shape.width, shape.height);
        for _ in 0..4 {
            w = down(w);
            h = down(h);
        }
        Self {
            c1: conv(1, 8, device),
            c2: conv(8, 16, device),
            c3: conv(16, 32, device),
            c4: conv(32, 32, device),
            fc1: LinearConfig::new(32 * w * h, 128).init(device),
            fc2: LinearConfig::new(128, shape.columns).init(device),
            act: Relu::new(),
        }
    }

    /// Log-depth scan [batch, columns] of images [batch, 1, height, width].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.act.forward(self.c1.forward(x));
        let x = self.act.forward(self.c2.forward(x));
        let x = self.act.forward(self.c3.forward(x));
        let x = self.act.forward(self.c4.forward(x));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.act.forward(self.fc1.forward(x));
        self.fc2.forward(x)
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

/// Run the network on one preprocessed image; returns the depth scan in metres.
pub fn infer(
    net: &MonoNet,
    input: &[f32],
    shape: &MonoShape,
    device: &Device,
) -> Result<Vec<f32>, MonoError> {
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [1, 1, shape.height, shape.width]),
        device,
    );
    let out = net.forward(x).into_data();
    let v: Vec<f32> = out
        .try_to_vec::<f32>()
        .map_err(|e| MonoError::Output(format!("{e:?}")))?;
    if v.len() != shape.columns || v.iter().any(|x| !x.is_finite()) {
        return Err(MonoError::Output(format!(
            "{} values, finite: {}",
            v.len(),
            v.iter().all(|x| x.is_finite())
        )));
    }
    Ok(v.iter()
        .map(|l| l.exp().clamp(shape.min_depth, shape.max_depth))
        .collect())
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
    fn network_output_has_one_depth_per_column() {
        let device = crate::device::device(crate::device::Backend::Cpu).unwrap();
        let shape = MonoShape::default();
        let net = MonoNet::new(&shape, &device);
        let input = vec![0.1f32; shape.width * shape.height];
        let scan = infer(&net, &input, &shape, &device).unwrap();
        assert_eq!(scan.len(), shape.columns);
        assert!(
            scan.iter()
                .all(|z| (shape.min_depth..=shape.max_depth).contains(z))
        );
        assert!(net.num_params() < 300_000, "{}", net.num_params());
    }
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
    MonoNet::new(shape, device)
        .try_load_file(path)
        .map_err(|e| CheckpointError {
            path: path.display().to_string(),
            reason: format!("{e:?}"),
        })
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
        device.seed(11);
        let net = MonoNet::new(&shape, &device);
        let dir = std::env::temp_dir().join(format!("mono-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bpk");
        let input: Vec<f32> = (0..shape.width * shape.height)
            .map(|i| (i % 13) as f32 / 13.0 - 0.5)
            .collect();
        let before = infer(&net, &input, &shape, &device).unwrap();
        net.save_file(&path).unwrap();
        device.seed(99);
        let loaded = load_checkpoint(&path, &shape, &device).unwrap();
        assert_eq!(infer(&loaded, &input, &shape, &device).unwrap(), before);
        assert!(load_checkpoint(&dir.join("missing.bpk"), &shape, &device).is_err());
        std::fs::write(dir.join("junk.bpk"), b"not a burnpack").unwrap();
        assert!(load_checkpoint(&dir.join("junk.bpk"), &shape, &device).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
