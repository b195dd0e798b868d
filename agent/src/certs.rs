//! `agent certs`: the secrets of a secured graph, made once at install.
//!
//! In one folder:
//! - `ca.pem` / `ca.key`: the robot's own certificate authority (ECDSA P-256,
//!   20 years). Keep `ca.key` off the robot once the certificates are made;
//! - `router.pem` / `router.key`: the router's certificate, valid for
//!   `localhost`, `127.0.0.1` and every `--host` (the names and addresses a
//!   ground station reaches the robot by);
//! - `<role>.pem` / `<role>.key` for each robot role (common name = role;
//!   client certificates only), for nodes that join over mutual TLS;
//! - `<ground>.pem` / `<ground>.key` for each ground station;
//! - `users.txt`: the router's dictionary, `user:password` per line, a random
//!   password (192 bits) for every role and for `ground`;
//! - `<role>.auth` and `ground.auth`: one node's `user:password`.
//!
//! Secret files (keys, passwords) are created with mode 600, readable by the
//! service user only, in a folder made with mode 700. Nothing that exists is
//! overwritten. Certificates are valid from 1970 (robots without a real-time
//! clock boot in the past).

use anyhow::{Context as _, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// What to make.
#[derive(Debug, Clone)]
pub struct CertsSpec {
    /// The folder (created if missing).
    pub out: PathBuf,
    /// The robot's name (in the CA's name, so two robots' CAs are told apart).
    pub robot: String,
    /// Extra names and addresses of the router's certificate.
    pub hosts: Vec<String>,
    /// Ground stations' names (certificate common names).
    pub grounds: Vec<String>,
    /// Days the node and ground-station certificates are valid (the CA: 20 years).
    pub days: u32,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsMade {
    /// Every file, in the order written.
    pub files: Vec<PathBuf>,
}

/// 24 random bytes from the kernel, as 48 hex digits.
fn password() -> Result<String> {
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom for a password")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Writes a new file (never over an existing one), mode 600 for secrets.
fn write_new(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    o.mode(if secret { 0o600 } else { 0o644 });
    let mut f = o.open(path).with_context(|| {
        if path.exists() {
            format!(
                "{} exists: agent certs never overwrites (use another --out)",
                path.display()
            )
        } else {
            format!("cannot create {}", path.display())
        }
    })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The UTC calendar date `days` after 1970-01-01 (Hinnant's civil-from-days).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// Valid from 1970-01-01 — a robot without a real-time clock boots in the
/// past, and a start date later than its clock would make it refuse every peer
/// until the clock is set (a start date adds nothing here) — until `days` days
/// from today.
fn validity(p: &mut CertificateParams, days: u32) {
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    p.not_before = rcgen::date_time_ymd(1970, 1, 1);
    let (y, m, d) = civil(today + i64::from(days));
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

/// Days since 1970 that today must be past: certificates counted from a clock
/// that reads earlier would expire long before they are meant to.
const CLOCK_SANE_DAYS: u64 = 19_723; // 2024-01-01

/// Makes the CA, the certificates and the passwords of `spec`. Everything is
/// made in memory and every name checked first: on an error nothing is written.
pub fn make(spec: &CertsSpec) -> Result<CertsMade> {
    if spec.days == 0 || spec.days > 7300 {
        bail!("--days must be in 1..=7300, got {}", spec.days);
    }
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    if today < CLOCK_SANE_DAYS {
        let (y, m, d) = civil(today as i64);
        bail!(
            "this machine's clock reads {y}-{m:02}-{d:02}: set it (NTP, or `date -s`) before \
             making certificates, whose end of validity counts from today"
        );
    }
    bus::security::check_name(&spec.robot)?;
    for g in &spec.grounds {
        bus::security::check_name(g)?;
        if bus::security::role(g).is_some() || g == "router" || g == "ca" || g == "users" {
            bail!("ground station name `{g}` is taken by a robot role or file: pick another");
        }
    }
    let mut files: Vec<(String, String, bool)> = Vec::new();

    let ca_key = KeyPair::generate().context("cannot make the CA key")?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("onboard agent CA of {}", spec.robot),
    );
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, 7300);
    let ca_cert = ca.self_signed(&ca_key).context("cannot sign the CA")?;
    files.push(("ca.pem".into(), ca_cert.pem(), false));
    files.push(("ca.key".into(), ca_key.serialize_pem(), true));
    let issuer = Issuer::new(ca, ca_key);

    // The router's certificate is a server's (its names: where it is reached);
    // the nodes' and ground stations' are clients' only, with no name to
    // serve under, so no stolen node key can pose as the router.
    let leaf = |name: &str, sans: Vec<String>, server: bool| -> Result<(String, String)> {
        let key = KeyPair::generate().context("cannot make a key")?;
        let mut p = CertificateParams::new(sans)
            .with_context(|| format!("bad host name for the {name} certificate"))?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        validity(&mut p, spec.days);
        let cert = p
            .signed_by(&key, &issuer)
            .with_context(|| format!("cannot sign the {name} certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    sans.extend(spec.hosts.iter().cloned());
    let (c, k) = leaf("router", sans, true)?;
    files.push(("router.pem".into(), c, false));
    files.push(("router.key".into(), k, true));
    let mut users = String::new();
    for r in bus::security::ROLES {
        let (c, k) = leaf(r.name, Vec::new(), false)?;
        files.push((format!("{}.pem", r.name), c, false));
        files.push((format!("{}.key", r.name), k, true));
        let line = format!("{}:{}\n", r.name, password()?);
        files.push((format!("{}.auth", r.name), line.clone(), true));
        users.push_str(&line);
    }
    for g in &spec.grounds {
        let (c, k) = leaf(g, Vec::new(), false)?;
        files.push((format!("{g}.pem"), c, false));
        files.push((format!("{g}.key"), k, true));
    }
    if !spec.grounds.is_empty() {
        let line = format!("ground:{}\n", password()?);
        files.push(("ground.auth".into(), line.clone(), true));
        users.push_str(&line);
    }
    files.push(("users.txt".into(), users, true));

    if let Some((name, _, _)) = files.iter().find(|(n, _, _)| spec.out.join(n).exists()) {
        bail!(
            "{} exists: agent certs never overwrites (use another --out)",
            spec.out.join(name).display()
        );
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        // The folder of the keys: its owner's only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spec.out)
            .with_context(|| format!("cannot create {}", spec.out.display()))?;
    }
    let mut written = Vec::new();
    for (name, text, secret) in &files {
        let p = spec.out.join(name);
        write_new(&p, text, *secret)?;
        written.push(p);
    }
    Ok(CertsMade { files: written })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_792), (2026, 12, 5));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn makes_every_file_with_private_modes_and_never_overwrites() {
        let out = std::env::temp_dir().join(format!("agent-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let spec = CertsSpec {
            out: out.clone(),
            robot: "robot".into(),
            hosts: vec!["192.168.1.20".into(), "robot.local".into()],
            grounds: vec!["gcs".into()],
            days: 30,
        };
        let made = make(&spec).unwrap();
        let roles = bus::security::ROLES.len();
        // CA 2 + router 2 + 3 per role + ground 2 + ground.auth + users.txt
        assert_eq!(made.files.len(), 2 + 2 + 3 * roles + 2 + 1 + 1);
        for f in &made.files {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let secret = name.ends_with(".key") || name.ends_with(".auth") || name == "users.txt";
            if secret {
                assert_eq!(mode, 0o600, "{name}");
            } else {
                // (0644 less whatever the umask takes away)
                assert_eq!(mode & 0o600, 0o600, "{name}");
                assert_eq!(mode & 0o133, 0, "{name}");
            }
        }
        let (user, pw) = bus::security::read_credentials(&out.join("policy.auth")).unwrap();
        assert_eq!(user, "policy");
        assert_eq!(pw.len(), 48);
        let dict = std::fs::read_to_string(out.join("users.txt")).unwrap();
        assert!(dict.contains(&format!("policy:{pw}\n")));
        assert!(dict.lines().any(|l| l.starts_with("ground:")));
        let e = make(&spec).unwrap_err();
        assert!(format!("{e:#}").contains("never overwrites"), "{e:#}");
        let bad = CertsSpec {
            grounds: vec!["policy".into()],
            out: out.join("other"),
            ..spec.clone()
        };
        assert!(make(&bad).is_err());
        // A bad host name is found before anything is written.
        let bad_host = CertsSpec {
            hosts: vec!["h\u{f4}st".into()],
            out: out.join("third"),
            ..spec
        };
        assert!(make(&bad_host).is_err());
        assert!(
            !out.join("third").exists(),
            "files written before the error"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}
