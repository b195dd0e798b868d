//! Writing side-by-side stereo video, as a side-by-side UVC module would send
//! it: for tests and benchmarks of the `file` preset, and to turn recorded
//! pairs into a clip any player opens.

use crate::source::CameraError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
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
    let enc = match encoding {
        // 4:2:2 colour, as UVC cameras send MJPEG (a gray JPEG would decode
        // faster than any camera's frames).
        Encoding::Mjpeg { quality } => format!(
            "video/x-raw,format=Y42B ! jpegenc quality={}",
            quality.clamp(1, 100)
        ),
        Encoding::Yuyv => "video/x-raw,format=YUY2".to_string(),
    };
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=GRAY8,width={w2},height={height},framerate={fps}/1 ! videoconvert ! {enc} ! avimux ! filesink name=out"
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
    // GStreamer's GRAY8 rows are padded to 4 bytes.
    let stride = w2.div_ceil(4) * 4;
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
            let mut data = vec![0u8; stride * height];
            for y in 0..height {
                let row = &mut data[y * stride..y * stride + w2];
                row[..width].copy_from_slice(&l[y * width..(y + 1) * width]);
                row[width..].copy_from_slice(&r[y * width..(y + 1) * width]);
            }
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
