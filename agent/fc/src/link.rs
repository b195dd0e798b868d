//! The serial driver for the fclink protocol: one I/O thread owns the port,
//! writes queued commands and heartbeats, decodes what arrives (resyncing at
//! the next delimiter after corrupt bytes), and re-opens the device when it
//! vanishes and comes back. Counters say what was lost and why.

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TrySendError, bounded, unbounded};
use fclink::frame::{self, Decoder, MAX_WIRE};
use fclink::{AckStatus, FromFc, Telemetry, ToFc};
use serialport::{ClearBuffer, SerialPort, TTYPort};

/// How to reach the flight controller.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Serial device (e.g. `/dev/ttyTHS1` on a Jetson, a pty in tests).
    pub device: PathBuf,
    /// Baud rate; both ends must agree (a pty ignores it).
    pub baud: u32,
    /// How often to try re-opening a vanished device.
    pub reconnect_interval: Duration,
    /// How often to send a heartbeat.
    pub heartbeat_interval: Duration,
}

impl LinkConfig {
    /// Defaults (115200 baud, re-open every 250 ms, heartbeat 2 Hz) for `device`.
    pub fn new(device: impl Into<PathBuf>) -> Self {
        Self {
            device: device.into(),
            baud: 115_200,
            reconnect_interval: Duration::from_millis(250),
            heartbeat_interval: Duration::from_millis(500),
        }
    }
}

/// What can go wrong on the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The device could not be opened.
    #[error("cannot open flight-controller link {device}: {reason}")]
    Open {
        /// Device path.
        device: String,
        /// Why.
        reason: String,
    },
    /// A command was not acknowledged in time.
    #[error(
        "flight controller on {device} did not acknowledge {what} (seq {seq}) within {timeout:?}"
    )]
    NoAck {
        /// Device path.
        device: String,
        /// The command.
        what: String,
        /// Its sequence number.
        seq: u16,
        /// How long we waited.
        timeout: Duration,
    },
}

/// Counters of the link since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Whether the device is open now.
    pub connected: bool,
    /// Frames received and decoded.
    pub frames_rx: u64,
    /// Frames refused for their CRC.
    pub crc_errors: u64,
    /// Frames refused for anything else (stuffing, length, version, body).
    pub other_errors: u64,
    /// Bytes thrown away while resyncing.
    pub dropped_bytes: u64,
    /// Frames written.
    pub frames_tx: u64,
    /// Frames not written: the device was gone or its buffer full.
    pub tx_dropped: u64,
    /// Times the device vanished.
    pub disconnects: u64,
    /// Times it was opened again.
    pub reconnects: u64,
    /// Received events the consumer was too slow to take.
    pub events_dropped: u64,
}

/// What the link delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A telemetry report.
    Telemetry {
        /// Sender's frame sequence number.
        seq: u16,
        /// The report.
        telemetry: Telemetry,
        /// When it was decoded.
        at: Instant,
    },
    /// An acknowledgement.
    Ack {
        /// Sequence number of the command it answers.
        seq: u16,
        /// What became of the command.
        status: AckStatus,
        /// When it was decoded.
        at: Instant,
    },
    /// The device is open again.
    Connected,
    /// The device vanished.
    Disconnected {
        /// The error that showed it.
        reason: String,
    },
}

const ACK_SLOTS: usize = 256;

struct Shared {
    stats: Mutex<LinkStats>,
    acks: Mutex<Vec<Option<(u16, AckStatus, Instant)>>>,
    ack_arrived: Condvar,
    latest: Mutex<Option<(Telemetry, Instant)>>,
    stop: AtomicBool,
    next_seq: AtomicU16,
}

/// Locks a mutex, recovering the data if a thread panicked holding it (the
/// counters and tables stay meaningful).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open link to the flight controller.
pub struct Link {
    device: String,
    shared: Arc<Shared>,
    out: Sender<(u16, ToFc)>,
    events: Receiver<Event>,
    threads: Vec<JoinHandle<()>>,
}

fn open_port(cfg: &LinkConfig) -> Result<TTYPort, String> {
    let port = serialport::new(cfg.device.to_string_lossy(), cfg.baud)
        .timeout(Duration::from_millis(5))
        .open_native()
        .map_err(|e| e.to_string())?;
    // Whatever the device buffered before we came is stale.
    let _ = port.clear(ClearBuffer::All);
    Ok(port)
}

