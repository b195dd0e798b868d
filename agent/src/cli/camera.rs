//! The live camera node's command-line settings: the source's
//! ([`camera::cli::SourceArgs`], shared with `calib capture`) and the node's
//! own (stall limit, retry).

use anyhow::Result;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct CameraArgs {
    /// The source (camera node). In a build with the twin, a camera node
    /// given none of these flags is the twin; any of them means the live camera.
    #[command(flatten)]
    source: camera::cli::SourceArgs,
    /// camera node: no pair for this long (ms) and the camera counts as lost
    /// (at least 2.5 frame periods).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    stall_ms: u64,
    /// camera node: wait between attempts to start a lost camera again (ms).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    retry_ms: u64,
    /// camera node: stop when the stream ends (a file played once) instead of
    /// starting it again.
    #[arg(long)]
    once: bool,
}

impl CameraArgs {
    /// The camera node's settings, if a live camera was asked for.
    pub(crate) fn node_options(&self) -> Result<Option<agent::camnode::CameraNodeOptions>> {
        if !self.source.wanted() {
            return Ok(None);
        }
        Ok(Some(agent::camnode::CameraNodeOptions {
            source: self.source.source()?,
            stall: Duration::from_millis(self.stall_ms.max(1)),
            retry: Duration::from_millis(self.retry_ms.max(1)),
            once: self.once,
            ..Default::default()
        }))
    }
}
