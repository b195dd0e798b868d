//! The `agent` command line, by command family: the robot's nodes
//! ([`node`]), recording and replaying the bus ([`bus`]), the twin's flight
//! experiments and benchmarks ([`lab`]) and reinforcement learning ([`learn`]).

pub(crate) mod arm;
pub(crate) mod bus;
#[cfg(feature = "camera")]
pub(crate) mod camera;
#[cfg(feature = "twin")]
pub(crate) mod lab;
#[cfg(feature = "twin")]
pub(crate) mod learn;
pub(crate) mod node;
pub(crate) mod secure;

use anyhow::{Context as _, Result};

/// Topic suffixes (`camera/stereo,state`) to topics; empty = every topic.
pub(crate) fn parse_topics(names: &[String]) -> Result<Vec<::bus::Topic>> {
    if names.is_empty() {
        return Ok(::bus::Topic::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            ::bus::Topic::from_suffix(n).with_context(|| {
                let known: Vec<_> = ::bus::Topic::ALL.iter().map(|t| t.suffix()).collect();
                format!("unknown topic `{n}` (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// Where a command joins the bus.
#[derive(clap::Args)]
pub(crate) struct BusArgs {
    /// Robot name: the topics live under it.
    #[arg(long, default_value = "robot")]
    robot: String,
    /// zenoh endpoints to listen on.
    #[arg(long)]
    listen: Vec<String>,
    /// zenoh endpoints to connect to.
    #[arg(long)]
    connect: Vec<String>,
    /// Wait before retrying a `--connect` peer that is not listening (yet, or any
    /// more), in ms: first, then doubling up to max.
    #[arg(long, value_name = "FIRST,MAX", default_value_t = ::bus::ConnectRetry::default())]
    connect_retry_ms: ::bus::ConnectRetry,
    /// Join a secured graph: this credentials file (`role:password`, mode 600,
    /// from `agent certs`) proves the node's role to the robot's router
    /// (`agent router`), which --connect names. The node never listens.
    #[arg(long, value_name = "FILE")]
    auth: Option<std::path::PathBuf>,
    /// Mutual TLS (for `tls/HOST:PORT` endpoints): the CA certificate peers
    /// must be signed by; with --tls-cert and --tls-key.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<std::path::PathBuf>,
    /// Mutual TLS: this node's certificate (its common name is its role).
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,
    /// Mutual TLS: this node's private key.
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    tls_key: Option<std::path::PathBuf>,
}

impl BusArgs {
    fn config(&self) -> ::bus::BusConfig {
        ::bus::BusConfig {
            listen: self.listen.clone(),
            connect: self.connect.clone(),
            retry: self.connect_retry_ms,
            auth: self.auth.clone(),
            tls: tls_files(&self.tls_ca, &self.tls_cert, &self.tls_key),
        }
    }

    fn open(&self) -> Result<::bus::Session> {
        Ok(::bus::open(&self.config())?)
    }
}

/// The three TLS files, when all are given (clap makes them come together).
pub(crate) fn tls_files(
    ca: &Option<std::path::PathBuf>,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) -> Option<::bus::TlsFiles> {
    Some(::bus::TlsFiles {
        ca: ca.clone()?,
        cert: cert.clone()?,
        key: key.clone()?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RerunMode {
    Save,
    Connect,
    Spawn,
    Off,
}

/// A frame rate: finite, in (0, 1000] Hz.
pub(crate) fn positive_hz(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= 1000.0 {
        Ok(v)
    } else {
        Err(format!("{v} must be a rate in (0, 1000] Hz"))
    }
}
