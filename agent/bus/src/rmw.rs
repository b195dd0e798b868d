//! ROS 2 on zenoh as rmw_zenoh (ROS 2's zenoh middleware, Jazzy and later)
//! speaks it, for the `ros2` bridge node: the key expression of a topic's
//! data, the liveliness tokens by which ROS 2 discovers nodes, publishers and
//! subscriptions (`ros2 node list`, `ros2 topic list`), the QoS written in
//! them, and the attachment each sample carries. The formats are rmw_zenoh's
//! design document's (`docs/design.md` in ros2/rmw_zenoh):
//!
//! - data: `<domain>/<topic without its leading '/'>/<pkg>::msg::dds_::<Type>_/<RIHS01 hash>`,
//!   the payload the message's CDR with its encapsulation header;
//! - tokens: `@ros2_lv/<domain>/<session id>/<node id>/<entity id>/<kind>/<enclave>/<namespace>/<node>`
//!   and, for a publisher (`MP`) or subscription (`MS`), `/<topic>/<type>/<hash>/<qos>`,
//!   every `/` inside a field written `%` (an empty namespace or the default
//!   enclave is `%`);
//! - QoS: `<reliability>:<durability>:<history>,<depth>:<deadline>:<lifespan>:<liveliness>`
//!   with rmw's enum numbers, empty where rmw_zenoh's default applies;
//! - attachment: the sample's sequence number (i64, little-endian, from 1), its
//!   source time (i64 ns since the UNIX epoch, little-endian), then the
//!   publisher's 16-byte GID as a sequence (LEB128 length `0x10`, the bytes):
//!   33 bytes (rmw_zenoh 0.2.4 on Jazzy, 0.6 on Rolling and later).

use crate::ros2::RosType;

/// The liveliness tokens' admin space.
pub const LIVELINESS_PREFIX: &str = "@ros2_lv";

/// A name inside a token: `/` written `%`, so that it stays one key chunk;
/// an empty name is `%` (the root).
pub fn mangle(name: &str) -> String {
    if name.is_empty() {
        "%".into()
    } else {
        name.replace('/', "%")
    }
}

/// Whether `name` is a ROS 2 node name or name token: letters, digits and
/// `_`, not starting with a digit (ROS 2's naming rules).
pub fn is_ros_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Whether `ns` is a ROS 2 namespace: empty or `/`, or names separated by `/`.
pub fn is_ros_namespace(ns: &str) -> bool {
    let t = ns.trim_matches('/');
    t.is_empty() || t.split('/').all(is_ros_name)
}

/// A topic or namespace as ROS 2 writes it: one leading `/`, none trailing.
pub fn absolute(name: &str) -> String {
    format!("/{}", name.trim_matches('/'))
}

/// The key expression of `topic`'s data (of type `t`) in `domain`.
pub fn data_key(domain: u32, topic: &str, t: RosType) -> String {
    format!(
        "{domain}/{}/{}/{}",
        topic.trim_matches('/'),
        t.dds_name(),
        t.hash()
    )
}

/// The key expression that matches `topic`'s data of type `t` whatever the
/// sender's type hash (a ROS 2 of another release than ours).
pub fn data_key_any_hash(domain: u32, topic: &str, t: RosType) -> String {
    format!("{domain}/{}/{}/*", topic.trim_matches('/'), t.dds_name())
}

/// A publisher's or subscription's quality of service, as far as a bridge
/// sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qos {
    /// Reliable (else best effort).
    pub reliable: bool,
    /// Transient local (late joiners get the last `depth` samples), else volatile.
    pub transient_local: bool,
    /// Keep-last depth.
    pub depth: u32,
}

impl Qos {
    /// rclcpp's default: reliable, volatile, keep last 10.
    pub const DEFAULT: Qos = Qos {
        reliable: true,
        transient_local: false,
        depth: 10,
    };
    /// The sensor-data profile: best effort, volatile, keep last 5.
    pub const SENSOR_DATA: Qos = Qos {
        reliable: false,
        transient_local: false,
        depth: 5,
    };
    /// `/tf_static`'s: reliable, transient local, keep last 1.
    pub const STATIC: Qos = Qos {
        reliable: true,
        transient_local: true,
        depth: 1,
    };

