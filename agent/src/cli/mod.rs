//! The `agent` command line, by command family: the robot's nodes
//! ([`node`]), recording and replaying the bus ([`bus`]), the twin's flight
//! experiments and benchmarks ([`lab`]), reinforcement learning ([`learn`]:
//! `train`; [`rl`]: the learners on classic tasks; [`selfi`]) and sweeps ([`sweep`]).

pub(crate) mod arm;
pub(crate) mod bus;
#[cfg(feature = "camera")]
pub(crate) mod camera;
#[cfg(feature = "twin")]
pub(crate) mod lab;
#[cfg(feature = "twin")]
pub(crate) mod learn;
#[cfg(feature = "twin")]
pub(crate) mod learn_to_fly;
pub(crate) mod node;
#[cfg(feature = "twin")]
pub(crate) mod rl;
pub(crate) mod secure;
#[cfg(feature = "twin")]
pub(crate) mod selfi;
#[cfg(feature = "twin")]
pub(crate) mod slurm;
#[cfg(feature = "twin")]
pub(crate) mod sweep;
pub(crate) mod topic;

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
            client: false,
            timestamping: false,
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
    above(0.0, 1000.0, "Hz")(s)
}

/// The longest duration an option takes: a year of seconds (a flight, a
/// recording or a wait longer than that is a typo, and `1e300` would overflow
/// the clocks the duration is added to).
pub(crate) const MAX_SECONDS: f64 = 365.0 * 86_400.0;

fn number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|e| format!("{s:?} is not a number: {e}"))
}

/// A parser of option values: a finite number in `(lo, hi]` (`unit` names it
/// in the error). Options are checked when the command line is read, so a
/// NaN, an infinity or an absurd value is refused by name before anything runs.
pub(crate) fn above(
    lo: f64,
    hi: f64,
    unit: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    in_range(lo, hi, false, unit)
}

/// The same for `[lo, hi]`.
pub(crate) fn within(
    lo: f64,
    hi: f64,
    unit: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    in_range(lo, hi, true, unit)
}

fn in_range(
    lo: f64,
    hi: f64,
    lo_included: bool,
    unit: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| {
        let v = number(s)?;
        let above_lo = if lo_included { v >= lo } else { v > lo };
        if v.is_finite() && above_lo && v <= hi {
            Ok(v)
        } else {
            let open = if lo_included { '[' } else { '(' };
            Err(format!("{} is not in {open}{lo}, {hi}] {unit}", s.trim())
                .trim_end()
                .to_string())
        }
    }
}

/// A count in `[lo, hi]`.
pub(crate) fn count(
    lo: usize,
    hi: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| {
        let v: usize = s
            .trim()
            .parse()
            .map_err(|e| format!("{s:?} is not a whole number: {e}"))?;
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{v} is not in [{lo}, {hi}]"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_options_refuse_nan_infinity_and_out_of_range() {
        let secs = above(0.0, MAX_SECONDS, "s");
        assert_eq!(secs("2.5"), Ok(2.5));
        for bad in ["NaN", "inf", "-inf", "1e300", "0", "-1"] {
            assert_eq!(
                secs(bad).unwrap_err(),
                format!("{bad} is not in (0, {MAX_SECONDS}] s"),
                "{bad}"
            );
        }
        assert!(secs("x").unwrap_err().contains("\"x\" is not a number"));
        let frac = within(0.0, 1.0, "");
        assert_eq!((frac("0"), frac("1")), (Ok(0.0), Ok(1.0)));
        assert!(frac("1.01").is_err() && frac("nan").is_err());
        let n = count(1, 100);
        assert_eq!(n("7"), Ok(7));
        assert!(n("0").is_err() && n("101").is_err() && n("-1").is_err() && n("1.5").is_err());
    }
}
