//! The stereo stage: a rectified pair in (the camera stage rectifies with the
//! rig's maps; the twin renders rectified pairs), metric depth out — matched
//! by semi-global matching ([`stereo::Sgm`]), turned into depth with the rig's
//! rectified focal length and baseline, and reduced to the per-column depth
//! scan the policy flies on. A column without a valid
//! answer is NaN in the scan: unknown, never a default range.

use super::rig::{RigError, RigGeometry};
use super::stage::{Notes, Stage};
use crate::device::{Backend, DeviceError};
use crate::mono::MonoShape;
use bus::msg::StereoPair;
use bus::wire::Header;
use thiserror::Error;

/// What the stage could not do.
#[derive(Debug, Error)]
pub enum StereoStageError {
    /// The pair does not fit the rig.
    #[error(transparent)]
    Rig(#[from] RigError),
    /// The matcher refused the pair or its settings.
    #[error("stereo matching failed: {0}")]
    Match(#[from] stereo::StereoError),
    /// The GPU matcher could not open (no adapter, no device, a kernel the
    /// driver refused).
    #[cfg(feature = "gpu")]
    #[error("stereo matching on the GPU failed: {0}")]
    Gpu(#[from] stereo::gpu::GpuError),
    /// The GPU was asked for in a build without it.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Where the stage matches: semi-global matching on the CPU's SIMD kernels,
/// or the same matcher on the GPU (`stereo::gpu`, equal disparities).
enum Matcher {
    Cpu(stereo::Sgm),
    #[cfg(feature = "gpu")]
    Gpu(Box<stereo::gpu::GpuSgm>),
}

impl Matcher {
    /// The matcher for `backend`: `auto` takes a hardware GPU when one opens
    /// and the CPU otherwise (a software Vulkan device is slower than the
    /// CPU's kernels), saying why in the log.
    fn open(backend: Backend, params: stereo::SgmParams) -> Result<Matcher, StereoStageError> {
        let cpu =
            || -> Result<Matcher, StereoStageError> { Ok(Matcher::Cpu(stereo::Sgm::new(params)?)) };
        match backend {
            Backend::Cpu => cpu(),
            #[cfg(feature = "gpu")]
            Backend::Gpu => {
                let g = stereo::gpu::GpuSgm::new(params)?;
                if g.is_software() {
                    tracing::warn!(
                        "stereo backend gpu: the Vulkan adapter is a software one ({}), far slower than the CPU's kernels",
                        g.adapter()
                    );
                }
                Ok(Matcher::Gpu(Box::new(g)))
            }
            #[cfg(not(feature = "gpu"))]
            Backend::Gpu => Err(DeviceError::NotCompiled("gpu").into()),
            Backend::Auto => {
                #[cfg(feature = "gpu")]
                let why = match stereo::gpu::GpuSgm::new(params) {
                    Ok(g) if !g.is_software() => return Ok(Matcher::Gpu(Box::new(g))),
                    Ok(g) => format!(
                        "the only Vulkan adapter is a software one ({}), slower than the CPU's kernels",
                        g.adapter()
                    ),
                    Err(e) => e.to_string(),
                };
                #[cfg(not(feature = "gpu"))]
                let why = DeviceError::NotCompiled("gpu").to_string();
                tracing::info!("stereo backend auto: {why}; matching on the CPU");
                cpu()
            }
        }
    }

    /// Match a pair. When the GPU fails mid-flight (a lost device, a hung
    /// queue, a driver fault), the stage matches on the CPU from then on, said
    /// once in the log: the same disparities, later, rather than no depth.
    fn match_pair(
        &mut self,
        left: &stereo::GrayImage,
        right: &stereo::GrayImage,
    ) -> Result<stereo::Disparity, StereoStageError> {
        match self {
            Matcher::Cpu(m) => Ok(m.match_pair(left, right)?),
            #[cfg(feature = "gpu")]
            Matcher::Gpu(m) => match m.match_pair(left, right) {
                Ok(d) => Ok(d),
                Err(stereo::gpu::GpuError::Stereo(e)) => Err(e.into()),
                Err(e) => {
                    tracing::warn!(
                        "stereo matching on the GPU ({}) failed: {e}; matching on the CPU from now on",
                        m.adapter()
                    );
                    let mut cpu = stereo::Sgm::new(*m.params())?;
                    let d = cpu.match_pair(left, right)?;
                    *self = Matcher::Cpu(cpu);
                    Ok(d)
                }
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Matcher::Cpu(_) => format!("CPU (SIMD kernels: {})", stereo::sgm::simd()),
            #[cfg(feature = "gpu")]
            Matcher::Gpu(m) => format!("GPU ({})", m.adapter()),
        }
    }
}

/// Which rows and columns the depth scan covers, and its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanShape {
    /// Columns of the scan.
    pub columns: usize,
    /// Fraction of the rows, centred on the horizon, the scan looks at.
    pub band: f32,
    /// Smallest depth reported (m); nearer answers read this.
    pub min_depth: f32,
    /// Largest depth reported (m); farther answers (and zero disparity) read this.
    pub max_depth: f32,
}

/// The depth scan's shape: the mono network's columns, band and range (the
/// two cues' scans line up column for column).
pub fn scan_shape(m: &MonoShape) -> ScanShape {
    ScanShape {
        columns: m.columns,
        band: m.band,
        min_depth: m.min_depth,
        max_depth: m.max_depth,
    }
}

/// One pair's stereo depth.
#[derive(Debug, Clone)]
pub struct StereoDepth {
    /// The disparity map (rectified left image's pixels).
    pub disparity: stereo::Disparity,
    /// Depth of every pixel (m); NaN where matching gave no valid answer.
    pub depth: Vec<f32>,
    /// Per-column depth scan (m, left to right), in `[min_depth, max_depth]`;
    /// NaN where the column had no valid answer.
    pub scan: Vec<f32>,
    /// The left image (what the mono network should see).
    pub left: Vec<u8>,
}

impl StereoDepth {
    /// Which scan columns are known.
    pub fn known(&self) -> Vec<bool> {
        self.scan.iter().map(|v| v.is_finite()).collect()
    }
}

/// The stereo stage: the rig, the matcher and the scan's shape.
pub struct StereoStage {
    rig: RigGeometry,
    matcher: Matcher,
    shape: ScanShape,
}

impl StereoStage {
    /// A stage for `rig` with matcher settings `params`, matching on the CPU.
    pub fn new(
        rig: RigGeometry,
        params: stereo::SgmParams,
        shape: ScanShape,
    ) -> Result<Self, StereoStageError> {
        Self::on(Backend::Cpu, rig, params, shape)
    }

    /// A stage matching on `backend` (`cpu`, `gpu`, or `auto`: a hardware GPU
    /// when one opens). Both give the same disparities.
    pub fn on(
        backend: Backend,
        rig: RigGeometry,
        params: stereo::SgmParams,
        shape: ScanShape,
    ) -> Result<Self, StereoStageError> {
        Ok(Self {
            rig,
            matcher: Matcher::open(backend, params)?,
            shape,
        })
    }

    /// Where it matches: `CPU (SIMD kernels: AVX2)` or `GPU (<adapter>)`.
    pub fn matcher(&self) -> String {
        self.matcher.describe()
    }

    /// Depth of a rectified pair of `width` x `height` (it must be the rig's size).
    pub fn match_pair(
        &mut self,
        left: &[u8],
        right: &[u8],
        width: usize,
        height: usize,
    ) -> Result<StereoDepth, StereoStageError> {
        self.rig.check("left", width, height, left.len())?;
        self.rig.check("right", width, height, right.len())?;
        let disparity = self.matcher.match_pair(
            &stereo::GrayImage::new(width, height, left.to_vec(), "left")?,
            &stereo::GrayImage::new(width, height, right.to_vec(), "right")?,
        )?;
        let depth = disparity.depth(self.rig.focal, self.rig.baseline);
        let s = self.shape;
        let sgm = stereo::features::depth_scan(
            &disparity,
            self.rig.focal,
            self.rig.baseline,
            s.columns,
            s.band,
            s.max_depth,
        );
        let scan = sgm
            .depth
            .iter()
            .zip(&sgm.valid)
            .map(|(z, ok)| {
                if *ok {
                    z.clamp(s.min_depth, s.max_depth)
                } else {
                    f32::NAN
                }
            })
            .collect();
        Ok(StereoDepth {
            disparity,
            depth,
            scan,
            left: left.to_vec(),
        })
    }
}

/// The stereo stage in the loop: a rectified pair in, its depth out.
impl Stage for StereoStage {
    type In = StereoPair;
    type Out = StereoDepth;
    type Error = StereoStageError;

    fn name(&self) -> &'static str {
        "stereo"
    }

    fn process(
        &mut self,
        _frame: &Header,
        pair: &StereoPair,
        _notes: &mut Notes,
    ) -> Result<Option<StereoDepth>, StereoStageError> {
        let (w, h) = (pair.width as usize, pair.height as usize);
        self.match_pair(&pair.left, &pair.right, w, h).map(Some)
    }
}
