//! Semi-global matching on the GPU: wgpu compute shaders on Vulkan (NVIDIA
//! incl. Jetson's L4T driver, AMD, Intel, and Mesa's software lavapipe).
//!
//! The same matcher as [`crate::Sgm`], step for step: the census transform, the
//! path recurrence along 8 (or 4) directions with the same P1, edge-adapted P2
//! and integer arithmetic, the two raster passes' sums combined as the CPU's
//! meeting passes combine them (the stored half's sums kept as a minimum plus
//! byte excesses), and the integer part of winner-take-all (the best total and
//! its first disparity, the runner-up beyond ±1, the neighbours the parabola
//! goes through). The host reads those integers back and finishes with the
//! CPU's own code: sub-pixel refinement, the uniqueness test, the right image's
//! disparities, left-right check, texture, border and speckles. So the GPU's
//! disparity map equals the CPU's bit for bit; `tests/tests/backends.rs`
//! checks it on lavapipe in CI.
//!
//! Layout: one workgroup walks one scan line of one direction, an invocation
//! per two disparities, the previous pixel's path costs and their minimum in
//! workgroup memory (libSGM's scheme, Hernandez-Juarez et al., "Embedded
//! real-time stereo estimation via semi-global matching on the GPU", ICCS
//! 2016, runs a warp per line the same way). A direction's dispatch adds its
//! costs into its pass's sum volume (16 bits per disparity); the directions
//! of a pass run one after another, so no global atomics are needed.

use crate::census::bits;
use crate::image::{Disparity, GrayImage, StereoError, check_pair, with_min_disp};
use crate::paths::p2_table;
use crate::post::{self, Wta};
use crate::sgm::{Paths, SgmParams};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use thiserror::Error;
use wgpu::util::DeviceExt as _;

/// Why the GPU matcher could not run.
#[derive(Debug, Error)]
pub enum GpuError {
    /// The pair or the settings were refused (as the CPU matcher refuses them).
    #[error(transparent)]
    Stereo(#[from] StereoError),
    /// No Vulkan adapter.
    #[error(
        "no Vulkan adapter could be opened; is a Vulkan driver installed (libvulkan1 and the GPU's ICD, or mesa-vulkan-drivers for lavapipe)?"
    )]
    NoAdapter(#[source] wgpu::RequestAdapterError),
    /// The driver panicked inside wgpu while the adapter or device opened.
    #[error("the Vulkan driver failed while opening ({0})")]
    DriverPanicked(String),
    /// The adapter would not give a device.
    #[error("the GPU device could not be opened on {adapter}: {source}")]
    Device {
        /// The adapter.
        adapter: String,
        /// wgpu's reason.
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// A buffer the pair needs exceeds what the adapter allows.
    #[error(
        "{what} of a {width}x{height} pair with {dn} disparities needs {need} bytes in one buffer; {adapter} allows {limit}"
    )]
    TooLarge {
        /// Which buffer.
        what: &'static str,
        /// Pair size.
        width: usize,
        /// Pair size.
        height: usize,
        /// Disparities.
        dn: usize,
        /// Bytes needed.
        need: u64,
        /// The adapter's limit.
        limit: u64,
        /// The adapter.
        adapter: String,
    },
    /// wgpu reported an error (validation, out of memory, an internal one).
    #[error("the GPU reported an error while {what}: {source}")]
    Gpu {
        /// What was being done.
        what: &'static str,
        /// wgpu's error.
        #[source]
        source: wgpu::Error,
    },
    /// wgpu reported an error outside any scope (a lost device, a driver fault).
    #[error("the GPU reported an error: {0}")]
    Uncaptured(String),
    /// Reading the result back failed.
    #[error("reading the disparities back from the GPU failed: {0}")]
    Map(#[source] wgpu::BufferAsyncError),
    /// The read-back buffer could not be viewed.
    #[error("viewing the disparities read back from the GPU failed: {0}")]
    View(#[source] wgpu::MapRangeError),
    /// The read-back never reported (the device was lost while waiting).
    #[error("the GPU never reported the read-back of the disparities")]
    NoAnswer,
    /// Waiting for the GPU failed or took longer than the matcher's timeout
    /// (a hung GPU).
    #[error("waiting for the GPU failed (timeout {timeout:?}): {source}")]
    Poll {
        /// The matcher's timeout.
        timeout: Duration,
        /// wgpu's reason.
        #[source]
        source: wgpu::PollError,
    },
}

/// The adapter: `<name> (<type> on <API>, driver <driver> <version>)`.
fn describe(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?} on {:?}, driver {} {})",
        info.name, info.device_type, info.backend, info.driver, info.driver_info
    )
}