    /// The profile as rosbag2 keeps it in a recording (an MCAP channel's
    /// `offered_qos_profiles`): a YAML list of one profile with the policies
    /// named as rosbag2 writes them since its metadata version 9 (Jazzy), so
    /// that `ros2 bag play` offers the topic as it was offered, `/tf_static`
    /// transient local to late joiners. Deadline, lifespan and lease are
    /// infinite (rmw's `RMW_DURATION_INFINITE` as rosbag2 writes it),
    /// liveliness automatic.
    pub fn rosbag2_yaml(&self) -> String {
        const INFINITE: &str = "\n    sec: 9223372036\n    nsec: 854775807";
        format!(
            "- history: keep_last\n  depth: {}\n  reliability: {}\n  durability: {}\n  deadline:{INFINITE}\n  lifespan:{INFINITE}\n  liveliness: automatic\n  liveliness_lease_duration:{INFINITE}\n  avoid_ros_namespace_conventions: false",
            self.depth,
            if self.reliable {
                "reliable"
            } else {
                "best_effort"
            },
            if self.transient_local {
                "transient_local"
            } else {
                "volatile"
            },
        )
    }

    /// The QoS field of a token. Reliability, durability and history are
    /// written out (rmw_zenoh before 0.2.3 took an empty durability for
    /// transient local); deadline, lifespan and liveliness are left at the
    /// defaults (infinite, automatic).
    pub fn keyexpr(&self) -> String {
        format!(
            "{}:{}:1,{}:,:,:,,",
            if self.reliable { 1 } else { 2 },
            if self.transient_local { 1 } else { 2 },
            self.depth
        )
    }
}

/// Which ROS 2 entity a token announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// A publisher (`MP`).
    Publisher,
    /// A subscription (`MS`).
    Subscription,
}

/// A ROS 2 node as rmw_zenoh announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosNode {
    /// `ROS_DOMAIN_ID`.
    pub domain: u32,
    /// The zenoh session's id (`Session::zid().to_string()`).
    pub zid: String,
    /// The node's id within the session.
    pub id: u64,
    /// Its namespace (`/` or empty for none).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl RosNode {
    fn prefix(&self, entity: u64, kind: &str) -> String {
        format!(
            "{LIVELINESS_PREFIX}/{}/{}/{}/{entity}/{kind}/%/{}/{}",
            self.domain,
            self.zid,
            self.id,
            mangle(&absolute(&self.namespace)),
            mangle(&self.name)
        )
    }

    /// The node's own token.
    pub fn token(&self) -> String {
        self.prefix(self.id, "NN")
    }

    /// The token of one of its publishers or subscriptions (`entity`: an id
    /// unique in the session) on `topic`.
    pub fn entity_token(
        &self,
        entity: u64,
        kind: EntityKind,
        topic: &str,
        t: RosType,
        qos: Qos,
    ) -> String {
        let k = match kind {
            EntityKind::Publisher => "MP",
            EntityKind::Subscription => "MS",
        };
        format!(
            "{}/{}/{}/{}/{}",
            self.prefix(entity, k),
            mangle(&self.topic(topic)),
            t.dds_name(),
            t.hash(),
            qos.keyexpr()
        )
    }

    /// `topic` with the node's namespace in front, unless it is absolute.
    pub fn topic(&self, topic: &str) -> String {
        if topic.starts_with('/') {
            absolute(topic)
        } else {
            absolute(&format!("{}/{topic}", self.namespace.trim_matches('/')))
        }
    }
}

/// A publisher's GID: the 128-bit XXH3 of its token (what rmw_zenoh derives
/// it from), its bytes little-endian.
pub fn gid(token: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(token.as_bytes()).to_le_bytes()
}

/// The attachment of a sample: sequence number, source time, GID.
pub fn attachment(seq: i64, source_time_ns: i64, gid: &[u8; 16]) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[..8].copy_from_slice(&seq.to_le_bytes());
    a[8..16].copy_from_slice(&source_time_ns.to_le_bytes());
    a[16] = 16;
    a[17..].copy_from_slice(gid);
    a
}

