//! Recording bus traffic to an MCAP file and playing it back.
//!
//! [MCAP](https://mcap.dev) is the robotics log format: self-describing,
//! chunked (a recorder that is killed leaves every finished chunk readable;
//! chunks are zstd-compressed), with an index for seeking. By default
//! ([`Format::Ros2`]) each topic that has a ROS 2 type is written as ROS 2
//! messages (`ros2msg` schemas, `cdr` messages; see [`crate::ros2`]):
//!
//! | bus topic | ROS 2 topic | type |
//! |---|---|---|
//! | `camera/stereo` | `/camera/{left,right}/image_raw` (+ `camera_info` with a rig) | `sensor_msgs/msg/Image` `mono8` |
//! | `depth/stereo`, `depth/mono` | `/depth/stereo`, `/depth/mono` | `sensor_msgs/msg/Image` `32FC1`, one row |
//! | `cmd/setpoint`, `cmd/policy` | `/cmd/setpoint`, `/cmd/policy` | `geometry_msgs/msg/TwistStamped` |
//! | `state` | `/odom` (+ `/tf`) | `nav_msgs/msg/Odometry` |
//! | `nav/goal` | `/goal_pose` | `geometry_msgs/msg/PoseStamped` |
//! | `events` | `/rosout` | `rcl_interfaces/msg/Log` |
//! | `fc/status`, `camera/health` | `/diagnostics` | `diagnostic_msgs/msg/DiagnosticArray` |
//!
//! and `/tf_static` holds the cameras on the body when the rig is known. The
//! other topics (arming, weights, tracks), and messages whose body the bus's
//! checks refuse, keep the bus encoding (`onboard-bus-v1`: the exact bytes that
//! crossed the bus, as documented in `agent/bus/README.md`), which
//! [`Format::Bus`] uses for every topic. A ROS 2 channel's metadata names the
//! bus topic and sending node (`bus_topic`, `bus_frame_id`) and each
//! message's MCAP `sequence` is the bus sequence number, so a replay gives
//! the bus messages back (a depth scan's compute time excepted). Log time is
//! when the recorder received a message, publish time the message's stamp.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use zenoh::Wait;

use crate::wire::decode_header;
use crate::{Session, Topic, now_ns};

/// Message encoding of every channel.
pub const ENCODING: &str = "onboard-bus-v1";

/// A recording or playback failure.
#[derive(Debug, Error)]
pub enum LogError {
    /// The file could not be created or opened.
    #[error("cannot open {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing failed (disk full, ...). What was written before stays readable.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a readable MCAP recording (messages before the damage
    /// were played back).
    #[error("{path} is not a readable MCAP recording: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A subscriber or publisher could not be declared.
    #[error(transparent)]
    Bus(#[from] crate::BusError),
}

/// Sequence numbers that never reached the recorder: `from..=to` of one
/// publisher (`frame_id`) on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Topic suffix.
    pub topic: String,
    /// The publisher's frame id.
    pub frame_id: String,
    /// First missing sequence number.
    pub from: u64,
    /// Last missing sequence number.
    pub to: u64,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): missing seq {}..={} ({} messages)",
            self.topic,
            self.frame_id,
            self.from,
            self.to,
            self.to - self.from + 1
        )
    }
}

/// The most gaps a recording lists one by one (all are counted in `missing`).
pub const MAX_LISTED_GAPS: usize = 10_000;

/// What a recording holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Messages per topic suffix.
    pub per_topic: BTreeMap<String, u64>,
    /// Bytes of message data.
    pub bytes: u64,
    /// Messages refused (not a bus message of the topic's type).
    pub malformed: u64,
    /// Messages missing per topic suffix: gaps in a publisher's sequence
    /// numbers between two messages that arrived, on the topics whose
    /// publishers number their own messages (`Topic::numbered_by_publisher`).
    /// Losses after a publisher's last message cannot be seen.
    pub missing: BTreeMap<String, u64>,
    /// The gaps, in the order they were found (the first [`MAX_LISTED_GAPS`]).
    pub gaps: Vec<Gap>,
    /// All gaps found.
    pub gap_count: u64,
    /// Sequence numbers that went backwards (a publisher restarted).
    pub restarts: u64,
    /// Frames a lockstep replay played on without an answer (timed out).
    pub unanswered: u64,
    /// Messages of a ROS 2 recording whose body the bus's checks refuse (a
    /// NaN setpoint, ...), kept in the bus encoding rather than dropped.
    pub kept_raw: u64,
}

impl LogStats {
    /// All messages.
    pub fn messages(&self) -> u64 {
        self.per_topic.values().sum()
    }
}

/// The newest sequence number per (topic, frame id).
type LastSeqs = HashMap<(String, String), u64>;

/// Finds gaps in each publisher's sequence numbers (per topic and frame id).
#[derive(Debug, Default)]
pub struct SeqTracker {
    last: LastSeqs,
    /// Messages missing per topic suffix.
    pub missing: BTreeMap<String, u64>,
    /// The gaps (the first [`MAX_LISTED_GAPS`]).
    pub gaps: Vec<Gap>,
    /// All gaps found (also those past the listed ones).
    pub gap_count: u64,
    /// Sequence numbers that went backwards (a publisher restarted).
    pub restarts: u64,
}