/// An opened Vulkan device.
struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    software: bool,
    limits: wgpu::Limits,
    /// The first error wgpu reported outside an error scope (its default
    /// handler would panic).
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl Gpu {
    /// The first Vulkan adapter wgpu prefers (a discrete GPU, then an integrated
    /// one, then a software one), with all of its limits.
    fn open() -> Result<Gpu, GpuError> {
        let opened = std::panic::catch_unwind(|| {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends: wgpu::Backends::VULKAN,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            let adapter = futures_lite::future::block_on(instance.request_adapter(
                &wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                },
            ))
            .map_err(GpuError::NoAdapter)?;
            let info = adapter.get_info();
            let name = describe(&info);
            let limits = adapter.limits();
            let (device, queue) =
                futures_lite::future::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                    label: Some("stereo"),
                    required_limits: limits.clone(),
                    ..Default::default()
                }))
                .map_err(|source| GpuError::Device {
                    adapter: name.clone(),
                    source,
                })?;
            let uncaptured = Arc::new(Mutex::new(None));
            let seen = Arc::clone(&uncaptured);
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut slot) = seen.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }));
            Ok(Gpu {
                device,
                queue,
                adapter: name,
                software: info.device_type == wgpu::DeviceType::Cpu,
                limits,
                uncaptured,
            })
        });
        match opened {
            Ok(r) => r,
            Err(p) => Err(GpuError::DriverPanicked(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "no message".into()),
            )),
        }
    }

    /// Run `f` inside error scopes: wgpu's validation, memory and internal
    /// errors come back as [`GpuError::Gpu`] instead of a panic, and an error
    /// reported outside any scope since as [`GpuError::Uncaptured`].
    fn checked<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = futures_lite::future::block_on(validation.pop());
        let o = futures_lite::future::block_on(oom.pop());
        let i = futures_lite::future::block_on(internal.pop());
        if let Some(source) = v.or(o).or(i) {
            return Err(GpuError::Gpu { what, source });
        }
        self.uncaptured_error()?;
        Ok(out)
    }

    /// The error wgpu reported outside any scope, if one came.
    fn uncaptured_error(&self) -> Result<(), GpuError> {
        match self.uncaptured.lock().ok().and_then(|slot| slot.clone()) {
            Some(e) => Err(GpuError::Uncaptured(e)),
            None => Ok(()),
        }
    }
}

/// How long a pair may take on the GPU by default: far above a real GPU's
/// milliseconds, and above lavapipe's seconds at 640x480.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The kernels' shared header and their sources.
const COMMON: &str = include_str!("common.wgsl");
const CENSUS: &str = include_str!("census.wgsl");
const AGGREGATE: &str = include_str!("aggregate.wgsl");
const WTA: &str = include_str!("wta.wgsl");

/// The uniform block of the kernels (`Params` in common.wgsl).
#[derive(Clone, Copy, Default)]
struct Params {
    w: u32,
    h: u32,
    dn: u32,
    window: u32,
    nbits: u32,
    p1: u32,
    dx: i32,
    dy: i32,
    first: u32,
    mid: u32,
}

