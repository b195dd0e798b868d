//! Writing side-by-side stereo video, as a side-by-side UVC module would send
//! it: for tests and benchmarks of the `file` preset, and to turn recorded
//! pairs into a clip any player opens.

use crate::source::CameraError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::path::Path;

/// How the frames are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Motion JPEG of the given quality (1..=100), in AVI.
    Mjpeg {
        /// JPEG quality.
        quality: u8,
    },
    /// Uncompressed YUYV 4:2:2 in AVI (what a UVC module sends uncompressed).
    Yuyv,
}

fn write_error(path: &Path, reason: impl Into<String>) -> CameraError {
    CameraError::Write {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Writes pairs of `width` x `height` eyes at `fps` as one side-by-side video
/// (`2·width` x `height`); returns the number of frames written.
pub fn write_side_by_side<I>(
    path: &Path,
    width: usize,
    height: usize,
    fps: u32,
    encoding: Encoding,
    pairs: I,
) -> Result<u64, CameraError>
where
    I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
{
    gst::init().map_err(CameraError::Init)?;
    if width == 0 || height == 0 || fps == 0 {
        return Err(write_error(path, format!("{width}x{height} at {fps} fps")));
    }
    let w2 = 2 * width;
    // What the appsrc takes, and the encoder after it.
    let (format, enc) = match encoding {
        // 4:2:2 colour, as UVC cameras send MJPEG. The frames get chroma with
        // the detail of a colour camera's (see `frame`): flat chroma, as from
        // a gray image, would decode faster than any camera's frames.
        Encoding::Mjpeg { quality } => (
            gst_video::VideoFormat::Y42b,
            format!("jpegenc quality={}", quality.clamp(1, 100)),
        ),
        Encoding::Yuyv => (
            gst_video::VideoFormat::Gray8,
            "videoconvert ! video/x-raw,format=YUY2".to_string(),
        ),
    };
    let info = gst_video::VideoInfo::builder(format, w2 as u32, height as u32)
        .build()
        .map_err(|e| write_error(path, format!("{format:?} layout: {e}")))?;
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format={},width={w2},height={height},framerate={fps}/1 ! {enc} ! avimux ! filesink name=out",
        format.to_str()
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| write_error(path, e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| write_error(path, "not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| write_error(path, "no appsrc"))?;
    let out = pipeline
        .by_name("out")
        .ok_or_else(|| write_error(path, "no filesink"))?;
    out.set_property("location", path.display().to_string());
    let bus = pipeline
        .bus()
        .ok_or_else(|| write_error(path, "no message bus"))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| write_error(path, "the writer would not start"))?;
    let frame_ns = 1_000_000_000u64 / u64::from(fps);
    let mut n = 0u64;
    let result = (|| {
        for (l, r) in pairs {
            if l.len() != width * height || r.len() != width * height {
                return Err(write_error(
                    path,
                    format!(
                        "pair {n}: {} and {} bytes for {width}x{height} eyes",
                        l.len(),
                        r.len()
                    ),
                ));
            }
            let data = frame(&l, &r, width, height, &info)
                .map_err(|e| write_error(path, format!("frame {n}: {e}")))?;
            let mut buf = gst::Buffer::from_mut_slice(data);
            if let Some(b) = buf.get_mut() {
                b.set_pts(gst::ClockTime::from_nseconds(n * frame_ns));
                b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
            }
            src.push_buffer(buf)
                .map_err(|e| write_error(path, format!("frame {n}: {e:?}")))?;
            n += 1;
        }
        src.end_of_stream()
            .map_err(|e| write_error(path, format!("end of stream: {e:?}")))?;
        match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(m) => match m.view() {
                gst::MessageView::Error(e) => Err(write_error(path, e.error().to_string())),
                _ => Ok(n),
            },
            None => Err(write_error(path, "the writer did not finish within 120 s")),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// One side-by-side frame of `width` x `height` eyes `l` and `r` in `info`'s
/// layout (GRAY8 or Y42B, GStreamer's strides and plane offsets). A Y42B
/// frame's chroma follows the image's own detail, as a colour camera's does
/// (colour edges lie on brightness edges): Cb from the horizontal and Cr from
/// the vertical brightness change at each chroma sample.
fn frame(
    l: &[u8],
    r: &[u8],
    width: usize,
    height: usize,
    info: &gst_video::VideoInfo,
) -> Result<Vec<u8>, String> {
    let mut data = vec![128u8; info.size()];
    let (off, st) = (info.offset(), info.stride());
    let plane = |k: usize| -> Result<(usize, usize), String> {
        let stride = usize::try_from(st[k]).map_err(|_| format!("plane {k}: negative stride"))?;
        Ok((off[k], stride))
    };
    let (y0, ys) = plane(0)?;
    for y in 0..height {
        let row = &mut data[y0 + y * ys..y0 + y * ys + 2 * width];
        row[..width].copy_from_slice(&l[y * width..(y + 1) * width]);
        row[width..].copy_from_slice(&r[y * width..(y + 1) * width]);
    }
    if info.format() != gst_video::VideoFormat::Y42b {
        return Ok(data);
    }
    let w2 = 2 * width;
    let ((u0, us), (v0, vs)) = (plane(1)?, plane(2)?);
    let luma = data.clone();
    let at = |x: usize, y: usize| i32::from(luma[y0 + y.min(height - 1) * ys + x.min(w2 - 1)]);
    for y in 0..height {
        for cx in 0..width {
            let x = 2 * cx;
            let cb = 128 + (at(x + 2, y) - at(x, y));
            let cr = 128 + (at(x, y + 2) - at(x, y));
            data[u0 + y * us + cx] = cb.clamp(16, 240) as u8;
            data[v0 + y * vs + cx] = cr.clamp(16, 240) as u8;
        }
    }
    Ok(data)
}