impl SeqTracker {
    /// Takes one message's numbers; returns the gap it closes, if any. Only
    /// topics whose publishers number their own messages
    /// ([`Topic::numbered_by_publisher`]) are checked.
    pub fn see(&mut self, topic: &str, frame_id: &str, seq: u64) -> Option<Gap> {
        if !Topic::from_suffix(topic).is_some_and(Topic::numbered_by_publisher) {
            return None;
        }
        let key = (topic.to_string(), frame_id.to_string());
        let gap = match self.last.get(&key) {
            Some(&last) if seq > last.saturating_add(1) => Some(Gap {
                topic: key.0.clone(),
                frame_id: key.1.clone(),
                from: last + 1,
                to: seq - 1,
            }),
            Some(&last) if seq <= last => {
                self.restarts += 1;
                None
            }
            _ => None,
        };
        self.last.insert(key, seq);
        if let Some(g) = &gap {
            let m = self.missing.entry(g.topic.clone()).or_default();
            *m = m.saturating_add(g.to - g.from + 1);
            self.gap_count += 1;
            if self.gaps.len() < MAX_LISTED_GAPS {
                self.gaps.push(g.clone());
            }
        }
        gap
    }
}

/// How a recording stores the bus's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// ROS 2 messages (`ros2msg` schemas, `cdr` messages) for every topic
    /// that has a ROS 2 type ([`crate::ros2::has_ros_type`]); the others in
    /// the bus encoding. Readable by Foxglove, `ros2 bag`, `rosbags`, rerun.
    #[default]
    Ros2,
    /// Every message as the exact bytes that crossed the bus
    /// (`onboard-bus-v1`), as recordings were before ROS 2 types.
    Bus,
}

/// What a recording holds besides the messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordOptions {
    /// The encoding of the messages.
    pub format: Format,
    /// The calibrated rig of the pairs: each image gets its `CameraInfo`
    /// and the file a `/tf_static` with the cameras on the body.
    pub rig: Option<crate::ros2::RigInfo>,
}

/// A channel of a ROS 2 recording: its topic, where it comes from on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RosChannel {
    topic: String,
    ros_type: crate::ros2::RosType,
    /// The bus topic and frame id it replays to (none for what is derived:
    /// camera info and transforms).
    bus: Option<(Topic, String)>,
    /// `left` or `right` for a stereo pair's halves.
    part: Option<&'static str>,
    /// The quality of service the topic is offered with (the `ros2` node's),
    /// kept as rosbag2's `offered_qos_profiles`.
    qos: crate::rmw::Qos,
}

/// Metadata keys of a ROS 2 recording's channels.
const META_BUS_TOPIC: &str = "bus_topic";
const META_BUS_FRAME: &str = "bus_frame_id";
const META_PART: &str = "bus_part";
/// rosbag2's key for a channel's QoS (the MCAP ROS 2 profile requires it).
const META_QOS: &str = "offered_qos_profiles";

/// Writes bus messages to an MCAP file.
pub struct Recorder {
    path: PathBuf,
    robot: String,
    writer: mcap::Writer<BufWriter<File>>,
    options: RecordOptions,
    topics: Vec<Topic>,
    /// Bus-encoded channels by topic.
    channels: HashMap<Topic, u16>,
    ros_channels: HashMap<RosChannel, u16>,
    schemas: HashMap<&'static str, u16>,
    /// Whether a rig whose size differs from the images' was said.
    rig_mismatch_said: bool,
    stats: LogStats,
    seqs: SeqTracker,
    /// Gaps found since the last [`Recorder::take_new_gaps`].
    new_gaps: Vec<Gap>,
}

impl Recorder {
    /// Creates `path` for `topics` of `robot`, in ROS 2 types, without a rig.
    pub fn create(path: &Path, robot: &str, topics: &[Topic]) -> Result<Recorder, LogError> {
        Self::create_with(path, robot, topics, &RecordOptions::default())
    }

    /// Creates `path` for `topics` of `robot` as `options` say. Channels are
    /// added as their first message comes (a ROS 2 channel per bus topic and
    /// sending frame id: `policy` and `supervisor` setpoints stay apart).
    pub fn create_with(
        path: &Path,
        robot: &str,
        topics: &[Topic],
        options: &RecordOptions,
    ) -> Result<Recorder, LogError> {
        let open = |reason: String| LogError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::create(path).map_err(|e| open(e.to_string()))?;
        let profile = match options.format {
            Format::Ros2 => "ros2",
            Format::Bus => "",
        };
        let writer = mcap::WriteOptions::new()
            .profile(profile)
            .library(concat!("onboard-agent bus ", env!("CARGO_PKG_VERSION")))
            // zstd at its default level: camera frames shrink several times
            // at a small cost in CPU.
            .compression(Some(mcap::Compression::Zstd))
            // Small chunks: a recorder that is killed loses at most the last one.
            .chunk_size(Some(1 << 20))
            .create(BufWriter::new(file))
            .map_err(|e| open(e.to_string()))?;
        let mut rec = Recorder {
            path: path.to_path_buf(),
            robot: robot.to_string(),
            writer,
            options: options.clone(),
            topics: topics.to_vec(),
            channels: HashMap::new(),
            ros_channels: HashMap::new(),
            schemas: HashMap::new(),
            rig_mismatch_said: false,
            stats: LogStats::default(),
            seqs: SeqTracker::default(),
            new_gaps: Vec::new(),
        };
        if let (Format::Ros2, Some(rig)) = (options.format, options.rig)
            && topics.contains(&Topic::CameraStereo)
        {
            let now = now_ns();
            let tf = rig.static_transforms(now);
            let ch = RosChannel {
                topic: "/tf_static".into(),
                ros_type: crate::ros2::RosType::TfMessage,
                bus: None,
                part: None,
                qos: crate::rmw::Qos::STATIC,
            };
            rec.put_ros(&ch, 0, now, now, &crate::ros2::encode(&tf))?;
        }
        Ok(rec)
    }