impl Params {
    fn bytes(&self) -> Vec<u8> {
        let words: [u32; 12] = [
            self.w,
            self.h,
            self.dn,
            self.window,
            self.nbits,
            self.p1,
            self.dx as u32,
            self.dy as u32,
            self.first,
            self.mid,
            0,
            0,
        ];
        words.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// The directions of the forward pass (each step (dx, dy)): from the left,
/// from above, and with eight paths the two diagonals from the row above; the
/// backward pass walks the opposite ones.
fn directions(paths: Paths) -> Vec<(i32, i32)> {
    match paths {
        Paths::Eight => vec![(1, 0), (0, 1), (1, 1), (-1, 1)],
        Paths::Four => vec![(1, 0), (0, 1)],
    }
}

/// Scan lines of a direction over a `w` x `h` image.
fn lines(w: usize, h: usize, (dx, dy): (i32, i32)) -> u32 {
    let n = match (dx, dy) {
        (_, 0) => h,
        (0, _) => w,
        _ => w + h - 1,
    };
    n as u32
}

/// Invocations per aggregation workgroup: one per two disparities.
fn workgroup(dn: usize) -> u32 {
    (dn / 2).max(1) as u32
}

/// The buffers and bind groups of one pair size.
struct Frame {
    w: usize,
    h: usize,
    dn: usize,
    img: [wgpu::Buffer; 2],
    census: [wgpu::BindGroup; 2],
    /// One per direction, forward pass first.
    aggregate: Vec<(wgpu::BindGroup, u32)>,
    wta: wgpu::BindGroup,
    picks: wgpu::Buffer,
    staging: wgpu::Buffer,
}

/// A semi-global matcher on the GPU, keeping its buffers between frames of
/// the same size. Settings as [`crate::Sgm`]'s.
pub struct GpuSgm {
    params: SgmParams,
    gpu: Gpu,
    census: wgpu::ComputePipeline,
    /// Its workgroup as wide as half the disparities.
    aggregate: wgpu::ComputePipeline,
    wta: wgpu::ComputePipeline,
    frame: Option<Frame>,
    timeout: Duration,
}

impl std::fmt::Debug for GpuSgm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuSgm")
            .field("params", &self.params)
            .field("adapter", &self.gpu.adapter)
            .finish_non_exhaustive()
    }
}

