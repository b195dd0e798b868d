//! The `ros2` node: the graph's topics as ROS 2 topics on rmw_zenoh, ROS 2's
//! zenoh middleware, so that ROS 2 nodes beside the agent see them
//! (`ros2 topic list`, `ros2 topic echo /odom`, rviz2, Nav2) and can send it
//! goals (and, when allowed, velocity commands).
//!
//! It joins the ROS 2 side with its own zenoh session (a peer of rmw_zenoh's
//! router, `ros2 run rmw_zenoh_cpp rmw_zenohd`, on port 7447 by default) and
//! speaks as rmw_zenoh does ([`bus::rmw`]): one ROS 2 node (`onboard_agent` by
//! default) announced by liveliness tokens, a token per publisher and
//! subscription, each sample a CDR message ([`bus::ros2`], the same types a
//! recording holds) on the topic's key expression with its attachment.
//!
//! | bus | ROS 2 (relative names take `--ros-namespace`) |
//! |---|---|
//! | `camera/stereo` | `camera/left/image_raw`, `camera/right/image_raw` (+ `camera_info`), sensor-data QoS |
//! | `depth/stereo`, `depth/mono` | `depth/stereo`, `depth/mono` (one-row `32FC1` images), sensor-data QoS |
//! | `cmd/setpoint` | `cmd/setpoint` (`TwistStamped`) |
//! | `state` | `odom` (`Odometry`) and `/tf` |
//! | rig | `/tf_static`, once, transient local: late joiners (tf2's static listener) get it from the publisher's cache |
//! | `events` | `/rosout` |
//! | `fc/status`, `camera/health` | `/diagnostics` (`DiagnosticArray`) |
//! | `nav/goal` ← | `goal_pose` (`PoseStamped` in `odom`), only with `--ros-accept goal` |
//! | `cmd/external` ← | `cmd_vel` (`Twist`, or `TwistStamped` in `base_link`), only with `--ros-accept cmd-vel` |
//!
//! The ROS 2 side is a trust boundary: its session has no authentication (as
//! rmw_zenoh's own), so by default nothing from it enters the graph, and
//! everything the graph publishes, images included, is visible to every peer
//! of that router: keep `rmw_zenohd` on loopback, or give the ROS 2 network
//! zenoh's TLS and access control. Velocity commands from ROS 2 go to
//! `cmd/external` only; a policy node started with `--external` flies them,
//! within the loop's safety limits (`crate::pipeline::Commanded`).

use super::{NodeOptions, stereo_rig};
use anyhow::{Context as _, Result};
use bus::rmw::{EntityKind, Qos, RosNode, attachment, data_key, data_key_any_hash, gid};
use bus::ros2::{RosType, encode};
use bus::zenoh::{self, Wait};
use bus::{Outbox, Session, Topic};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// What the ROS 2 side may send into the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accept {
    /// `goal_pose` → `nav/goal`: goals in the `odom` frame (rviz2's "2D Goal
    /// Pose" with `odom` as the fixed frame, Nav2); others are refused.
    Goal,
    /// `cmd_vel` (`geometry_msgs/msg/Twist`, or `TwistStamped` in `base_link`
    /// as Nav2 sends it from Kilted on; body frame: x forward, y left, z up,
    /// yaw rate about z) → `cmd/external`, the newest only, which a policy
    /// node started with `--external` flies within its safety limits (stops
    /// before what stereo or the flown scan sees ahead, never flies forward
    /// blind, bounds speeds, hovers when the commands stop and lands after
    /// `external.land_after`). Nothing else takes them.
    CmdVel,
}

/// Settings of the `ros2` node.
#[derive(Debug, Clone)]
pub struct Ros2Options {
    /// Endpoints of the ROS 2 side (rmw_zenoh's router: `tcp/127.0.0.1:7447`).
    pub connect: Vec<String>,
    /// Endpoints this node's ROS 2 session listens on (none by default).
    pub listen: Vec<String>,
    /// `ROS_DOMAIN_ID`.
    pub domain: u32,
    /// The ROS 2 namespace of the node and its relative topics (`/drone1`).
    pub namespace: String,
    /// The ROS 2 node's name.
    pub node_name: String,
    /// What the ROS 2 side may send.
    pub accept: Vec<Accept>,
}

impl Default for Ros2Options {
    fn default() -> Self {
        Ros2Options {
            connect: vec!["tcp/127.0.0.1:7447".into()],
            listen: Vec::new(),
            domain: 0,
            namespace: String::new(),
            node_name: "onboard_agent".into(),
            accept: Vec::new(),
        }
    }
}