    fn write_err(&self, e: mcap::McapError) -> LogError {
        LogError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Writes one ROS 2 message on its channel (added on first use).
    fn put_ros(
        &mut self,
        ch: &RosChannel,
        seq: u64,
        stamp_ns: u64,
        log_time_ns: u64,
        cdr: &[u8],
    ) -> Result<(), LogError> {
        let id = match self.ros_channels.get(ch) {
            Some(&id) => id,
            None => {
                let name = ch.ros_type.name();
                let schema = match self.schemas.get(name) {
                    Some(&s) => s,
                    None => {
                        let s = self
                            .writer
                            .add_schema(name, "ros2msg", ch.ros_type.schema().as_bytes())
                            .map_err(|e| self.write_err(e))?;
                        self.schemas.insert(name, s);
                        s
                    }
                };
                let mut meta = BTreeMap::from([
                    ("robot".to_string(), self.robot.clone()),
                    (META_QOS.to_string(), ch.qos.rosbag2_yaml()),
                ]);
                if let Some((t, frame)) = &ch.bus {
                    meta.insert(META_BUS_TOPIC.into(), t.suffix().into());
                    meta.insert(META_BUS_FRAME.into(), frame.clone());
                }
                if let Some(p) = ch.part {
                    meta.insert(META_PART.into(), p.into());
                }
                let id = self
                    .writer
                    .add_channel(schema, &ch.topic, "cdr", &meta)
                    .map_err(|e| self.write_err(e))?;
                self.ros_channels.insert(ch.clone(), id);
                id
            }
        };
        self.put_message(id, seq, stamp_ns, log_time_ns, cdr)
    }

    /// Writes one message in the bus encoding on its topic's channel.
    fn put_bus(
        &mut self,
        topic: Topic,
        seq: u64,
        stamp_ns: u64,
        log_time_ns: u64,
        bytes: &[u8],
    ) -> Result<(), LogError> {
        let id = match self.channels.get(&topic) {
            Some(&id) => id,
            None => {
                let layout = format!(
                    "{} (kind {}): see agent/bus/README.md, wire format schema version {}",
                    topic.message(),
                    topic.kind(),
                    crate::wire::SCHEMA_VERSION
                );
                let schema = self
                    .writer
                    .add_schema(
                        &format!("onboard.bus.{}", topic.message()),
                        "text/plain",
                        layout.as_bytes(),
                    )
                    .map_err(|e| self.write_err(e))?;
                let meta = BTreeMap::from([
                    ("robot".to_string(), self.robot.clone()),
                    ("key".to_string(), topic.key(&self.robot)),
                ]);
                let id = self
                    .writer
                    .add_channel(schema, topic.suffix(), ENCODING, &meta)
                    .map_err(|e| self.write_err(e))?;
                self.channels.insert(topic, id);
                id
            }
        };
        self.put_message(id, seq, stamp_ns, log_time_ns, bytes)
    }

    /// Writes one message on channel `id` (its MCAP sequence the low 32 bits
    /// of the bus sequence number, its publish time the stamp).
    fn put_message(
        &mut self,
        id: u16,
        seq: u64,
        stamp_ns: u64,
        log_time_ns: u64,
        data: &[u8],
    ) -> Result<(), LogError> {
        self.writer
            .write_to_known_channel(
                &mcap::records::MessageHeader {
                    channel_id: id,
                    sequence: seq as u32,
                    log_time: log_time_ns,
                    publish_time: stamp_ns,
                },
                data,
            )
            .map_err(|e| self.write_err(e))
    }

    /// Writes a bus message as ROS 2 messages; `Ok(false)` if its body does
    /// not decode.
    fn put_as_ros(
        &mut self,
        topic: Topic,
        h: &crate::wire::Header,
        bytes: &[u8],
        log_time_ns: u64,
    ) -> Result<bool, LogError> {
        let rig = self.options.rig;
        let Some(outs) = crate::ros2::outputs(topic, h.stamp_ns, bytes, rig.as_ref()) else {
            return Ok(false);
        };
        if topic == Topic::CameraStereo
            && rig.is_some()
            && !self.rig_mismatch_said
            && !outs
                .iter()
                .any(|o| o.ros_type == crate::ros2::RosType::CameraInfo)
        {
            self.rig_mismatch_said = true;
            tracing::warn!("no camera info recorded: the rig's size is not the images'");
        }
        for o in outs {
            // Recorded names are absolute (a recording has no namespace).
            let ch = RosChannel {
                topic: crate::rmw::absolute(o.topic),
                ros_type: o.ros_type,
                bus: (!o.derived).then(|| (topic, h.frame_id.clone())),
                part: o.part,
                qos: o.qos,
            };
            self.put_ros(&ch, h.seq, h.stamp_ns, log_time_ns, &o.cdr)?;
        }
        Ok(true)
    }

    /// Appends one message received at `log_time_ns`. Bytes that are not a bus
    /// message of the topic's type are counted and skipped, never fatal.
    pub fn write(&mut self, topic: Topic, bytes: &[u8], log_time_ns: u64) -> Result<(), LogError> {
        if !self.topics.contains(&topic) {
            return Ok(());
        }
        let header = match decode_header(bytes) {
            Ok((kind, h, _)) if kind == topic.kind() => h,
            Ok((kind, _, _)) => {
                tracing::warn!("not recorded: kind {kind} on {}", topic.suffix());
                self.stats.malformed += 1;
                return Ok(());
            }
            Err(e) => {
                tracing::warn!("not recorded: malformed message on {}: {e}", topic.suffix());
                self.stats.malformed += 1;
                return Ok(());
            }
        };
        let as_ros = self.options.format == Format::Ros2 && crate::ros2::has_ros_type(topic);
        if !as_ros || !self.put_as_ros(topic, &header, bytes, log_time_ns)? {
            if as_ros {
                // A message the bus's own checks refuse (a NaN setpoint, a
                // state that is no rotation): kept as it crossed the bus, the
                // evidence of a node that misbehaved (ROS 2 tools skip the
                // channel, or refuse the file).
                tracing::warn!(
                    "{} on {} is not a valid {}: recorded in the bus encoding",
                    topic.message(),
                    topic.suffix(),
                    topic.message()
                );
                self.stats.kept_raw += 1;
            }
            self.put_bus(topic, header.seq, header.stamp_ns, log_time_ns, bytes)?;
        }
        *self
            .stats
            .per_topic
            .entry(topic.suffix().to_string())
            .or_default() += 1;
        self.stats.bytes += bytes.len() as u64;
        if let Some(gap) = self.seqs.see(topic.suffix(), &header.frame_id, header.seq) {
            self.new_gaps.push(gap);
        }
        Ok(())
    }

    /// Messages and bytes (as they crossed the bus) written so far.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// The gaps found since the last call.
    pub fn take_new_gaps(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.new_gaps)
    }