impl GpuSgm {
    /// Open the GPU and build the kernels for `params`.
    pub fn new(params: SgmParams) -> Result<Self, GpuError> {
        params.validate()?;
        let gpu = Gpu::open()?;
        let wg = workgroup(params.max_disp);
        let (census, aggregate, wta) = gpu.checked("building the kernels", || {
            (
                pipeline(&gpu.device, "census", CENSUS, &[]),
                pipeline(
                    &gpu.device,
                    "aggregate",
                    AGGREGATE,
                    &[("WG", f64::from(wg))],
                ),
                pipeline(&gpu.device, "wta", WTA, &[]),
            )
        })?;
        Ok(Self {
            params,
            gpu,
            census,
            aggregate,
            wta,
            frame: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// How long a pair may take on the GPU before [`GpuSgm::match_pair`]
    /// gives up with [`GpuError::Poll`] (default [`DEFAULT_TIMEOUT`]): a hung
    /// GPU must not stop the stereo stage silently.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The matcher's settings.
    pub fn params(&self) -> &SgmParams {
        &self.params
    }

    /// The adapter it runs on, e.g. `NVIDIA H100 (DiscreteGpu on Vulkan, driver
    /// NVIDIA 550.54)` or `llvmpipe (...) (Cpu on Vulkan, driver llvmpipe ...)`.
    pub fn adapter(&self) -> &str {
        &self.gpu.adapter
    }

    /// Whether the adapter is a software one (a CPU rasterizer such as lavapipe).
    pub fn is_software(&self) -> bool {
        self.gpu.software
    }

    /// Match a rectified pair: disparity of the left image, equal to
    /// [`crate::Sgm::match_pair`]'s.
    pub fn match_pair(
        &mut self,
        left: &GrayImage,
        right: &GrayImage,
    ) -> Result<Disparity, GpuError> {
        let prm = self.params;
        check_pair(left, right, prm.min_disp, prm.max_disp, prm.census_window)?;
        with_min_disp(left, right, prm.min_disp, |left, right| {
            let wta = self.winner_take_all(left, right)?;
            Ok(post::finish(wta, left, &prm))
        })
    }

    /// Census, aggregation and the integer winner-take-all on the GPU; the
    /// picks finished on the CPU.
    fn winner_take_all(&mut self, left: &GrayImage, right: &GrayImage) -> Result<Wta, GpuError> {
        let (w, h, dn) = (left.width, left.height, self.params.max_disp);
        let frame = self.prepare(w, h, dn)?;
        let out = self.run(&frame, left, right);
        // After a failure the buffers are made afresh (a failed read-back may
        // leave the staging buffer mapped).
        if out.is_ok() {
            self.frame = Some(frame);
        }
        out
    }

    /// One pair through the kernels of `frame`, read back and finished.
    fn run(&self, frame: &Frame, left: &GrayImage, right: &GrayImage) -> Result<Wta, GpuError> {
        let (w, h, dn) = (frame.w, frame.h, frame.dn);
        let gpu = &self.gpu;
        for (buf, img) in frame.img.iter().zip([left, right]) {
            gpu.queue.write_buffer(buf, 0, &padded(&img.data));
        }
        let size = frame.picks.size();
        gpu.checked("matching", || {
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sgm") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("sgm"),
                    timestamp_writes: None,
                });
                let tiles = ((w as u32).div_ceil(8), (h as u32).div_ceil(8));
                pass.set_pipeline(&self.census);
                for group in &frame.census {
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(tiles.0, tiles.1, 1);
                }
                pass.set_pipeline(&self.aggregate);
                for (group, n) in &frame.aggregate {
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(*n, 1, 1);
                }
                pass.set_pipeline(&self.wta);
                pass.set_bind_group(0, &frame.wta, &[]);
                pass.dispatch_workgroups(tiles.0, tiles.1, 1);
            }
            enc.copy_buffer_to_buffer(&frame.picks, 0, &frame.staging, 0, size);
            gpu.queue.submit([enc.finish()]);
        })?;
        let (tx, rx) = mpsc::channel();
        frame.staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(self.timeout),
            })
            .map_err(|source| GpuError::Poll {
                timeout: self.timeout,
                source,
            })?;
        gpu.uncaptured_error()?;
        match rx.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Map(e)),
            Err(_) => return Err(GpuError::NoAnswer),
        }
        let picks: Result<Vec<u32>, _> = frame.staging.get_mapped_range(..).map(|view| {
            view.chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        });
        frame.staging.unmap();
        Ok(place(
            &picks.map_err(GpuError::View)?,
            w,
            dn,
            1.0 - self.params.uniqueness,
        ))
    }

    /// The aggregation kernel and buffers for a `w` x `h` pair with `dn`
    /// disparities (taken out of the matcher, made when the size changes).
    fn prepare(&mut self, w: usize, h: usize, dn: usize) -> Result<Frame, GpuError> {
        drop(self.frame.take_if(|f| (f.w, f.h, f.dn) != (w, h, dn)));
        let limits = &self.gpu.limits;
        let fits = |what, need: u64, limit: u64| {
            if need <= limit {
                return Ok(());
            }
            Err(GpuError::TooLarge {
                what,
                width: w,
                height: h,
                dn,
                need,
                limit,
                adapter: self.gpu.adapter.clone(),
            })
        };
        fits(
            "the path sums",
            (w * h * dn * 2) as u64,
            limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
        )?;
        fits(
            "the scan lines (workgroups in one dispatch)",
            u64::from(lines(w, h, (1, 1))),
            u64::from(limits.max_compute_workgroups_per_dimension),
        )?;
        match self.frame.take() {
            Some(f) => Ok(f),
            None => self.frame_for(w, h, dn),
        }
    }

    /// Buffers and bind groups of one pair size.
    fn frame_for(&self, w: usize, h: usize, dn: usize) -> Result<Frame, GpuError> {
        self.gpu
            .checked("allocating the buffers", || self.buffers(w, h, dn))
    }

    /// Buffers and bind groups of one pair size.
    fn buffers(&self, w: usize, h: usize, dn: usize) -> Frame {
        let prm = self.params;
        let dev = &self.gpu.device;
        let aggregate = &self.aggregate;
        let storage = |label, size: usize, extra| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size as u64,
                usage: wgpu::BufferUsages::STORAGE | extra,
                mapped_at_creation: false,
            })
        };
        let base = Params {
            w: w as u32,
            h: h as u32,
            dn: dn as u32,
            window: prm.census_window as u32,
            nbits: bits(prm.census_window),
            p1: u32::from(prm.p1),
            mid: (h / 2) as u32,
            ..Params::default()
        };
        let uniform = |p: Params| {
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &p.bytes(),
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        let px = (w * h).div_ceil(4) * 4;
        let img = [
            storage("left", px, wgpu::BufferUsages::COPY_DST),
            storage("right", px, wgpu::BufferUsages::COPY_DST),
        ];
        let cen = [
            storage("census left", w * h * 8, wgpu::BufferUsages::empty()),
            storage("census right", w * h * 8, wgpu::BufferUsages::empty()),
        ];
        let p2t: Vec<u8> = p2_table(prm.p1, prm.p2, prm.p2_edge)
            .iter()
            .flat_map(|&v| u32::from(v).to_le_bytes())
            .collect();
        let p2t = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("p2"),
            contents: &p2t,
            usage: wgpu::BufferUsages::STORAGE,
        });
        let sums = [
            storage("forward sums", w * h * dn * 2, wgpu::BufferUsages::empty()),
            storage("backward sums", w * h * dn * 2, wgpu::BufferUsages::empty()),
        ];
        let picks = storage("picks", w * h * 12, wgpu::BufferUsages::COPY_SRC);
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("picks read back"),
            size: (w * h * 12) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let group = |pipe: &wgpu::ComputePipeline, bufs: &[&wgpu::Buffer]| {
            let entries: Vec<wgpu::BindGroupEntry> = bufs
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: b.as_entire_binding(),
                })
                .collect();
            dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipe.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let census_params = uniform(base);
        let census = [0, 1].map(|k| group(&self.census, &[&census_params, &img[k], &cen[k]]));
        let mut aggregate_groups = Vec::new();
        for (k, sum) in sums.iter().enumerate() {
            for (i, &(dx, dy)) in directions(prm.paths).iter().enumerate() {
                // The backward pass walks the opposite directions.
                let (dx, dy) = if k == 0 { (dx, dy) } else { (-dx, -dy) };
                let p = uniform(Params {
                    dx,
                    dy,
                    first: u32::from(i == 0),
                    ..base
                });
                let g = group(aggregate, &[&p, &img[0], &cen[0], &cen[1], &p2t, sum]);
                aggregate_groups.push((g, lines(w, h, (dx, dy))));
            }
        }
        let wta_params = uniform(base);
        let wta = group(&self.wta, &[&wta_params, &sums[0], &sums[1], &picks]);
        Frame {
            w,
            h,
            dn,
            img,
            census,
            aggregate: aggregate_groups,
            wta,
            picks,
            staging,
        }
    }
}

