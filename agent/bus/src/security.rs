//! Who may do what on a robot's graph: the roles of its nodes, the ground
//! station's rights, credentials files and the router's access control.
//!
//! A secured graph has one door, the robot's zenoh router (`agent router`):
//! every node is a zenoh *client* of it (a client never listens, so there is
//! no other way in), and the router checks who each client is and what it may
//! do.
//!
//! - **Who**: on loopback a node proves its role with a user name and password
//!   (zenoh's user/password authentication: an HMAC of a nonce, the password is
//!   never sent), or with a certificate (mutual TLS); a ground station always
//!   comes over mutual TLS with a certificate of the robot's CA, and with its
//!   password too when the router checks passwords.
//! - **What**: zenoh's access control on the router, default deny. Every robot
//!   role may subscribe to everything of its robot and may publish only its
//!   own topics ([`ROLES`]) and declare only its own liveliness tokens; a ground
//!   station may subscribe to the telemetry topics and publish `nav/goal` and
//!   `cmd/arm` only.
//!   A message that breaks the rules is dropped by the router: it reaches no node.
//!   Robot roles are accepted only on the loopback interface, the ground
//!   station only over TLS.

use crate::Topic;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One kind of node and what it may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// The user name (and certificate common name) the node authenticates with.
    pub name: &'static str,
    /// Topics it may publish.
    pub publishes: &'static [Topic],
    /// Liveliness tokens it may declare (`<robot>/alive/<token>`).
    pub alive: &'static [&'static str],
}

use Topic as T;

/// The robot's roles: one per node kind, plus the twin (camera and vehicle
/// in one) and the recorder. A node runs as the role its credentials name.
pub const ROLES: &[Role] = &[
    Role {
        name: "camera",
        publishes: &[T::CameraStereo, T::CameraHealth, T::Events],
        alive: &["camera", "camera-stream"],
    },
    Role {
        name: "twin",
        publishes: &[T::CameraStereo, T::State, T::Goal, T::Tracks, T::Events],
        alive: &["camera"],
    },
    Role {
        name: "stereo",
        publishes: &[T::DepthStereo, T::Events],
        alive: &["stereo"],
    },
    Role {
        name: "mono",
        publishes: &[T::DepthMono, T::Events],
        alive: &["mono"],
    },
    Role {
        name: "learner",
        publishes: &[T::Events],
        alive: &["learner"],
    },
    Role {
        name: "selfi-learner",
        publishes: &[T::Weights, T::Events],
        alive: &["selfi-learner"],
    },
    Role {
        name: "policy",
        publishes: &[T::CmdSetpoint, T::CmdPolicy, T::Events],
        alive: &["policy"],
    },
    Role {
        name: "safety",
        publishes: &[T::CmdSetpoint, T::Events],
        alive: &["safety"],
    },
    Role {
        name: "fc",
        publishes: &[T::State, T::FcStatus, T::Events],
        alive: &["fc", "mavlink"],
    },
    Role {
        name: "telemetry",
        publishes: &[T::Events],
        alive: &["telemetry"],
    },
    Role {
        name: "record",
        publishes: &[T::Events],
        alive: &[],
    },
    // The ROS 2 bridge: goals and velocity commands from ROS 2 (rviz2, Nav2),
    // when allowed; the policy node flies the latter within its limits.
    Role {
        name: "ros2",
        publishes: &[T::Goal, T::CmdExternal, T::Events],
        alive: &["ros2"],
    },
    // The operator on the robot: `agent arm` (after its preflight checks) and
    // `agent goal`.
    Role {
        name: "operator",
        publishes: &[T::CmdArm, T::Goal, T::Events],
        alive: &[],
    },
];

/// What a ground station may publish: where the robot should go, and arm
/// requests (which the flight-controller node checks: the preflight checks on
/// what it sees of the graph, setpoints streaming, the request's age).
pub const GROUND_PUBLISHES: &[Topic] = &[T::Goal, T::CmdArm];

/// What a ground station may subscribe to: every topic but the learner's weights.
pub const GROUND_READS: &[Topic] = &[
    T::CameraStereo,
    T::CameraHealth,
    T::DepthStereo,
    T::DepthMono,
    T::CmdSetpoint,
    T::CmdPolicy,
    T::State,
    T::FcStatus,
    T::Events,
    T::Goal,
    T::Tracks,
    T::CmdArm,
    T::CmdExternal,
];

/// The role named `name`.
pub fn role(name: &str) -> Option<&'static Role> {
    ROLES.iter().find(|r| r.name == name)
}