/// A ROS 2 publisher's zenoh side: volatile, or transient local (with a
/// cache that late joiners query).
enum Sender {
    Plain(zenoh::pubsub::Publisher<'static>),
    Latched(zenoh_ext::AdvancedPublisher<'static>),
}

/// One ROS 2 publisher: its key, token, GID and sample count.
struct RosPublisher {
    publisher: Sender,
    _token: zenoh::liveliness::LivelinessToken,
    gid: [u8; 16],
    seq: i64,
    sent: u64,
}

/// The node's ROS 2 side: its session, node token and entities.
struct RosSide {
    session: Session,
    node: RosNode,
    _node_token: zenoh::liveliness::LivelinessToken,
    next_id: u64,
    publishers: HashMap<&'static str, RosPublisher>,
}

impl RosSide {
    fn open(o: &Ros2Options) -> Result<RosSide> {
        let session = bus::open(&bus::BusConfig {
            connect: o.connect.clone(),
            listen: o.listen.clone(),
            // As rmw_zenoh's sessions: its transient-local publishers (our
            // `/tf_static`) need samples stamped.
            timestamping: true,
            ..bus::BusConfig::default()
        })
        .context("cannot open the ROS 2 side's zenoh session")?;
        let node = RosNode {
            domain: o.domain,
            zid: session.zid().to_string(),
            id: 0,
            namespace: o.namespace.clone(),
            name: o.node_name.clone(),
        };
        let token = session
            .liveliness()
            .declare_token(node.token())
            .wait()
            .map_err(|e| anyhow::anyhow!("ROS 2 node token {}: {e}", node.token()))?;
        Ok(RosSide {
            session,
            node,
            _node_token: token,
            next_id: 1,
            publishers: HashMap::new(),
        })
    }

    fn token(
        &mut self,
        kind: EntityKind,
        topic: &str,
        t: RosType,
        qos: Qos,
    ) -> Result<(String, zenoh::liveliness::LivelinessToken)> {
        let id = self.next_id;
        self.next_id += 1;
        let key = self.node.entity_token(id, kind, topic, t, qos);
        let token = self
            .session
            .liveliness()
            .declare_token(key.clone())
            .wait()
            .map_err(|e| anyhow::anyhow!("ROS 2 token {key}: {e}"))?;
        Ok((key, token))
    }

    /// Publishes `cdr` (a `t`) on `topic`, declaring its publisher the first time.
    fn publish(&mut self, topic: &'static str, t: RosType, qos: Qos, cdr: Vec<u8>) -> Result<()> {
        if !self.publishers.contains_key(topic) {
            let (token_key, token) = self.token(EntityKind::Publisher, topic, t, qos)?;
            let key = data_key(self.node.domain, &self.node.topic(topic), t);
            let publisher = if qos.transient_local {
                // As rmw_zenoh declares a transient-local publisher: zenoh's
                // advanced publisher with a cache of `depth` samples, which
                // announces itself so that subscriptions joining later
                // (rmw_zenoh's advanced subscribers with history) query it.
                use zenoh_ext::AdvancedPublisherBuilderExt as _;
                let depth = usize::try_from(qos.depth.max(1)).unwrap_or(1);
                Sender::Latched(
                    self.session
                        .declare_publisher(key.clone())
                        .cache(zenoh_ext::CacheConfig::default().max_samples(depth))
                        .publisher_detection()
                        .wait()
                        .map_err(|e| anyhow::anyhow!("ROS 2 publisher {key}: {e}"))?,
                )
            } else {
                Sender::Plain(
                    self.session
                        .declare_publisher(key.clone())
                        .wait()
                        .map_err(|e| anyhow::anyhow!("ROS 2 publisher {key}: {e}"))?,
                )
            };
            info!(topic = %self.node.topic(topic), ty = t.name(), "ros2: publishing");
            self.publishers.insert(
                topic,
                RosPublisher {
                    publisher,
                    _token: token,
                    gid: gid(&token_key),
                    seq: 0,
                    sent: 0,
                },
            );
        }
        let Some(p) = self.publishers.get_mut(topic) else {
            return Ok(());
        };
        p.seq += 1;
        p.sent += 1;
        let now = i64::try_from(bus::now_ns()).unwrap_or(i64::MAX);
        let att = attachment(p.seq, now, &p.gid).to_vec();
        match &p.publisher {
            Sender::Plain(x) => x.put(cdr).attachment(att).wait(),
            Sender::Latched(x) => x.put(cdr).attachment(att).wait(),
        }
        .map_err(|e| anyhow::anyhow!("ROS 2 put on {topic}: {e}"))
    }
}

/// `Ok` when a ROS 2 message's `frame` is `want` (or not given): a message
/// in another frame would be flown as if it were in `want`.
fn only_frame(what: &str, frame: &str, want: &str) -> Result<(), String> {
    if frame.is_empty() || frame == want {
        Ok(())
    } else {
        Err(format!(
            "{what} in frame `{frame}` (only `{want}` is taken)"
        ))
    }
}

/// A goal from ROS 2 (`goal_pose`), in the frame the graph's goals are in
/// (not `map`, not `base_link`).
fn goal_from_ros(bytes: &[u8]) -> Result<bus::msg::Goal, String> {
    let g = bus::ros2::decode::<bus::ros2::PoseStamped>(bytes).map_err(|e| e.to_string())?;
    only_frame("a goal", &g.header.frame_id, bus::ros2::WORLD)?;
    let p = g.pose.position;
    Ok(bus::msg::Goal {
        position: [p.x, p.y, p.z],
    })
}

/// A velocity command from ROS 2 (`cmd_vel`, a `Twist` or a `TwistStamped`
/// in `base_link` or with no frame) in the bus's body frame (the same axes).
fn velocity_from_ros(t: RosType, bytes: &[u8]) -> Result<bus::msg::Setpoint, String> {
    let twist = if t == RosType::TwistStamped {
        let s = bus::ros2::decode::<bus::ros2::TwistStamped>(bytes).map_err(|e| e.to_string())?;
        only_frame("a velocity command", &s.header.frame_id, bus::ros2::BODY)?;
        s.twist
    } else {
        bus::ros2::decode::<bus::ros2::Twist>(bytes).map_err(|e| e.to_string())?
    };
    let v = [
        twist.linear.x,
        twist.linear.y,
        twist.linear.z,
        twist.angular.z,
    ];
    // The bus carries f32: a value that is not finite, or beyond it, is
    // refused rather than turned into infinity.
    if v.iter().any(|x| !x.is_finite() || x.abs() > 1e6) {
        return Err(format!(
            "a velocity command that is not finite or out of range: {v:?}"
        ));
    }
    Ok(bus::msg::Setpoint {
        forward: v[0] as f32,
        left: v[1] as f32,
        up: v[2] as f32,
        yaw_rate: v[3] as f32,
    })
}

/// Whether the bridge sends `topic` to ROS 2: every topic with a ROS 2 type
/// but goals (ROS 2 sends those) and policy proposals.
fn bridged(topic: Topic) -> bool {
    bus::ros2::has_ros_type(topic)
        && !matches!(topic, Topic::Goal | Topic::CmdPolicy | Topic::CmdExternal)
}

/// Runs the bridge until `stop`.
pub fn ros2_node(
    session: &Session,
    robot: &str,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let o = opts.ros2.clone().unwrap_or_default();
    anyhow::ensure!(
        bus::rmw::is_ros_name(&o.node_name),
        "--ros-node-name `{}` is not a ROS 2 node name (letters, digits, _; not starting with a digit)",
        o.node_name
    );
    anyhow::ensure!(
        bus::rmw::is_ros_namespace(&o.namespace),
        "--ros-namespace `{}` is not a ROS 2 namespace (names separated by /)",
        o.namespace
    );
    let mut ros = RosSide::open(&o)?;
    let rig = stereo_rig(opts)?.ros_info();
    info!(
        node = %ros.node.token(),
        connect = ?o.connect,
        "ros2: the graph on rmw_zenoh (domain {}, node {}/{})",
        o.domain,
        bus::rmw::absolute(&o.namespace).trim_end_matches('/'),
        o.node_name
    );

    // ROS 2 → bus: subscriptions, each announced with its token. Goals queue
    // (a full queue drops the newest: not worth stalling zenoh's thread for);
    // of the velocity commands only the newest counts, kept in one slot. Both
    // are stamped when they arrive.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, bus::msg::Goal)>(64);
    let velocity: std::sync::Arc<std::sync::Mutex<Option<(u64, bus::msg::Setpoint)>>> =
        Default::default();
    let mut subscriptions = Vec::new();
    let mut sub_tokens = Vec::new();
    let mut accepted = Vec::new();
    for a in &o.accept {
        match a {
            Accept::Goal => accepted.push((*a, "goal_pose", RosType::PoseStamped)),
            // `Twist`, or `TwistStamped` as Nav2 sends it from Kilted on.
            Accept::CmdVel => {
                accepted.push((*a, "cmd_vel", RosType::Twist));
                accepted.push((*a, "cmd_vel", RosType::TwistStamped));
            }
        }
    }
    for (accept, topic, t) in accepted {
        let (_, token) = ros.token(EntityKind::Subscription, topic, t, Qos::DEFAULT)?;
        sub_tokens.push(token);
        let key = data_key_any_hash(o.domain, &ros.node.topic(topic), t);
        let tx = tx.clone();
        let slot = velocity.clone();
        let sub = ros
            .session
            .declare_subscriber(key.clone())
            .callback(move |s: zenoh::sample::Sample| {
                let stamp = bus::now_ns();
                let bytes = s.payload().to_bytes();
                let taken = match accept {
                    Accept::Goal => goal_from_ros(&bytes).map(|g| {
                        let _ = tx.try_send((stamp, g));
                    }),
                    Accept::CmdVel => velocity_from_ros(t, &bytes).map(|v| {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, v));
                    }),
                };
                if let Err(e) = taken {
                    warn!("ros2: refused a sample on {}: {e}", s.key_expr());
                }
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("ROS 2 subscription {key}: {e}"))?;
        info!(topic = %ros.node.topic(topic), ty = t.name(), "ros2: accepting");
        subscriptions.push(sub);
    }
    drop(tx);
    let mut goals = Outbox::<bus::msg::Goal>::new(session, robot, bus::topics::GOAL)?;
    let mut velocities = o
        .accept
        .contains(&Accept::CmdVel)
        .then(|| Outbox::<bus::msg::Setpoint>::new(session, robot, bus::topics::CMD_EXTERNAL))
        .transpose()?;

    // Bus → ROS 2: a subscription per topic.
    // A subscription per topic, so that images never crowd out the state or
    // events.
    let taps = Topic::ALL
        .into_iter()
        .filter(|t| bridged(*t))
        .map(|t| Ok((t, bus::Tap::new(session, robot, t.suffix())?)))
        .collect::<Result<Vec<_>>>()?;
    let mut put_errors = 0u64;
    // The rig's transforms, once: transient local, as tf2's static
    // broadcaster publishes them; late joiners get them from the cache.
    let tf = rig.static_transforms(bus::now_ns());
    ros.publish("/tf_static", RosType::TfMessage, Qos::STATIC, encode(&tf))?;
    let (mut bridged, mut refused, mut received) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        while let Ok((stamp, g)) = rx.try_recv() {
            received += 1;
            goals.send(stamp, "ros2", &g)?;
        }
        let newest = velocity.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some((stamp, v)), Some(out)) = (newest, velocities.as_mut()) {
            received += 1;
            out.send(stamp, "ros2", &v)?;
        }
        let mut any = false;
        for (topic, tap) in &taps {
            while let Some((_, bytes)) = tap.recv_timeout(Duration::ZERO)? {
                any = true;
                match bridge(&mut ros, &rig, *topic, &bytes) {
                    Ok(true) => bridged += 1,
                    Ok(false) => refused += 1,
                    Err(e) => {
                        // A put that fails (the ROS 2 side's session closing)
                        // is said, at first and then at powers of two, and the
                        // node goes on.
                        put_errors += 1;
                        if put_errors.is_power_of_two() {
                            warn!("ros2: {e:#} ({put_errors} failed puts so far)");
                        }
                    }
                }
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let sent: Vec<String> = ros
        .publishers
        .iter()
        .map(|(t, p)| format!("{t} {}", p.sent))
        .collect();
    info!(
        bridged,
        refused,
        put_errors,
        received,
        "ros2: bus messages bridged, refused (not decodable); ROS 2 goals taken; samples sent: {}",
        sent.join(", ")
    );
    drop(subscriptions);
    drop(sub_tokens);
    Ok(())
}

/// One bus message of `topic` to ROS 2; `Ok(false)` if it does not decode.
fn bridge(ros: &mut RosSide, rig: &bus::ros2::RigInfo, topic: Topic, bytes: &[u8]) -> Result<bool> {
    let Ok((_, h, _)) = bus::wire::decode_header(bytes) else {
        return Ok(false);
    };
    let Some(outs) = bus::ros2::outputs(topic, h.stamp_ns, bytes, Some(rig)) else {
        return Ok(false);
    };
    for o in outs {
        ros.publish(o.topic, o.ros_type, o.qos, o.cdr)?;
    }
    Ok(true)
}
