//! `agent certs` and `agent router`: a secured graph's secrets and its one door.

use super::tls_files;
use anyhow::{Context as _, Result};
use bus::security::{AclOptions, LocalIdentity};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct CertsArgs {
    /// Folder to write into (created; nothing in it is overwritten).
    #[arg(long, default_value = "secrets")]
    out: PathBuf,
    /// The robot's name (in its CA's name).
    #[arg(long, default_value = "robot")]
    robot: String,
    /// Names and addresses a ground station reaches the robot by (the router
    /// certificate's subject names, beside localhost and 127.0.0.1), comma-separated.
    #[arg(long, value_delimiter = ',')]
    host: Vec<String>,
    /// Ground stations to make certificates for (their common names), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ground")]
    ground: Vec<String>,
    /// Days the node and ground-station certificates are valid (the CA: 20 years).
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
}

/// `agent certs`.
pub(crate) fn certs(a: CertsArgs) -> Result<()> {
    let made = agent::certs::make(&agent::certs::CertsSpec {
        out: a.out.clone(),
        robot: a.robot,
        hosts: a.host,
        grounds: a.ground,
        days: a.days,
    })?;
    println!(
        "{} files in {} (keys and passwords mode 600; move ca.key off the robot)",
        made.files.len(),
        a.out.display()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Identity {
    /// Nodes prove their role with `--auth ROLE.auth` over loopback TCP.
    Password,
    /// Nodes prove their role with a certificate over loopback TLS.
    Certificate,
}

#[derive(clap::Args)]
pub(crate) struct RouterArgs {
    /// Robot name: the access control covers its keys.
    #[arg(long, default_value = "robot")]
    robot: String,
    /// Endpoints: the nodes' loopback endpoint and the one TLS endpoint that
    /// links leaving the robot use.
    #[arg(long, value_delimiter = ',', default_value = "tcp/127.0.0.1:7450")]
    listen: Vec<String>,
    /// The users and passwords dictionary (users.txt from `agent certs`).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// How robot nodes prove their role.
    #[arg(long, value_enum, default_value = "password")]
    identity: Identity,
    /// Mutual TLS: the CA certificate clients must be signed by.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Mutual TLS: the router's certificate.
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// Mutual TLS: the router's private key.
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// Ground stations' certificate common names allowed in over TLS
    /// (telemetry out, `nav/goal` in), comma-separated; none: no ground station.
    #[arg(long, value_delimiter = ',')]
    ground: Vec<String>,
    /// Print the access control (zenoh's `access_control` JSON5) and exit.
    #[arg(long)]
    print_acl: bool,
    /// A plain router for training nodes (`agent node actor`, `agent node
    /// rl-learner`) on several hosts: no access control, no identities, any
    /// TCP endpoint. It carries transitions and weights on a trusted network,
    /// never a robot's graph.
    #[arg(long, conflicts_with_all = ["users", "tls_ca", "ground", "print_acl"])]
    open: bool,
}

impl RouterArgs {
    fn acl(&self) -> Result<String> {
        Ok(bus::security::acl_json5(
            &self.robot,
            &AclOptions {
                local: match self.identity {
                    Identity::Password => LocalIdentity::Password,
                    Identity::Certificate => LocalIdentity::Certificate,
                },
                passwords: self.users.is_some(),
                grounds: self.ground.clone(),
            },
        )?)
    }
}

/// `agent router`: the secured graph's router until Ctrl-C.
pub(crate) fn router(a: RouterArgs, stop: Arc<AtomicBool>) -> Result<()> {
    if a.open {
        let _session = bus::open_router(&bus::RouterConfig {
            listen: a.listen.clone(),
            users: None,
            tls: None,
            acl: "{enabled:false}".into(),
        })
        .context("cannot start the router")?;
        println!(
            "open router on {} (no access control: training nodes only)",
            a.listen.join(", ")
        );
        return wait_for_stop(&stop);
    }
    for g in &a.ground {
        if bus::security::role(g).is_some() {
            anyhow::bail!("--ground {g}: `{g}` is a robot role, not a ground station's name");
        }
    }
    let acl = a.acl()?;
    if a.print_acl {
        println!("{acl}");
        return Ok(());
    }
    let tls = tls_files(&a.tls_ca, &a.tls_cert, &a.tls_key);
    if a.identity == Identity::Password && a.users.is_none() {
        anyhow::bail!("--identity password needs --users FILE (the dictionary from `agent certs`)");
    }
    if a.identity == Identity::Certificate && tls.is_none() {
        anyhow::bail!("--identity certificate needs --tls-ca, --tls-cert and --tls-key");
    }
    if !a.ground.is_empty() && !a.listen.iter().any(|e| e.starts_with("tls/")) {
        anyhow::bail!("--ground needs a tls/HOST:PORT endpoint in --listen");
    }
    for e in &a.listen {
        if let Some(host) = e.strip_prefix("tcp/")
            && !(host.starts_with("127.")
                || host.starts_with("localhost:")
                || host.starts_with("[::1]"))
        {
            anyhow::bail!(
                "{e}: a plain TCP endpoint off loopback would carry the graph unencrypted; \
                 robot nodes join on loopback, links that leave the robot use tls/"
            );
        }
    }
    let _session = bus::open_router(&bus::RouterConfig {
        listen: a.listen.clone(),
        users: a.users.clone(),
        tls,
        acl,
    })
    .context("cannot start the router")?;
    println!(
        "router for `{}` on {} ({:?} identity, ground stations: {})",
        a.robot,
        a.listen.join(", "),
        a.identity,
        if a.ground.is_empty() {
            "none".to_string()
        } else {
            a.ground.join(", ")
        }
    );
    wait_for_stop(&stop)
}

fn wait_for_stop(stop: &AtomicBool) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("router stopped");
    Ok(())
}