/// How the router tells which robot role a loopback client has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalIdentity {
    /// User name and password over TCP (the dictionary file names them).
    Password,
    /// A certificate of the robot's CA over TLS, its common name the role.
    Certificate,
}

/// What the router's access control is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclOptions {
    /// How robot nodes identify themselves.
    pub local: LocalIdentity,
    /// Whether the router checks passwords (then a ground station needs its
    /// password as well as its certificate).
    pub passwords: bool,
    /// Common names of the ground stations' certificates.
    pub grounds: Vec<String>,
}

/// A security setting that cannot be used.
#[derive(Debug, Error)]
pub enum SecurityError {
    /// A name that cannot be a user, role or common name here.
    #[error("`{0}` is not a usable name: use letters, digits, `-`, `_` and `.` only")]
    BadName(String),
    /// A credentials or dictionary file that cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A secret readable by other users.
    #[error(
        "{path} is readable by other users (mode {mode:o}): run `chmod 600 {path}` (it holds a secret)"
    )]
    Exposed { path: PathBuf, mode: u32 },
    /// A credentials file not of the form `user:password`.
    #[error("{path}: expected one line `user:password`, {why}")]
    Format { path: PathBuf, why: &'static str },
}

/// A user name, role or common name: letters, digits, `-`, `_`, `.`.
pub fn check_name(s: &str) -> Result<&str, SecurityError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s)
    } else {
        Err(SecurityError::BadName(s.to_string()))
    }
}

/// Reads a secret file, refusing one that other users could read.
pub fn read_secret(path: &Path) -> Result<String, SecurityError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |source| SecurityError::Read {
        path: path.to_path_buf(),
        source,
    };
    use std::io::Read as _;
    // One open: the permissions checked are those of the file read.
    let mut f = std::fs::File::open(path).map_err(read)?;
    let mode = f.metadata().map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecurityError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(read)?;
    Ok(text)
}