    /// Writes the index and summary and closes the file.
    pub fn finish(self) -> Result<LogStats, LogError> {
        Ok(self.finish_keeping_numbers()?.0)
    }

    /// Finishes this file and goes on in `path` with the same topics and
    /// options; gaps in sequence numbers are still found across the two.
    /// Returns what this file holds.
    pub fn split_into(self, path: &Path) -> Result<(LogStats, Recorder), LogError> {
        let (robot, topics, options) = (
            self.robot.clone(),
            self.topics.clone(),
            self.options.clone(),
        );
        let (stats, last) = self.finish_keeping_numbers()?;
        let mut next = Recorder::create_with(path, &robot, &topics, &options)?;
        next.seqs.last = last;
        Ok((stats, next))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn finish_keeping_numbers(mut self) -> Result<(LogStats, LastSeqs), LogError> {
        self.writer.finish().map_err(|e| LogError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let SeqTracker {
            last,
            missing,
            gaps,
            gap_count,
            restarts,
        } = self.seqs;
        Ok((
            LogStats {
                missing,
                gaps,
                gap_count,
                restarts,
                ..self.stats
            },
            last,
        ))
    }
}

impl LogStats {
    /// Adds another file's figures (the parts of a split recording).
    pub fn add(&mut self, o: LogStats) {
        for (k, v) in o.per_topic {
            *self.per_topic.entry(k).or_default() += v;
        }
        for (k, v) in o.missing {
            let m = self.missing.entry(k).or_default();
            *m = m.saturating_add(v);
        }
        self.bytes += o.bytes;
        self.malformed += o.malformed;
        let room = MAX_LISTED_GAPS.saturating_sub(self.gaps.len());
        self.gaps.extend(o.gaps.into_iter().take(room));
        self.gap_count += o.gap_count;
        self.restarts += o.restarts;
        self.unanswered += o.unanswered;
        self.kept_raw += o.kept_raw;
    }
}

/// When a recording goes on in a new file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Split {
    /// Once the file holds this many bytes (checked about once a second, so
    /// a file may pass it by a second's worth).
    pub max_bytes: Option<u64>,
    /// Once the file spans this long.
    pub max_duration: Option<Duration>,
}

/// A recording's outcome: its figures over every file, and the files.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Messages, gaps, ... summed over the files.
    pub stats: LogStats,
    /// The files written, in order.
    pub files: Vec<PathBuf>,
}