/// The fields of an attachment; `None` if it is not one (rmw_zenoh before
/// 0.2.4 wrote another layout).
pub fn parse_attachment(a: &[u8]) -> Option<(i64, i64, [u8; 16])> {
    let (seq, rest) = a.split_first_chunk::<8>()?;
    let (time, rest) = rest.split_first_chunk::<8>()?;
    let (&len, gid) = rest.split_first()?;
    if len != 16 {
        return None;
    }
    let gid: [u8; 16] = gid.try_into().ok()?;
    Some((i64::from_le_bytes(*seq), i64::from_le_bytes(*time), gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rosbag2's Jazzy layout of a profile in `offered_qos_profiles`
    /// (metadata version 9: the policies by name, infinite durations as rmw's
    /// `RMW_DURATION_INFINITE`), which `ros2 bag play` reads back.
    #[test]
    fn qos_is_written_as_rosbag2_writes_it() {
        let want = "- history: keep_last\n  depth: 1\n  reliability: reliable\n  durability: transient_local\n  deadline:\n    sec: 9223372036\n    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n  liveliness: automatic\n  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n  avoid_ros_namespace_conventions: false";
        assert_eq!(Qos::STATIC.rosbag2_yaml(), want);
        let sensor = Qos::SENSOR_DATA.rosbag2_yaml();
        assert!(
            sensor.contains("  depth: 5\n  reliability: best_effort\n  durability: volatile\n")
        );
    }

    #[test]
    fn keys_and_tokens_follow_rmw_zenohs_layout() {
        assert_eq!(RosType::Image.dds_name(), "sensor_msgs::msg::dds_::Image_");
        assert_eq!(
            data_key(0, "/camera/left/image_raw", RosType::Image),
            format!(
                "0/camera/left/image_raw/sensor_msgs::msg::dds_::Image_/{}",
                RosType::Image.hash()
            )
        );
        let node = RosNode {
            domain: 3,
            zid: "8b2091".into(),
            id: 0,
            namespace: String::new(),
            name: "onboard_agent".into(),
        };
        assert_eq!(node.token(), "@ros2_lv/3/8b2091/0/0/NN/%/%/onboard_agent");
        assert_eq!(
            node.entity_token(
                4,
                EntityKind::Publisher,
                "/odom",
                RosType::Odometry,
                Qos::DEFAULT
            ),
            format!(
                "@ros2_lv/3/8b2091/0/4/MP/%/%/onboard_agent/%odom/nav_msgs::msg::dds_::Odometry_/{}/1:2:1,10:,:,:,,",
                RosType::Odometry.hash()
            )
        );
        let ns = RosNode {
            namespace: "drone1".into(),
            ..node
        };
        assert_eq!(ns.topic("odom"), "/drone1/odom");
        assert_eq!(ns.topic("/tf"), "/tf");
        assert!(ns.token().ends_with("/NN/%/%drone1/onboard_agent"));
        assert_eq!(Qos::SENSOR_DATA.keyexpr(), "2:2:1,5:,:,:,,");
        assert!(is_ros_name("onboard_agent") && !is_ros_name("9lives") && !is_ros_name("a-b"));
        assert!(is_ros_namespace("") && is_ros_namespace("/drone1/") && !is_ros_namespace("/a//b"));
    }

    #[test]
    fn attachments_round_trip_and_others_are_refused() {
        let g = gid("@ros2_lv/0/1/0/1/MP/%/%/n/%t/x/y/z");
        let a = attachment(1, 1_700_000_000_000_000_000, &g);
        assert_eq!(&a[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&a[8..16], &[0, 0, 0x2a, 0x36, 0xfe, 0x9c, 0x97, 0x17]);
        assert_eq!(a[16], 0x10);
        assert_eq!(
            parse_attachment(&a),
            Some((1, 1_700_000_000_000_000_000, g))
        );
        assert_eq!(parse_attachment(&a[..32]), None);
        let mut wrong = a;
        wrong[16] = 15;
        assert_eq!(parse_attachment(&wrong), None);
    }
}