/// The `user:password` of a node's credentials file.
pub fn read_credentials(path: &Path) -> Result<(String, String), SecurityError> {
    let text = read_secret(path)?;
    let bad = |why| SecurityError::Format {
        path: path.to_path_buf(),
        why,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next().ok_or_else(|| bad("the file is empty"))?;
    if lines.next().is_some() {
        return Err(bad("found several lines"));
    }
    let (user, password) = line
        .trim()
        .split_once(':')
        .ok_or_else(|| bad("found no `:`"))?;
    // As zenoh reads its users file: both sides trimmed.
    let (user, password) = (user.trim(), password.trim());
    check_name(user)?;
    if password.is_empty() {
        return Err(bad("the password is empty"));
    }
    Ok((user.to_string(), password.to_string()))
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", v.join(","))
}

fn rule(id: &str, messages: &[&str], flow: &str, keys: &[String]) -> String {
    format!(
        "{{id:\"{id}\",permission:\"allow\",flows:[\"{flow}\"],messages:{},key_exprs:{}}}",
        list(messages.iter().map(|m| m.to_string())),
        list(keys.iter().cloned())
    )
}

/// Every message kind a router may pass on to a client.
const ALL_MESSAGES: &[&str] = &[
    "put",
    "delete",
    "declare_subscriber",
    "query",
    "declare_queryable",
    "reply",
    "liveliness_token",
    "declare_liveliness_subscriber",
    "liveliness_query",
];
const WATCH: &[&str] = &[
    "declare_subscriber",
    "declare_liveliness_subscriber",
    "liveliness_query",
];

/// zenoh's `access_control` section (JSON5) for a robot's router: default
/// deny; see the module documentation for the rules.
pub fn acl_json5(robot: &str, o: &AclOptions) -> Result<String, SecurityError> {
    check_name(robot)?;
    for g in &o.grounds {
        check_name(g)?;
    }
    let all = vec![format!("{robot}/**")];
    let key = |t: &Topic| t.key(robot);
    let mut rules = vec![
        rule("robot-watch", WATCH, "ingress", &all),
        rule("robot-receive", ALL_MESSAGES, "egress", &all),
    ];
    let mut subjects = Vec::new();
    let mut policies = Vec::new();
    for r in ROLES {
        let id = format!("role-{}", r.name);
        let (link, attr) = match o.local {
            LocalIdentity::Password => ("tcp", "usernames"),
            LocalIdentity::Certificate => ("tls", "cert_common_names"),
        };
        // Robot roles only on the loopback interface: a role's key or
        // password taken off the robot is of no use from the network.
        subjects.push(format!(
            "{{id:\"{id}\",{attr}:[\"{}\"],link_protocols:[\"{link}\"],interfaces:[\"lo\"]}}",
            r.name
        ));
        let mut own = vec!["robot-watch".to_string(), "robot-receive".to_string()];
        if !r.publishes.is_empty() {
            let keys: Vec<String> = r.publishes.iter().map(key).collect();
            rules.push(rule(
                &format!("{id}-publish"),
                &["put", "delete"],
                "ingress",
                &keys,
            ));
            own.push(format!("{id}-publish"));
        }
        if !r.alive.is_empty() {
            let keys: Vec<String> = r.alive.iter().map(|a| crate::alive_key(robot, a)).collect();
            rules.push(rule(
                &format!("{id}-alive"),
                &["liveliness_token"],
                "ingress",
                &keys,
            ));
            own.push(format!("{id}-alive"));
        }
        policies.push(format!(
            "{{id:\"{id}\",rules:{},subjects:[\"{id}\"]}}",
            list(own)
        ));
    }
    if !o.grounds.is_empty() {
        let reads: Vec<String> = GROUND_READS.iter().map(key).collect();
        let alive = vec![crate::alive_key(robot, "*")];
        let publishes: Vec<String> = GROUND_PUBLISHES.iter().map(key).collect();
        // It may ask for anything (`agent topic list` subscribes to `**`);
        // what reaches it is filtered message by message on the way out.
        rules.push(rule("ground-watch", WATCH, "ingress", &all));
        rules.push(rule("ground-receive", &["put", "delete"], "egress", &reads));
        rules.push(rule(
            "ground-receive-nodes",
            &["liveliness_token"],
            "egress",
            &alive,
        ));
        rules.push(rule("ground-publish", &["put"], "ingress", &publishes));
        // Subscribers of what it may publish, so that its goals are routed.
        rules.push(rule(
            "ground-publish-routes",
            &["declare_subscriber"],
            "egress",
            &publishes,
        ));
        let user = if o.passwords {
            ",usernames:[\"ground\"]"
        } else {
            ""
        };
        subjects.push(format!(
            "{{id:\"ground\",cert_common_names:{}{user},link_protocols:[\"tls\"]}}",
            list(o.grounds.iter().cloned())
        ));
        policies.push(
            "{id:\"ground\",rules:[\"ground-watch\",\"ground-receive\",\
             \"ground-receive-nodes\",\"ground-publish\",\"ground-publish-routes\"],subjects:[\"ground\"]}"
                .to_string(),
        );
    }
    Ok(format!(
        "{{enabled:true,default_permission:\"deny\",rules:[{}],subjects:[{}],policies:[{}]}}",
        rules.join(","),
        subjects.join(","),
        policies.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_a_publishing_role_and_roles_are_unique() {
        for t in Topic::ALL {
            assert!(
                ROLES.iter().any(|r| r.publishes.contains(&t)),
                "{} has no role that may publish it",
                t.suffix()
            );
        }
        for (i, r) in ROLES.iter().enumerate() {
            check_name(r.name).unwrap();
            assert!(ROLES[..i].iter().all(|o| o.name != r.name), "{}", r.name);
        }
        assert!(role("ground").is_none(), "ground is not a robot role");
    }

    #[test]
    fn acl_is_valid_zenoh_config_and_names_each_role() {
        for local in [LocalIdentity::Password, LocalIdentity::Certificate] {
            let o = AclOptions {
                local,
                passwords: local == LocalIdentity::Password,
                grounds: vec!["ground".into(), "gcs-2".into()],
            };
            let acl = acl_json5("robot", &o).unwrap();
            let mut c = zenoh::Config::default();
            c.insert_json5("access_control", &acl)
                .unwrap_or_else(|e| panic!("{e}: {acl}"));
            assert!(acl.contains("\"robot/cmd/setpoint\""));
            assert!(acl.contains("role-policy-publish"));
        }
    }

    #[test]
    fn bad_names_and_exposed_or_malformed_secrets_are_refused() {
        assert!(check_name("robot/**").is_err());
        assert!(
            acl_json5(
                "r",
                &AclOptions {
                    local: LocalIdentity::Password,
                    passwords: true,
                    grounds: vec!["a\"b".into()],
                }
            )
            .is_err()
        );
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bus-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.auth");
        std::fs::write(&p, "policy:secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_credentials(&p).unwrap_err();
        assert!(matches!(e, SecurityError::Exposed { .. }), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_credentials(&p).unwrap(),
            ("policy".to_string(), "secret".to_string())
        );
        for bad in ["", "policy\n", "policy:\n", "a:b\nc:d\n", "no/slash:x\n"] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_credentials(&p).is_err(), "{bad:?} accepted");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