/// Records `topics` of `robot` from `session` until `stop` is set or
/// `duration` has passed, into `file(0)` and, when `split` says so, on into
/// `file(1)`, `file(2)`, ...; each file is finished (indexed) either way.
#[allow(clippy::too_many_arguments)]
pub fn record(
    session: &Session,
    robot: &str,
    topics: &[Topic],
    file: &mut dyn FnMut(u32) -> PathBuf,
    options: &RecordOptions,
    split: Split,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> Result<Recording, LogError> {
    let mut done = Recording::default();
    let mut part = 0u32;
    let mut rec = Recorder::create_with(&file(part), robot, topics, options)?;
    let mut part_started = Instant::now();
    let mut last_size_check = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<(Topic, Vec<u8>, u64)>();
    let mut subs = Vec::new();
    for &t in topics {
        let tx = tx.clone();
        let key = t.key(robot);
        let sub = session
            .declare_subscriber(key.clone())
            .callback(move |s: zenoh::sample::Sample| {
                // Unbounded on purpose: a recorder keeps everything it is sent.
                let _ = tx.send((t, s.payload().to_bytes().into_owned(), now_ns()));
            })
            .wait()
            .map_err(|e| crate::BusError::Declare {
                what: "subscriber",
                key,
                reason: e.to_string(),
            })?;
        subs.push(sub);
    }
    drop(tx);
    // Gaps are said on `events` as they are found, at most one event a second
    // (the rest summed into the next one).
    let mut events =
        crate::Outbox::<crate::msg::Event>::new(session, robot, crate::topics::EVENTS)?;
    let mut unsaid: Vec<Gap> = Vec::new();
    let mut last_said: Option<Instant> = None;
    let started = Instant::now();
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((t, bytes, at)) => rec.write(t, &bytes, at)?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        unsaid.extend(rec.take_new_gaps());
        if !unsaid.is_empty() && last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_said = Some(Instant::now());
            let n = unsaid
                .iter()
                .fold(0u64, |n, g| n.saturating_add(g.to - g.from + 1));
            let text = match unsaid.as_slice() {
                [one] => format!("record: {one}"),
                [first, ..] => format!(
                    "record: {n} messages missing in {} gaps (first: {first})",
                    unsaid.len()
                ),
                [] => String::new(),
            };
            tracing::warn!("{text}");
            // Best effort: the recording goes on if the event cannot be sent.
            let _ = events.send(now_ns(), "record", &crate::msg::Event { text });
            unsaid.clear();
        }
        let full = split
            .max_duration
            .is_some_and(|d| part_started.elapsed() >= d)
            || (split.max_bytes.is_some()
                && last_size_check.elapsed() >= Duration::from_secs(1)
                && {
                    last_size_check = Instant::now();
                    let size = std::fs::metadata(rec.path()).map_or(0, |m| m.len());
                    split.max_bytes.is_some_and(|b| size >= b)
                });
        if full {
            part += 1;
            let next = file(part);
            let finished = rec.path.clone();
            let (stats, r) = rec.split_into(&next)?;
            tracing::info!("recording goes on in {}", next.display());
            done.stats.add(stats);
            done.files.push(finished);
            rec = r;
            part_started = Instant::now();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(
                "recording {}: {} messages, {:.1} MB",
                rec.path.display(),
                rec.stats.messages(),
                rec.stats.bytes as f64 / 1e6
            );
        }
    }
    drop(subs);
    // What was already received is written too.
    for (t, bytes, at) in rx.try_iter() {
        rec.write(t, &bytes, at)?;
    }
    let last = rec.path.clone();
    done.stats.add(rec.finish()?);
    done.files.push(last);
    Ok(done)
}

/// How fast to play a recording back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At the recorded rate times this factor (1.0 = as recorded).
    Rate(f64),
    /// As fast as the bus takes it.
    AsFastAsPossible,
}

/// The bus's messages in a recording of either encoding: bus-encoded
/// channels as they are; ROS 2 channels that came from the bus (their
/// metadata names the bus topic and frame id) decoded back into bus messages,
/// a stereo pair's two images joined; derived channels (camera info,
/// transforms) and foreign ones skipped.
#[derive(Default)]
struct BusView {
    joins: HashMap<String, crate::ros2::PairJoin>,
}

/// One message of [`BusView`]: the channel's bus topic suffix, and the bus
/// bytes or why they could not be had.
type Viewed = (String, Result<Vec<u8>, String>);

impl BusView {
    fn take(&mut self, m: &mcap::Message<'_>) -> Option<Viewed> {
        let ch = &m.channel;
        if ch.message_encoding == ENCODING {
            return Some((ch.topic.clone(), Ok(m.data.to_vec())));
        }
        if ch.message_encoding != "cdr" {
            return None;
        }
        let suffix = ch.metadata.get(META_BUS_TOPIC)?;
        let Some(topic) = Topic::from_suffix(suffix) else {
            return Some((suffix.clone(), Err(format!("unknown bus topic `{suffix}`"))));
        };
        let frame = ch.metadata.get(META_BUS_FRAME).cloned().unwrap_or_default();
        let header = crate::wire::Header {
            seq: u64::from(m.sequence),
            stamp_ns: m.publish_time,
            frame_id: frame.clone(),
        };
        let bytes = if topic == Topic::CameraStereo {
            let right = ch.metadata.get(META_PART).map(String::as_str) == Some("right");
            match self
                .joins
                .entry(frame)
                .or_default()
                .push(right, &header, &m.data)
            {
                Ok(Some(b)) => Ok(b),
                Ok(None) => return None,
                Err(e) => Err(e.to_string()),
            }
        } else {
            crate::ros2::from_ros(topic, &header, &m.data).map_err(|e| e.to_string())
        };
        Some((suffix.clone(), bytes))
    }
}

