//! Recording bus traffic to an MCAP file and playing it back.
//!
//! [MCAP](https://mcap.dev) is the robotics log format: self-describing,
//! chunked (a recorder that is killed leaves every finished chunk readable),
//! with an index for seeking. One channel per topic, named by the topic's
//! suffix (`camera/stereo`), message encoding `onboard-bus-v1`: each MCAP
//! message holds the exact bytes that crossed the bus (header and body, as
//! documented in `agent/bus/README.md`), its log time is when the recorder
//! received it and its publish time the message's own stamp. The schema of
//! each channel names the message type and carries its layout as text.

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
}

impl LogStats {
    /// All messages.
    pub fn messages(&self) -> u64 {
        self.per_topic.values().sum()
    }
}

/// Finds gaps in each publisher's sequence numbers (per topic and frame id).
#[derive(Debug, Default)]
pub struct SeqTracker {
    last: HashMap<(String, String), u64>,
    /// Messages missing per topic suffix.
    pub missing: BTreeMap<String, u64>,
    /// The gaps (the first [`MAX_LISTED_GAPS`]).
    pub gaps: Vec<Gap>,
    /// All gaps found (also those past the listed ones).
    pub gap_count: u64,
    /// Sequence numbers that went backwards (a publisher restarted).
    pub restarts: u64,
    /// Frames a lockstep replay played on without an answer (timed out).
    pub unanswered: u64,
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

/// Writes bus messages to an MCAP file.
pub struct Recorder {
    path: PathBuf,
    writer: mcap::Writer<BufWriter<File>>,
    channels: HashMap<Topic, u16>,
    stats: LogStats,
    seqs: SeqTracker,
    /// Gaps found since the last [`Recorder::take_new_gaps`].
    new_gaps: Vec<Gap>,
}

impl Recorder {
    /// Creates `path` with one channel per topic of `robot`.
    pub fn create(path: &Path, robot: &str, topics: &[Topic]) -> Result<Recorder, LogError> {
        let open = |reason: String| LogError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::create(path).map_err(|e| open(e.to_string()))?;
        let mut writer = mcap::WriteOptions::new()
            .profile("")
            .library(concat!("onboard-agent bus ", env!("CARGO_PKG_VERSION")))
            .compression(None)
            // Small chunks: a recorder that is killed loses at most the last one.
            .chunk_size(Some(1 << 20))
            .create(BufWriter::new(file))
            .map_err(|e| open(e.to_string()))?;
        let mut channels = HashMap::new();
        for &t in topics {
            let layout = format!(
                "{} (kind {}): see agent/bus/README.md, wire format schema version {}",
                t.message(),
                t.kind(),
                crate::wire::SCHEMA_VERSION
            );
            let schema = writer
                .add_schema(
                    &format!("onboard.bus.{}", t.message()),
                    "text/plain",
                    layout.as_bytes(),
                )
                .map_err(|e| open(e.to_string()))?;
            let meta = BTreeMap::from([
                ("robot".to_string(), robot.to_string()),
                ("key".to_string(), t.key(robot)),
            ]);
            let id = writer
                .add_channel(schema, t.suffix(), ENCODING, &meta)
                .map_err(|e| open(e.to_string()))?;
            channels.insert(t, id);
        }
        Ok(Recorder {
            path: path.to_path_buf(),
            writer,
            channels,
            stats: LogStats::default(),
            seqs: SeqTracker::default(),
            new_gaps: Vec::new(),
        })
    }

    /// Appends one message received at `log_time_ns`. Bytes that are not a bus
    /// message of the topic's type are counted and skipped, never fatal.
    pub fn write(&mut self, topic: Topic, bytes: &[u8], log_time_ns: u64) -> Result<(), LogError> {
        let Some(&channel_id) = self.channels.get(&topic) else {
            return Ok(());
        };
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
        self.writer
            .write_to_known_channel(
                &mcap::records::MessageHeader {
                    channel_id,
                    sequence: header.seq as u32,
                    log_time: log_time_ns,
                    publish_time: header.stamp_ns,
                },
                bytes,
            )
            .map_err(|e| LogError::Write {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
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

    /// The gaps found since the last call.
    pub fn take_new_gaps(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.new_gaps)
    }

    /// Writes the index and summary and closes the file.
    pub fn finish(mut self) -> Result<LogStats, LogError> {
        self.writer.finish().map_err(|e| LogError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let SeqTracker {
            missing,
            gaps,
            gap_count,
            restarts,
            ..
        } = self.seqs;
        Ok(LogStats {
            missing,
            gaps,
            gap_count,
            restarts,
            ..self.stats
        })
    }
}

/// Records `topics` of `robot` from `session` into `path` until `stop` is set
/// or `duration` has passed; the file is finished (indexed) either way.
pub fn record(
    session: &Session,
    robot: &str,
    topics: &[Topic],
    path: &Path,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> Result<LogStats, LogError> {
    let mut rec = Recorder::create(path, robot, topics)?;
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
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(
                "recording {}: {} messages, {:.1} MB",
                path.display(),
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
    rec.finish()
}

/// How fast to play a recording back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At the recorded rate times this factor (1.0 = as recorded).
    Rate(f64),
    /// As fast as the bus takes it.
    AsFastAsPossible,
}

/// Reads every message of a recording, in log-time order: (topic suffix, log time, bytes).
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
    for m in stream {
        let m = m.map_err(|e| LogError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        out.push((m.channel.topic.clone(), m.log_time, m.data.into_owned()));
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
    /// Messages missing from its publishers' sequence numbers (bus messages only).
    pub missing: u64,
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
        if c.encoding == ENCODING
            && let Ok((_, h, _)) = decode_header(&m.data)
        {
            msgs.push((m.channel.topic.clone(), h.frame_id, h.seq));
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
        c.missing = seqs.missing.get(&c.topic).copied().unwrap_or(0);
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
    for m in stream {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let m = m.map_err(|e| LogError::Read {
            path: path.to_path_buf(),
            reason: format!("{e} (after {} messages played)", stats.messages()),
        })?;
        let Some(topic) = Topic::from_suffix(&m.channel.topic) else {
            stats.malformed += 1;
            continue;
        };
        if !topics.is_empty() && !topics.contains(&topic) {
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
            pending = decode_header(&m.data)
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
        p.put(m.data.to_vec())
            .wait()
            .map_err(|e| crate::BusError::Declare {
                what: "put",
                key: topic.key(robot),
                reason: e.to_string(),
            })?;
        *stats
            .per_topic
            .entry(topic.suffix().to_string())
            .or_default() += 1;
        stats.bytes += m.data.len() as u64;
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