/// A compute pipeline from the shared header and a kernel's source, its
/// bind-group layout taken from the shader.
fn pipeline(
    dev: &wgpu::Device,
    entry: &str,
    source: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(entry),
        source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{source}").into()),
    });
    dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            ..Default::default()
        },
        cache: None,
    })
}

/// An image's bytes padded to whole 32-bit words.
fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(4) * 4, 0);
    v
}

/// The CPU's winner-take-all from the GPU's per-pixel integers (best | second
/// << 16, below | above << 16, best disparity): the same margin, sub-pixel
/// parabola and right-image disparities as [`post::pick`] and
/// [`post::RowPicker`].
fn place(picks: &[u32], w: usize, dn: usize, keep: f32) -> Wta {
    let mut wta = Wta::blank(w, picks.len() / (3 * w));
    wta.fill_rows(picks.par_chunks(3 * w), |row, mut out| {
        let mut picker = post::RowPicker::new(keep);
        picker.start(out.right, false);
        for (x, p) in row.chunks_exact(3).enumerate() {
            let lo16 = |v: u32| (v & 0xffff) as u16;
            let hi16 = |v: u32| (v >> 16) as u16;
            let (best, second) = (lo16(p[0]), hi16(p[0]));
            // Inside the image whatever comes back (RowPicker::place
            // subtracts it from x).
            let n_valid = post::n_valid(x, dn);
            let bd = (p[2] as usize).min(n_valid - 1);
            let margin = post::margin(best, second, n_valid, keep);
            let pick = post::refine_between(best, bd, (lo16(p[1]), hi16(p[1])), margin);
            picker.place(x, pick, &mut out);
        }
    });
    wta
}