/// Reads every bus message of a recording (either encoding), in log-time
/// order: (topic suffix, log time, bytes as they crossed the bus). A ROS 2
/// message that does not decode is skipped with a warning.
pub fn read(path: &Path) -> Result<Vec<(String, u64, Vec<u8>)>, LogError> {
    let buf = std::fs::read(path).map_err(|e| LogError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    let stream = mcap::MessageStream::new(&buf).map_err(|e| LogError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut view = BusView::default();
    for m in stream {
        let m = m.map_err(|e| LogError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match view.take(&m) {
            Some((topic, Ok(bytes))) => out.push((topic, m.log_time, bytes)),
            Some((topic, Err(e))) => {
                tracing::warn!("{}: skipped a message on {topic}: {e}", path.display())
            }
            None => {}
        }
    }
    out.sort_by_key(|m| m.1);
    Ok(out)
}

/// One channel of a recording, as [`info`] sums it up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelInfo {
    /// Topic (the channel's name).
    pub topic: String,
    /// Schema name (the message type).
    pub schema: String,
    /// Message encoding.
    pub encoding: String,
    /// Messages.
    pub messages: u64,
    /// Log time of the first message (ns).
    pub first_ns: u64,
    /// Log time of the last message (ns).
    pub last_ns: u64,
    /// Messages missing from its publishers' sequence numbers (channels that
    /// came from the bus).
    pub missing: u64,
    /// The bus topic whose messages it counts (sequence numbers, gaps).
    pub bus_topic: Option<String>,
    /// The sender (bus frame id) a ROS 2 channel holds; `None` for a
    /// bus-encoded channel, which holds every sender of its topic.
    pub bus_frame: Option<String>,
    /// Where it comes from: the bus topic (`camera/stereo (right)` for a
    /// pair's right half), or `derived` (camera info, transforms).
    pub from: String,
}

impl ChannelInfo {
    /// Messages per second between the first and the last.
    pub fn rate_hz(&self) -> f64 {
        let span = self.last_ns.saturating_sub(self.first_ns) as f64 * 1e-9;
        if self.messages > 1 && span > 0.0 {
            (self.messages - 1) as f64 / span
        } else {
            0.0
        }
    }
}

/// What a recording holds, channel by channel, with the gaps in its
/// publishers' sequence numbers in arrival order (for `agent info`).
pub fn info(path: &Path) -> Result<(Vec<ChannelInfo>, SeqTracker), LogError> {
    let buf = std::fs::read(path).map_err(|e| LogError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let read_err = |e: mcap::McapError| LogError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut channels: BTreeMap<u16, ChannelInfo> = BTreeMap::new();
    let mut msgs = Vec::new();
    for m in mcap::MessageStream::new(&buf).map_err(read_err)? {
        let m = m.map_err(read_err)?;
        let c = channels.entry(m.channel.id).or_insert_with(|| ChannelInfo {
            topic: m.channel.topic.clone(),
            schema: m
                .channel
                .schema
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            encoding: m.channel.message_encoding.clone(),
            first_ns: m.log_time,
            ..ChannelInfo::default()
        });
        c.messages += 1;
        c.first_ns = c.first_ns.min(m.log_time);
        c.last_ns = c.last_ns.max(m.log_time);
        let meta = &m.channel.metadata;
        if c.from.is_empty() {
            c.from = match (meta.get(META_BUS_TOPIC), meta.get(META_PART)) {
                _ if c.encoding == ENCODING => c.topic.clone(),
                (Some(t), Some(p)) if p == "right" => format!("{t} (right)"),
                (Some(t), _) => t.clone(),
                (None, _) => "derived".into(),
            };
        }
        if c.encoding == ENCODING {
            c.bus_topic = Some(m.channel.topic.clone());
            if let Ok((_, h, _)) = decode_header(&m.data) {
                msgs.push((m.channel.topic.clone(), h.frame_id, h.seq));
            }
        } else if let Some(t) = meta.get(META_BUS_TOPIC)
            // A stereo pair's frames are counted once, on its left image.
            && meta.get(META_PART).map(String::as_str) != Some("right")
        {
            c.bus_topic = Some(t.clone());
            let frame = meta.get(META_BUS_FRAME).cloned().unwrap_or_default();
            c.bus_frame = Some(frame.clone());
            msgs.push((t.clone(), frame, u64::from(m.sequence)));
        }
    }
    // In file order: the order the recorder received them (log times are the
    // wall clock, which may step).
    let mut seqs = SeqTracker::default();
    for (topic, frame, seq) in &msgs {
        seqs.see(topic, frame, *seq);
    }
    let mut out: Vec<ChannelInfo> = channels.into_values().collect();
    for c in &mut out {
        c.missing = match (&c.bus_topic, &c.bus_frame) {
            // One sender's channel: its own gaps (of the listed ones).
            (Some(t), Some(f)) => seqs
                .gaps
                .iter()
                .filter(|g| &g.topic == t && &g.frame_id == f)
                .fold(0u64, |n, g| n.saturating_add(g.to - g.from + 1)),
            (Some(t), None) => seqs.missing.get(t).copied().unwrap_or(0),
            (None, _) => 0,
        };
    }
    Ok((out, seqs))
}

/// Frame-by-frame playback: each message of `frames` (after the first) is
/// held back until the graph has answered the previous one on the tapped
/// topic (a message with the frame's sequence number and stamp, as the loop's
/// nodes publish), or until `timeout`. What the graph computes then does not
/// depend on how fast the host runs: a regression replay on a loaded machine
/// gives the numbers of an idle one.
pub struct Lockstep {
    /// The topic that paces (e.g. `camera/stereo`).
    pub frames: Topic,
    /// The topic the graph answers on (e.g. `cmd/setpoint`): not played from
    /// the recording, whose own answers would otherwise release the frames
    /// and reach the graph.
    pub answer: Topic,
    /// Where the answers arrive (e.g. a [`crate::Tap`] on `cmd/setpoint`),
    /// declared before playing so that no answer is missed.
    pub answers: crate::Tap,
    /// How long to wait for one answer before playing on (counted in
    /// [`LogStats::unanswered`]).
    pub timeout: Duration,
}

impl Lockstep {
    /// Waits for the answer to the frame with `header`'s sequence number and
    /// stamp; `Ok(false)` after the timeout or when stopped.
    fn wait_for(&self, seq: u64, stamp_ns: u64, stop: &AtomicBool) -> Result<bool, LogError> {
        let until = Instant::now() + self.timeout;
        while !stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // Short steps, so that Ctrl-C/SIGTERM stops the replay at once.
            if let Some((_, bytes)) = self
                .answers
                .recv_timeout(left.min(Duration::from_millis(50)))?
                && let Ok((_, h, _)) = decode_header(&bytes)
                && h.seq == seq
                && h.stamp_ns == stamp_ns
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Publishes a recording's messages (of `topics`; all if empty) on the same
/// topics under `robot`, paced by their log times, and with `lockstep` frame
/// by frame as the graph answers. Returns what was played; a damaged file
/// plays up to the damage and then reports it.
pub fn replay(
    session: &Session,
    robot: &str,
    path: &Path,
    topics: &[Topic],
    pace: Pace,
    lockstep: Option<&Lockstep>,
    stop: &AtomicBool,
) -> Result<LogStats, LogError> {
    let buf = std::fs::read(path).map_err(|e| LogError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let stream = mcap::MessageStream::new(&buf).map_err(|e| LogError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut publishers = HashMap::new();
    let mut stats = LogStats::default();
    let started = Instant::now();
    let mut first: Option<u64> = None;
    // The frame played last, whose answer the next frame waits for.
    let mut pending: Option<(u64, u64)> = None;
    let mut view = BusView::default();
    for m in stream {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let m = m.map_err(|e| LogError::Read {
            path: path.to_path_buf(),
            reason: format!("{e} (after {} messages played)", stats.messages()),
        })?;
        let Some((suffix, bytes)) = view.take(&m) else {
            continue;
        };
        let (Some(topic), Ok(bytes)) = (Topic::from_suffix(&suffix), bytes) else {
            stats.malformed += 1;
            continue;
        };
        // An operator's arm, disarm or stop request, and a velocity command from
        // outside, is played only when named: an old one replayed into a live
        // graph could arm, drop or fly a vehicle.
        if (!topics.is_empty() && !topics.contains(&topic))
            || (topics.is_empty() && matches!(topic, Topic::CmdArm | Topic::CmdExternal))
            || lockstep.is_some_and(|l| l.answer == topic)
        {
            continue;
        }
        if let Pace::Rate(r) = pace {
            let t0 = *first.get_or_insert(m.log_time);
            let due = Duration::from_nanos(((m.log_time.saturating_sub(t0)) as f64 / r) as u64);
            // A long gap in the recording is waited out in short steps, so
            // that Ctrl-C/SIGTERM stops the replay at once.
            while let Some(wait) = due.checked_sub(started.elapsed()) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if let Some(l) = lockstep.filter(|l| l.frames == topic) {
            if let Some((seq, stamp)) = pending.take()
                && !l.wait_for(seq, stamp, stop)?
            {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                stats.unanswered += 1;
            }
            pending = decode_header(&bytes)
                .ok()
                .map(|(_, h, _)| (h.seq, h.stamp_ns));
        }
        let p = match publishers.entry(topic) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let key = topic.key(robot);
                let p = session
                    .declare_publisher(key.clone())
                    .priority(topic.priority())
                    .wait()
                    .map_err(|err| crate::BusError::Declare {
                        what: "publisher",
                        key,
                        reason: err.to_string(),
                    })?;
                e.insert(p)
            }
        };
        let n = bytes.len();
        p.put(bytes).wait().map_err(|e| crate::BusError::Declare {
            what: "put",
            key: topic.key(robot),
            reason: e.to_string(),
        })?;
        *stats
            .per_topic
            .entry(topic.suffix().to_string())
            .or_default() += 1;
        stats.bytes += n as u64;
    }
    // The last frame's answer too: the replay ends when the graph has answered.
    if let (Some(l), Some((seq, stamp))) = (lockstep, pending)
        && !stop.load(Ordering::Relaxed)
        && !l.wait_for(seq, stamp, stop)?
    {
        stats.unanswered += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{DepthScan, Event, FcStatus, Goal, Setpoint, State, StereoPair};
    use crate::wire::{Header, encode};

    /// One message of every kind the loop records, as bus bytes.
    fn flight() -> Vec<(Topic, Vec<u8>)> {
        let h = |seq: u64, frame: &str| Header {
            seq,
            stamp_ns: 1_000_000_000 + seq * 33_333_333,
            frame_id: frame.into(),
        };
        let mut out = Vec::new();
        for seq in 0..4 {
            out.push((
                Topic::State,
                encode(
                    &h(seq, "twin"),
                    &State {
                        position: [seq as f64 * 0.1, -0.2, 1.5],
                        attitude: [1.0, 0.0, 0.0, 0.0],
                        velocity: [1.0, 0.0, -0.1],
                    },
                ),
            ));
            out.push((
                Topic::CameraStereo,
                encode(
                    &h(seq, "camera"),
                    &StereoPair {
                        width: 4,
                        height: 2,
                        left: vec![seq as u8; 8],
                        right: vec![7; 8],
                    },
                ),
            ));
            out.push((
                Topic::DepthStereo,
                encode(
                    &h(seq, "stereo"),
                    &DepthScan {
                        compute_ns: 0,
                        depth: vec![2.0, f32::NAN],
                    },
                ),
            ));
            for frame in ["policy", "supervisor"] {
                out.push((
                    Topic::CmdSetpoint,
                    encode(
                        &h(seq, frame),
                        &Setpoint {
                            forward: 0.5,
                            left: 0.0,
                            up: 0.1,
                            yaw_rate: seq as f32,
                        },
                    ),
                ));
            }
            out.push((
                Topic::FcStatus,
                encode(
                    &h(seq, "fc"),
                    &FcStatus {
                        state: 1,
                        faults: 0,
                        attitude: [0.0; 3],
                        velocity: [0.0; 3],
                        altitude: 1.0,
                        battery_mv: 12_000,
                        setpoint_age_ms: 20,
                        link_errors: 0,
                        reconnects: 0,
                    },
                ),
            ));
        }
        out.push((
            Topic::Goal,
            encode(
                &h(0, "ground"),
                &Goal {
                    position: [5.0, 1.0, 1.5],
                },
            ),
        ));
        out.push((
            Topic::Events,
            encode(
                &h(9, "policy"),
                &Event {
                    text: "switch to mono".into(),
                },
            ),
        ));
        out
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bus-log-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn both_formats_read_back_as_the_bus_messages() {
        let d = dir("formats");
        let msgs = flight();
        let rig = crate::ros2::RigInfo {
            width: 4,
            height: 2,
            fx: 3.0,
            fy: 3.0,
            cx: 1.5,
            cy: 0.5,
            baseline_m: 0.1,
        };
        for (format, rig) in [
            (Format::Ros2, Some(rig)),
            (Format::Ros2, None),
            (Format::Bus, None),
        ] {
            let path = d.join(format!("{format:?}-{}.mcap", rig.is_some()));
            let mut rec =
                Recorder::create_with(&path, "r", &Topic::ALL, &RecordOptions { format, rig })
                    .unwrap();
            for (i, (t, b)) in msgs.iter().enumerate() {
                rec.write(*t, b, 10 + i as u64).unwrap();
            }
            let stats = rec.finish().unwrap();
            assert_eq!(stats.messages(), msgs.len() as u64);
            let back = read(&path).unwrap();
            let want: Vec<(String, Vec<u8>)> = msgs
                .iter()
                .map(|(t, b)| (t.suffix().to_string(), b.clone()))
                .collect();
            let got: Vec<(String, Vec<u8>)> = back.into_iter().map(|(t, _, b)| (t, b)).collect();
            assert_eq!(got, want, "{format:?}, rig {}", rig.is_some());
            let (channels, _) = info(&path).unwrap();
            let ros = channels.iter().filter(|c| c.encoding == "cdr").count();
            match format {
                // Left/right images, camera info (with a rig), depth,
                // two setpoint senders, odom, tf, diagnostics, goal, rosout,
                // tf_static.
                Format::Ros2 => {
                    assert_eq!(ros, if rig.is_some() { 13 } else { 10 }, "{channels:?}")
                }
                Format::Bus => assert_eq!(ros, 0),
            }
        }
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_message_the_bus_refuses_is_kept_not_dropped() {
        let d = dir("raw");
        let path = d.join("nan.mcap");
        let h = |seq| Header {
            seq,
            stamp_ns: 10 + seq,
            frame_id: "policy".into(),
        };
        let good = encode(&h(0), &Setpoint::HOVER);
        // A NaN setpoint: written as it crossed the bus, refused by decode.
        let bad = encode(
            &h(1),
            &Setpoint {
                forward: f32::NAN,
                ..Setpoint::HOVER
            },
        );
        let mut rec = Recorder::create(&path, "r", &[Topic::CmdSetpoint]).unwrap();
        for (k, b) in [&good, &bad].iter().enumerate() {
            rec.write(Topic::CmdSetpoint, b, k as u64).unwrap();
        }
        let stats = rec.finish().unwrap();
        assert_eq!(
            (stats.messages(), stats.kept_raw, stats.malformed),
            (2, 1, 0)
        );
        assert_eq!(stats.gap_count, 0);
        let back: Vec<Vec<u8>> = read(&path).unwrap().into_iter().map(|m| m.2).collect();
        assert_eq!(back, vec![good, bad]);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_split_recording_keeps_every_message_and_finds_gaps_across_files() {
        let d = dir("split");
        let state = |seq: u64| {
            encode(
                &Header {
                    seq,
                    stamp_ns: seq,
                    frame_id: "fc".into(),
                },
                &State {
                    position: [0.0; 3],
                    attitude: [1.0, 0.0, 0.0, 0.0],
                    velocity: [0.0; 3],
                },
            )
        };
        let mut rec = Recorder::create(&d.join("a.mcap"), "r", &[Topic::State]).unwrap();
        for seq in 0..5 {
            rec.write(Topic::State, &state(seq), seq).unwrap();
        }
        let (first, mut rec) = rec.split_into(&d.join("b.mcap")).unwrap();
        // 5 and 6 lost at the split.
        for seq in 7..10 {
            rec.write(Topic::State, &state(seq), seq).unwrap();
        }
        let second = rec.finish().unwrap();
        assert_eq!((first.messages(), second.messages()), (5, 3));
        assert_eq!(first.gap_count, 0);
        assert_eq!(second.missing.get("state"), Some(&2), "{second:?}");
        assert_eq!(read(&d.join("a.mcap")).unwrap().len(), 5);
        assert_eq!(read(&d.join("b.mcap")).unwrap().len(), 3);
        let mut all = first;
        all.add(second);
        assert_eq!((all.messages(), all.gap_count), (8, 1));
        std::fs::remove_dir_all(&d).ok();
    }
}