impl Link {
    /// Opens the device (an error names it if it cannot) and starts the I/O thread.
    pub fn open(cfg: LinkConfig) -> Result<Link, LinkError> {
        let device = cfg.device.display().to_string();
        let port = open_port(&cfg).map_err(|reason| LinkError::Open {
            device: device.clone(),
            reason,
        })?;
        let shared = Arc::new(Shared {
            stats: Mutex::new(LinkStats {
                connected: true,
                ..LinkStats::default()
            }),
            acks: Mutex::new(vec![None; ACK_SLOTS]),
            ack_arrived: Condvar::new(),
            latest: Mutex::new(None),
            stop: AtomicBool::new(false),
            next_seq: AtomicU16::new(0),
        });
        let (out, out_rx) = unbounded();
        let (events_tx, events) = bounded(4096);
        let writer_port = port.try_clone_native().map_err(|e| LinkError::Open {
            device: device.clone(),
            reason: format!("cannot clone the port for writing: {e}"),
        })?;
        let writer = Arc::new(Mutex::new(Some(writer_port)));
        let spawn_err = |e: std::io::Error| LinkError::Open {
            device: device.clone(),
            reason: format!("cannot start the I/O threads: {e}"),
        };
        let writer_thread = {
            let (shared, writer, cfg) = (shared.clone(), writer.clone(), cfg.clone());
            std::thread::Builder::new()
                .name("fc-link-tx".into())
                .spawn(move || write_loop(&cfg, &shared, &writer, &out_rx))
                .map_err(spawn_err)?
        };
        let reader_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("fc-link-rx".into())
                .spawn(move || io_loop(cfg, port, &shared, &writer, &events_tx))
                .map_err(spawn_err)?
        };
        Ok(Link {
            device,
            shared,
            out,
            events,
            threads: vec![writer_thread, reader_thread],
        })
    }

    /// The device path.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Queues a message; returns its sequence number. While the device is gone
    /// the message is dropped and counted (`tx_dropped`): a setpoint that
    /// arrives late is worse than none.
    pub fn send(&self, msg: ToFc) -> u16 {
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        // The receiver lives as long as the I/O thread, which lives as long as `self`.
        let _ = self.out.send((seq, msg));
        seq
    }

    /// Waits for the acknowledgement of `seq` (sent at `since`).
    pub fn wait_ack(
        &self,
        seq: u16,
        since: Instant,
        timeout: Duration,
    ) -> Option<(AckStatus, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut acks = lock(&self.shared.acks);
        loop {
            if let Some((s, status, at)) = acks[seq as usize % ACK_SLOTS]
                && s == seq
                && at >= since
            {
                return Some((status, at));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            acks = self
                .shared
                .ack_arrived
                .wait_timeout(acks, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Motors off now, wherever the vehicle is: the firmware's emergency stop,
    /// with its confirmation (a disarm is refused in the air). Latched and
    /// reported by the firmware until a disarm on the ground.
    pub fn emergency_stop(&self, timeout: Duration) -> Result<AckStatus, LinkError> {
        self.command(
            ToFc::EmergencyStop {
                confirm: fclink::ESTOP_CONFIRM,
            },
            timeout,
        )
    }

    /// Sends a command and waits for its acknowledgement.
    pub fn command(&self, msg: ToFc, timeout: Duration) -> Result<AckStatus, LinkError> {
        let since = Instant::now();
        let seq = self.send(msg);
        self.wait_ack(seq, since, timeout)
            .map(|(status, _)| status)
            .ok_or_else(|| LinkError::NoAck {
                device: self.device.clone(),
                what: format!("{msg:?}"),
                seq,
                timeout,
            })
    }

    /// Telemetry, acknowledgements and connection changes, in arrival order.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// The newest telemetry report and when it arrived.
    pub fn latest_telemetry(&self) -> Option<(Telemetry, Instant)> {
        *lock(&self.shared.latest)
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        *lock(&self.shared.stats)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn emit(shared: &Shared, events: &Sender<Event>, e: Event) {
    if let Err(TrySendError::Full(_)) = events.try_send(e) {
        lock(&shared.stats).events_dropped += 1;
    }
}

/// The reading half: owns the port, decodes, notices when the device
/// vanishes and re-opens it, handing a clone to the writing half.
fn io_loop(
    cfg: LinkConfig,
    port: TTYPort,
    shared: &Shared,
    writer: &Mutex<Option<TTYPort>>,
    events: &Sender<Event>,
) {
    let mut port = Some(port);
    let mut decoder = Decoder::new();
    let mut last_attempt = Instant::now();
    let mut buf = [0u8; 512];
    let device = cfg.device.display().to_string();
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(p) = port.as_mut() else {
            if last_attempt.elapsed() >= cfg.reconnect_interval {
                last_attempt = Instant::now();
                if let Ok(p) = open_port(&cfg) {
                    let Ok(w) = p.try_clone_native() else {
                        continue;
                    };
                    tracing::info!("flight-controller link {device} is back");
                    decoder.reset();
                    *lock(writer) = Some(w);
                    port = Some(p);
                    let mut s = lock(&shared.stats);
                    s.reconnects += 1;
                    s.connected = true;
                    drop(s);
                    emit(shared, events, Event::Connected);
                    continue;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let failure = match p.read(&mut buf) {
            Ok(0) => Some("end of file (device hung up)".to_string()),
            Ok(n) => {
                let at = Instant::now();
                for &b in &buf[..n] {
                    match decoder.push::<FromFc>(b) {
                        Some(Ok(f)) => deliver(shared, events, f, at),
                        Some(Err(e)) => tracing::debug!("fc link {device}: {e}"),
                        None => {}
                    }
                }
                let d = decoder.stats();
                let mut s = lock(&shared.stats);
                s.frames_rx = d.frames as u64;
                s.crc_errors = d.crc_errors as u64;
                s.other_errors = d.other_errors as u64;
                s.dropped_bytes = d.dropped_bytes as u64;
                None
            }
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::Interrupted => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = failure {
            tracing::warn!(
                "flight-controller link {device} lost: {reason}; re-opening every {:?}",
                cfg.reconnect_interval
            );
            port = None;
            *lock(writer) = None;
            last_attempt = Instant::now();
            let mut s = lock(&shared.stats);
            s.disconnects += 1;
            s.connected = false;
            drop(s);
            emit(shared, events, Event::Disconnected { reason });
        }
    }
}

/// The writing half: sends queued frames as they come (so a setpoint never
/// waits for a read to time out) and the heartbeat; drops frames while the
/// device is gone.
fn write_loop(
    cfg: &LinkConfig,
    shared: &Shared,
    writer: &Mutex<Option<TTYPort>>,
    out: &Receiver<(u16, ToFc)>,
) {
    let started = Instant::now();
    let mut next_heartbeat = Instant::now();
    let mut wire = [0u8; MAX_WIRE];
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = next_heartbeat
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        let (seq, msg) = match out.recv_timeout(wait) {
            Ok(x) => x,
            Err(_) if Instant::now() >= next_heartbeat => {
                next_heartbeat = Instant::now() + cfg.heartbeat_interval;
                let uptime_ms = started.elapsed().as_millis() as u32;
                (
                    shared.next_seq.fetch_add(1, Ordering::Relaxed),
                    ToFc::Heartbeat { uptime_ms },
                )
            }
            Err(_) => continue,
        };
        let mut w = lock(writer);
        match w.as_mut() {
            Some(p) => {
                if let Err(e) = write_frame(p, shared, seq, &msg, &mut wire) {
                    // The reading half notices too and re-opens the device.
                    tracing::debug!("fc link write failed: {e}");
                    *w = None;
                    lock(&shared.stats).tx_dropped += 1;
                }
            }
            None => lock(&shared.stats).tx_dropped += 1,
        }
    }
}

/// Writes one frame. A full buffer drops the frame (counted); any other error
/// means the device is gone.
fn write_frame(
    p: &mut TTYPort,
    shared: &Shared,
    seq: u16,
    msg: &ToFc,
    wire: &mut [u8; MAX_WIRE],
) -> Result<(), String> {
    let bytes = match frame::encode(seq, msg, wire) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("cannot encode {msg:?}: {e}");
            lock(&shared.stats).tx_dropped += 1;
            return Ok(());
        }
    };
    match p.write_all(bytes) {
        Ok(()) => {
            lock(&shared.stats).frames_tx += 1;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::TimedOut => {
            lock(&shared.stats).tx_dropped += 1;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A link opened to a firmware that is already running (the fc node
/// restarted, perhaps in flight) numbers its frames from 0, behind the last
/// setpoint the firmware accepted: the firmware would refuse every setpoint as
/// replayed until the numbers caught up, and fail safe meanwhile. So when the
/// firmware's report shows a setpoint number at or ahead of ours, numbering
/// continues after it. In normal running the report lags what was sent and
/// nothing changes.
fn continue_numbering_after(shared: &Shared, last_accepted: u16) {
    let _ = shared
        .next_seq
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            // Serial-number order, as the firmware compares (RFC 1982).
            ((next.wrapping_sub(last_accepted) as i16) <= 0).then(|| last_accepted.wrapping_add(1))
        });
}

fn deliver(shared: &Shared, events: &Sender<Event>, f: fclink::Frame<FromFc>, at: Instant) {
    match f.msg {
        FromFc::Telemetry(telemetry) => {
            continue_numbering_after(shared, telemetry.last_setpoint_seq);
            *lock(&shared.latest) = Some((telemetry, at));
            emit(
                shared,
                events,
                Event::Telemetry {
                    seq: f.seq,
                    telemetry,
                    at,
                },
            );
        }
        FromFc::Ack { seq, status } => {
            lock(&shared.acks)[seq as usize % ACK_SLOTS] = Some((seq, status, at));
            shared.ack_arrived.notify_all();
            emit(shared, events, Event::Ack { seq, status, at });
        }
    }
}
