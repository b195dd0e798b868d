//! The MAVLink path against a simulated PX4 autopilot on UDP loopback: the
//! peer speaks real MAVLink v2 (the same `mavlink` crate, common dialect) and
//! behaves as PX4 does for what the agent uses — heartbeats, telemetry,
//! COMMAND_LONG answered with COMMAND_ACK, Offboard and Hold modes, velocity
//! setpoints.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fc::mav::{Flavour, MavAddress, MavConfig, MavError, MavLink};
use mavlink::dialects::common::*;
use mavlink::{MavHeader, MavlinkReader};

#[derive(Default)]
struct Peer {
    agent: Option<SocketAddr>,
    heartbeats: u32,
    armed: bool,
    main_mode: u8,
    sub_mode: u8,
    /// Confirmation field of every arm/disarm command seen.
    arm_commands: Vec<u8>,
    /// Every mode change: (main, sub, when).
    modes: Vec<(u8, u8, Instant)>,
    /// Every stream request: (message id, interval in µs).
    intervals: Vec<(u32, i64)>,
    /// Sends no ATTITUDE or LOCAL_POSITION_NED (a rebooted autopilot that forgot
    /// the intervals asked for).
    silent: bool,
    /// Every setpoint: (when, vx, vy, vz, yaw_rate, frame ok, mask ok).
    setpoints: Vec<(Instant, f32, f32, f32, f32, bool)>,
    /// What ATTITUDE reports (roll, pitch, yaw; NED/FRD), when not the default.
    attitude: Option<[f32; 3]>,
    /// What LOCAL_POSITION_NED reports (x, y, z, vx, vy, vz), when not the default.
    local: Option<[f32; 6]>,
}

fn send(sock: &UdpSocket, to: SocketAddr, seq: &mut u8, msg: &MavMessage) {
    let mut bytes = Vec::new();
    let header = MavHeader {
        system_id: 1,
        component_id: 1,
        sequence: *seq,
    };
    *seq = seq.wrapping_add(1);
    mavlink::write_v2_msg(&mut bytes, header, msg).unwrap();
    sock.send_to(&bytes, to).unwrap();
}

/// Runs a PX4-like autopilot until `stop`. It ignores the first arm command
/// (a lost packet) so that the agent must retry.
fn px4(sock: UdpSocket, state: Arc<Mutex<Peer>>, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let (mut seq, mut buf) = (0u8, [0u8; 2048]);
    let started = Instant::now();
    let (mut next_hb, mut next_att, mut next_pos) =
        (Instant::now(), Instant::now(), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut r = MavlinkReader::new(&buf[..n]);
            while let Ok((_, msg)) = r.read_any_message::<MavMessage>() {
                let mut p = state.lock().unwrap();
                p.agent = Some(from);
                let reply = match msg {
                    MavMessage::HEARTBEAT(_) => {
                        p.heartbeats += 1;
                        None
                    }
                    MavMessage::COMMAND_LONG(c) => match c.command {
                        MavCmd::MAV_CMD_COMPONENT_ARM_DISARM => {
                            p.arm_commands.push(c.confirmation);
                            if p.arm_commands.len() == 1 {
                                None
                            } else {
                                p.armed = c.param1 == 1.0;
                                Some((c.command, MavResult::MAV_RESULT_ACCEPTED))
                            }
                        }
                        MavCmd::MAV_CMD_DO_SET_MODE => {
                            p.main_mode = c.param2 as u8;
                            p.sub_mode = c.param3 as u8;
                            let (m, s) = (p.main_mode, p.sub_mode);
                            p.modes.push((m, s, Instant::now()));
                            Some((c.command, MavResult::MAV_RESULT_ACCEPTED))
                        }
                        MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL => {
                            p.intervals.push((c.param1 as u32, c.param2.round() as i64));
                            Some((c.command, MavResult::MAV_RESULT_ACCEPTED))
                        }
                        other => Some((other, MavResult::MAV_RESULT_UNSUPPORTED)),
                    },
                    #[allow(deprecated)]
                    MavMessage::SET_POSITION_TARGET_LOCAL_NED(s) => {
                        let ok = s.coordinate_frame == MavFrame::MAV_FRAME_BODY_NED
                            && s.type_mask.contains(
                                PositionTargetTypemask::POSITION_TARGET_TYPEMASK_X_IGNORE,
                            )
                            && !s.type_mask.contains(
                                PositionTargetTypemask::POSITION_TARGET_TYPEMASK_VX_IGNORE,
                            )
                            && (s.target_system, s.target_component) == (1, 1);
                        p.setpoints
                            .push((Instant::now(), s.vx, s.vy, s.vz, s.yaw_rate, ok));
                        None
                    }
                    _ => None,
                };
                drop(p);
                if let Some((command, result)) = reply {
                    send(
                        &sock,
                        from,
                        &mut seq,
                        &MavMessage::COMMAND_ACK(COMMAND_ACK_DATA { command, result }),
                    );
                }
            }
        }
        let Some(agent) = state.lock().unwrap().agent else {
            continue;
        };
        let now = Instant::now();
        let t = started.elapsed().as_millis() as u32;
        if now >= next_hb {
            next_hb = now + Duration::from_secs(1);
            let p = state.lock().unwrap();
            let mut base = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED;
            if p.armed {
                base |= MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED;
            }
            let custom_mode = ((p.main_mode as u32) << 16) | ((p.sub_mode as u32) << 24);
            drop(p);
            send(
                &sock,
                agent,
                &mut seq,
                &MavMessage::HEARTBEAT(HEARTBEAT_DATA {
                    custom_mode,
                    mavtype: MavType::MAV_TYPE_QUADROTOR,
                    autopilot: MavAutopilot::MAV_AUTOPILOT_PX4,
                    base_mode: base,
                    system_status: MavState::MAV_STATE_STANDBY,
                    mavlink_version: 3,
                }),
            );
        }
        let (att, local, silent) = {
            let p = state.lock().unwrap();
            (
                p.attitude.unwrap_or([0.01, -0.02, 1.5]),
                p.local.unwrap_or([1.0, 2.0, -3.0, 0.5, 0.0, 0.0]),
                p.silent,
            )
        };
        if silent {
            continue;
        }
        if now >= next_att {
            next_att = now + Duration::from_millis(20);
            send(
                &sock,
                agent,
                &mut seq,
                &MavMessage::ATTITUDE(ATTITUDE_DATA {
                    time_boot_ms: t,
                    roll: att[0],
                    pitch: att[1],
                    yaw: att[2],
                    rollspeed: 0.0,
                    pitchspeed: 0.0,
                    yawspeed: 0.1,
                }),
            );
        }
        if now >= next_pos {
            next_pos = now + Duration::from_millis(100);
            send(
                &sock,
                agent,
                &mut seq,
                &MavMessage::LOCAL_POSITION_NED(LOCAL_POSITION_NED_DATA {
                    time_boot_ms: t,
                    x: local[0],
                    y: local[1],
                    z: local[2],
                    vx: local[3],
                    vy: local[4],
                    vz: local[5],
                }),
            );
            send(
                &sock,
                agent,
                &mut seq,
                &MavMessage::SYS_STATUS(SYS_STATUS_DATA {
                    voltage_battery: 15_800,
                    battery_remaining: 87,
                    ..SYS_STATUS_DATA::DEFAULT
                }),
            );
        }
    }
}

/// Start the PX4-like peer on a UDP port of its own: the port, its state, the
/// flag that stops it and its thread.
fn start_px4(
    peer: Peer,
) -> (
    u16,
    Arc<Mutex<Peer>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(peer));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (state, stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || px4(sock, state, stop))
    };
    (port, state, stop, thread)
}

/// `agent node mavlink` for the autopilot on UDP `port`, listening on bus
/// port `k` of this module's block; returns it, its endpoint and robot name.
fn spawn_mavlink_node(k: u16, port: u16, extra: &[&str]) -> (std::process::Child, String, String) {
    use std::process::{Command, Stdio};
    let bus_port = e2e_tests::test_port(e2e_tests::PortSlice::Mavlink, 4, k);
    let ep = format!("tcp/127.0.0.1:{bus_port}");
    let robot = format!("mav{k}x{}", std::process::id());
    let node = Command::new(e2e_tests::workspace_bin("agent"))
        .args(["node", "mavlink", "--robot", &robot, "--listen", &ep])
        .args(extra)
        .arg("--mavlink")
        .arg(format!("udpout:127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (node, ep, robot)
}

#[test]
fn px4_over_udp_arm_offboard_stream_and_hold_when_quiet() {
    let (port, state, stop, peer) = start_px4(Peer::default());

    let address: MavAddress = format!("udpout:127.0.0.1:{port}").parse().unwrap();
    let cfg = MavConfig::new(address);
    let (quiet_after, hold_after, hz) = (cfg.quiet_after, cfg.hold_after, cfg.setpoint_hz);
    let link = MavLink::connect(cfg).unwrap();
    let status = link.wait_heartbeat(Duration::from_secs(5)).unwrap();
    assert_eq!(status.flavour, Some(Flavour::Px4));
    assert_eq!(status.target, (1, 1));
    std::thread::sleep(Duration::from_millis(300));
    let status = link.status();
    assert_eq!(status.attitude.map(|a| a[2]), Some(1.5));
    assert_eq!(status.local_position.map(|p| p[2]), Some(-3.0));
    assert_eq!(status.battery, Some((15_800, 87)));
    assert!(
        state.lock().unwrap().heartbeats >= 1,
        "the autopilot heard no heartbeat from the agent"
    );

    // The first arm command is lost; the retry (confirmation 1) is accepted.
    link.arm().unwrap();
    assert_eq!(state.lock().unwrap().arm_commands, vec![0, 1]);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(link.status().armed, "heartbeat does not show armed");

    link.take_control().unwrap();
    assert_eq!(state.lock().unwrap().main_mode, 6, "not in Offboard");
    // The telemetry it reads was asked for: ATTITUDE at 50 Hz,
    // LOCAL_POSITION_NED at 30 Hz, SYS_STATUS at 2 Hz.
    let intervals = state.lock().unwrap().intervals.clone();
    for want in [(30, 20_000), (32, 33_333), (1, 500_000)] {
        assert!(intervals.contains(&want), "{want:?} not in {intervals:?}");
    }

    // The policy commands 1 m/s forward, 0.5 m/s left, turning left, at 20 Hz for 2 s.
    let flying = Instant::now();
    let mut went_quiet = flying;
    while flying.elapsed() < Duration::from_secs(2) {
        link.set_velocity(1.0, 0.5, 0.0, 0.2);
        went_quiet = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(hold_after + Duration::from_millis(500));
    let p = state.lock().unwrap();
    let during: Vec<_> = p
        .setpoints
        .iter()
        .filter(|s| s.0 >= flying + Duration::from_millis(200) && s.0 < went_quiet)
        .collect();
    let rate =
        during.len() as f64 / (went_quiet - flying - Duration::from_millis(200)).as_secs_f64();
    eprintln!(
        "setpoints while flying: {} ({rate:.1} Hz, configured {hz} Hz)",
        during.len()
    );
    assert!(rate >= 20.0, "setpoints at {rate:.1} Hz");
    assert!(
        p.setpoints.iter().all(|s| s.5),
        "a setpoint in the wrong frame, mask or target"
    );
    // Body z-up/counter-clockwise → NED body: right = -left, down = -up, clockwise yaw.
    assert!(
        during
            .iter()
            .all(|s| (s.1, s.2, s.3, s.4) == (1.0, -0.5, -0.0, -0.2))
    );

    // Quiet: zero velocity within quiet_after (+ one period), the stream never stops...
    let first_zero = p
        .setpoints
        .iter()
        .find(|s| {
            s.0 > went_quiet + Duration::from_millis(50) && s.1 == 0.0 && s.2 == 0.0 && s.4 == 0.0
        })
        .expect("no zero-velocity setpoint after the policy went quiet");
    let to_zero = first_zero.0 - went_quiet;
    assert!(
        to_zero <= quiet_after + Duration::from_millis(150),
        "zero velocity only {to_zero:?} after going quiet"
    );
    let quiet: Vec<_> = p.setpoints.iter().filter(|s| s.0 > first_zero.0).collect();
    assert!(
        quiet
            .iter()
            .all(|s| (s.1, s.2, s.3, s.4) == (0.0, 0.0, 0.0, 0.0))
    );
    assert!(
        quiet.len() as f64 >= 20.0 * 0.9 * (hold_after.as_secs_f64() + 0.2),
        "stream thinned to {}",
        quiet.len()
    );
    // ...and the autopilot is switched to Hold (Auto/Loiter) after hold_after.
    let hold = p.modes.last().copied().expect("mode changes");
    assert_eq!((hold.0, hold.1), (4, 3), "not switched to Hold");
    let to_hold = hold.2 - went_quiet;
    assert!(
        to_hold >= hold_after && to_hold <= hold_after + Duration::from_millis(300),
        "hold after {to_hold:?}"
    );
    eprintln!("zero velocity {to_zero:?} after the policy went quiet, Hold after {to_hold:?}");
    drop(p);
    let st = link.status();
    assert!(st.hold_commanded && st.quiet_setpoints > 0);

    // A command the autopilot does not support is refused with its result.
    match link.command(MavCmd::MAV_CMD_NAV_TAKEOFF, [0.0; 7]) {
        Err(MavError::Refused { result, .. }) => {
            assert_eq!(result, MavResult::MAV_RESULT_UNSUPPORTED)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    link.disarm().unwrap();
    assert!(!state.lock().unwrap().armed);
    drop(link);
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
}

#[test]
fn no_autopilot_and_bad_addresses_are_reported() {
    // Nobody listens on this port.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    drop(sock);
    let link = MavLink::connect(MavConfig::new(
        format!("udpout:127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    assert!(matches!(
        link.wait_heartbeat(Duration::from_millis(300)),
        Err(MavError::NoHeartbeat(_))
    ));
    for bad in [
        "tcp:1.2.3.4:5",
        "udpout:nowhere",
        "serial:/dev/ttyS0:fast",
        "udpin",
    ] {
        let e = bad.parse::<MavAddress>().expect_err(bad);
        assert!(e.to_string().contains(bad), "{e}");
    }
    let e = MavLink::connect(MavConfig::new(
        "serial:/dev/does-not-exist:57600".parse().unwrap(),
    ))
    .err()
    .expect("missing device");
    assert!(e.to_string().contains("does-not-exist"), "{e}");
}

/// The same path over a serial line (a pseudo-terminal pair): heartbeats both
/// ways, an acknowledged arm, and the setpoint stream.
#[test]
fn mavlink_over_a_serial_line() {
    use serialport::{SerialPort, TTYPort};
    use std::io::Write;

    let (master, slave) = TTYPort::pair().unwrap();
    let device = slave.name().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let setpoints = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let arms = Arc::new(Mutex::new(0u32));
    let peer = {
        let (stop, setpoints, arms) = (stop.clone(), setpoints.clone(), arms.clone());
        let mut writer = master.try_clone_native().unwrap();
        let mut reader_port = master;
        reader_port.set_timeout(Duration::from_millis(20)).unwrap();
        std::thread::spawn(move || {
            let _keep = slave;
            let mut reader = MavlinkReader::new(reader_port);
            let mut seq = 0u8;
            let mut next_hb = Instant::now();
            // ArduRover's mode number, from DO_SET_MODE, shown in the heartbeat.
            let mut mode = 0u32;
            let mut write = |msg: &MavMessage, seq: &mut u8| {
                let header = MavHeader {
                    system_id: 1,
                    component_id: 1,
                    sequence: *seq,
                };
                *seq = seq.wrapping_add(1);
                let mut bytes = Vec::new();
                mavlink::write_v2_msg(&mut bytes, header, msg).unwrap();
                writer.write_all(&bytes).unwrap();
            };
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next_hb {
                    next_hb = Instant::now() + Duration::from_millis(500);
                    write(
                        &MavMessage::HEARTBEAT(HEARTBEAT_DATA {
                            custom_mode: mode,
                            mavtype: MavType::MAV_TYPE_GROUND_ROVER,
                            autopilot: MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
                            base_mode: MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                            system_status: MavState::MAV_STATE_STANDBY,
                            mavlink_version: 3,
                        }),
                        &mut seq,
                    );
                }
                match reader.read_any_message::<MavMessage>() {
                    Ok((_, MavMessage::COMMAND_LONG(c))) => {
                        if c.command == MavCmd::MAV_CMD_COMPONENT_ARM_DISARM {
                            *arms.lock().unwrap() += 1;
                        }
                        if c.command == MavCmd::MAV_CMD_DO_SET_MODE {
                            mode = c.param2 as u32;
                        }
                        write(
                            &MavMessage::COMMAND_ACK(COMMAND_ACK_DATA {
                                command: c.command,
                                result: MavResult::MAV_RESULT_ACCEPTED,
                            }),
                            &mut seq,
                        );
                    }
                    Ok((_, MavMessage::SET_POSITION_TARGET_LOCAL_NED(_))) => {
                        setpoints.lock().unwrap().push(Instant::now())
                    }
                    _ => {}
                }
            }
        })
    };
    let link = MavLink::connect(MavConfig::new(
        format!("serial:{device}:57600").parse().unwrap(),
    ))
    .unwrap();
    let st = link.wait_heartbeat(Duration::from_secs(3)).unwrap();
    assert_eq!(st.flavour, Some(Flavour::ArduPilot { rover: true }));
    link.arm().unwrap();
    assert_eq!(*arms.lock().unwrap(), 1);
    link.take_control().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        link.set_velocity(0.5, 0.0, 0.0, 0.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = setpoints
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= t0 + Duration::from_millis(100))
        .count();
    assert!(n >= 18, "{n} setpoints in 0.9 s over serial");
    drop(link);
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
}

/// The `mavlink` node of the graph (a separate process): setpoints published
/// on the bus arm the simulated PX4, switch it to Offboard and reach it as
/// body-frame velocity setpoints; when they stop, the node's stream goes to
/// zero and the autopilot to Hold; status comes back as `FcStatus`.
#[test]
fn mavlink_node_flies_px4_from_the_bus() {
    use bus::msg::{Event as BusEvent, FcStatus, Setpoint as BusSetpoint};
    use bus::{Inbox, Outbox};
    use e2e_tests::signal_after;

    let (port, state, stop, peer) = start_px4(Peer {
        // This peer answers the first arm command (no lost packet here).
        arm_commands: vec![9],
        ..Peer::default()
    });
    let (node, ep, robot) = spawn_mavlink_node(0, port, &["--arm", "--no-preflight"]);
    let session = bus::open(&bus::BusConfig::connect_to(ep)).unwrap();
    let mut setpoints =
        Outbox::<BusSetpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut status = Inbox::<FcStatus>::new(&session, &robot, bus::topics::FC_STATUS, 64).unwrap();
    let mut events = Inbox::<BusEvent>::new(&session, &robot, bus::topics::EVENTS, 64).unwrap();

    let t0 = Instant::now();
    while status
        .recv_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no FcStatus from the mavlink node"
        );
    }
    let flying = Instant::now();
    while flying.elapsed() < Duration::from_secs(2) {
        setpoints
            .send(
                bus::now_ns(),
                "policy",
                &BusSetpoint {
                    forward: 1.0,
                    left: 0.0,
                    up: 0.0,
                    yaw_rate: 0.0,
                },
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut last = None;
    while let Ok(Some((_, s))) = status.recv_timeout(Duration::ZERO) {
        last = Some(s);
    }
    assert_eq!(last.map(|s| s.state), Some(1), "not armed: {last:?}");
    assert_eq!(last.map(|s| s.altitude), Some(3.0));
    std::thread::sleep(Duration::from_millis(1600));
    {
        let p = state.lock().unwrap();
        assert!(p.armed, "the autopilot was not armed");
        assert!(
            p.modes.first().is_some_and(|m| m.0 == 6),
            "never switched to Offboard: {:?}",
            p.modes.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>()
        );
        assert!(
            p.modes.last().is_some_and(|m| (m.0, m.1) == (4, 3)),
            "not in Hold after the policy went quiet"
        );
        let flown = p.setpoints.iter().filter(|s| s.1 == 1.0).count();
        assert!(
            flown >= 30,
            "only {flown} setpoints at 1 m/s reached the autopilot"
        );
        assert!(
            p.setpoints.last().is_some_and(|s| s.1 == 0.0),
            "the stream did not go to zero"
        );
    }
    let mut texts = Vec::new();
    while let Ok(Some((_, e))) = events.recv_timeout(Duration::ZERO) {
        texts.push(e.text);
    }
    signal_after(&node, "TERM", Duration::ZERO);
    let out = node.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = texts.join("\n");
    for want in ["agent in control", "commanded to hold"] {
        assert!(all.contains(want), "no event with {want:?} in:\n{all}");
    }
    // Published before our subscription may have formed: in the node's log.
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("autopilot Some(Px4)"), "{log}");
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
}

/// The mavlink node publishes the vehicle's pose on `state` in the agent's
/// frame (REP-103: ENU world, FLU body), converted from what the autopilot
/// reports in NED/FRD. The autopilot faces east (NED yaw π/2), nose up 0.1 rad
/// (NED pitch +0.1), 1 m north, 2 m east and 3 m up, flying 0.5 m/s east and
/// climbing 0.2 m/s. By hand:
/// - position ENU = (east, north, up) = (2, 1, 3);
/// - facing east is ENU yaw 0; nose up is a negative FLU pitch, −0.1: the
///   quaternion is (cos 0.05, 0, −sin 0.05, 0) = (0.998750, 0, −0.049979, 0);
/// - world velocity (0.5, 0, 0.2) in the body pitched nose up by 0.1:
///   forward = 0.5 cos 0.1 + 0.2 sin 0.1 = 0.517469,
///   up = −0.5 sin 0.1 + 0.2 cos 0.1 = 0.149084, left = 0.
#[test]
fn mavlink_state_is_enu() {
    use bus::Inbox;
    use bus::msg::State;
    use e2e_tests::signal_after;

    let (port, _state, stop, peer) = start_px4(Peer {
        attitude: Some([0.0, 0.1, std::f32::consts::FRAC_PI_2]),
        local: Some([1.0, 2.0, -3.0, 0.0, 0.5, -0.2]),
        ..Peer::default()
    });
    let (node, ep, robot) = spawn_mavlink_node(1, port, &[]);
    let session = bus::open(&bus::BusConfig::connect_to(ep)).unwrap();
    let mut states = Inbox::<State>::new(&session, &robot, bus::topics::STATE, 4).unwrap();
    let t0 = Instant::now();
    let s = loop {
        if let Some((_, s)) = states.recv_timeout(Duration::from_millis(100)).unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no state from the mavlink node"
        );
    };
    signal_after(&node, "TERM", Duration::ZERO);
    let out = node.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{s:?}");
    let close = |a: f64, b: f64| (a - b).abs() < 1e-5;
    assert!(
        s.position
            .iter()
            .zip([2.0, 1.0, 3.0])
            .all(|(a, b)| close(*a, b)),
        "position {:?} is not ENU (2, 1, 3)",
        s.position
    );
    let want_q = [0.998_750_260, 0.0, -0.049_979_169, 0.0];
    assert!(
        s.attitude.iter().zip(want_q).all(|(a, b)| close(*a, b)),
        "attitude {:?} is not {want_q:?}",
        s.attitude
    );
    let want_v = [0.517_469, 0.0, 0.149_084];
    assert!(
        s.velocity
            .iter()
            .zip(want_v)
            .all(|(a, b)| (f64::from(*a) - b).abs() < 1e-5),
        "body velocity {:?} is not {want_v:?}",
        s.velocity
    );
}

/// A pymavlink autopilot (tests/scripts/pymav_autopilot.py) on UDP port
/// 2 + `k` of this module's block of 4 (the nodes' bus ports are 0 and 1),
/// refusing the first `refuse_holds` Holds.
fn start_pymav(k: u16, refuse_holds: u32, extra: &[&str]) -> (Pymav, u16) {
    let port = e2e_tests::test_port(e2e_tests::PortSlice::Mavlink, 4, 2 + k);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pymav_autopilot.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .args([port.to_string(), refuse_holds.to_string(), "120".into()])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/prepare.sh installs pymavlink)");
    (Pymav(Some(child)), port)
}

/// The pymavlink autopilot's process, killed when the test ends or fails.
struct Pymav(Option<std::process::Child>);

impl Drop for Pymav {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The mode requests the pymavlink autopilot saw: (main, sub, accepted).
fn pymav_modes(mut py: Pymav) -> Vec<(u32, u32, bool)> {
    let Some(mut child) = py.0.take() else {
        return Vec::new();
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("Traceback"),
        "the pymavlink autopilot failed (tests/prepare.sh installs pymavlink): {err}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"mode\""))
        .map(|l| {
            let field = |k: &str| {
                l.split(&format!("\"{k}\": "))
                    .nth(1)
                    .and_then(|r| r.split([',', '}']).next())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            (
                field("main").parse().unwrap(),
                field("sub").parse().unwrap(),
                field("accepted") == "true",
            )
        })
        .collect()
}

/// Waits (liveness only) until the hold has an outcome.
fn hold_outcome(link: &MavLink) -> fc::mav::VehicleStatus {
    let t0 = Instant::now();
    loop {
        let st = link.status();
        if st.hold_confirmed || st.hold_failed || t0.elapsed() > Duration::from_secs(60) {
            return st;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Arms, takes control (confirmed by the heartbeat), flies half a second and
/// goes quiet, so that the link commands the autopilot's Hold.
fn fly_then_go_quiet(port: u16, tries: u8, mode_timeout: Duration) -> MavLink {
    let mut cfg = MavConfig::new(format!("udpout:127.0.0.1:{port}").parse().unwrap());
    cfg.command_tries = tries;
    cfg.mode_timeout = mode_timeout;
    let link = MavLink::connect(cfg).unwrap();
    link.wait_heartbeat(Duration::from_secs(30)).unwrap();
    link.arm().unwrap();
    link.take_control().unwrap();
    assert_eq!(
        link.status().custom_mode,
        6 << 16,
        "heartbeat not in Offboard"
    );
    for _ in 0..10 {
        link.set_velocity(0.5, 0.0, 0.0, 0.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    link
}

/// A mode change counts when the autopilot's heartbeat shows it, not when it
/// is acknowledged: an autopilot (pymavlink, PX4's mode numbers) that refuses
/// the first Hold gets it again and is confirmed in Hold; one that refuses every
/// Hold is reported as not holding after the configured tries.
#[test]
fn mavlink_hold_is_confirmed_or_retried() {
    // Refuses the first Hold.
    let (py, port) = start_pymav(0, 1, &[]);
    let link = fly_then_go_quiet(port, 3, Duration::from_millis(2500));
    let st = hold_outcome(&link);
    drop(link);
    let modes = pymav_modes(py);
    eprintln!("refuse one: {st:?}\n  modes seen: {modes:?}");
    assert!(st.hold_confirmed && !st.hold_failed, "{st:?}");
    assert_eq!(
        st.custom_mode,
        (4 << 16) | (3 << 24),
        "heartbeat not in Hold"
    );
    assert!(
        st.hold_tries >= 2,
        "the refused Hold was not sent again: {st:?}"
    );
    let holds: Vec<_> = modes.iter().filter(|m| (m.0, m.1) == (4, 3)).collect();
    assert_eq!(holds.first().map(|m| m.2), Some(false), "{modes:?}");
    assert!(
        holds.iter().skip(1).any(|m| m.2),
        "no accepted Hold: {modes:?}"
    );
    assert_eq!(
        modes.first(),
        Some(&(6, 0, true)),
        "Offboard first: {modes:?}"
    );

    // Refuses every Hold: two tries, then the link says it failed.
    let (py, port) = start_pymav(1, 99, &[]);
    let link = fly_then_go_quiet(port, 2, Duration::from_millis(1500));
    let st = hold_outcome(&link);
    drop(link);
    let modes = pymav_modes(py);
    eprintln!("refuse all: {st:?}\n  modes seen: {modes:?}");
    assert!(st.hold_failed && !st.hold_confirmed, "{st:?}");
    assert_eq!(st.hold_tries, 2);
    let holds = modes.iter().filter(|m| (m.0, m.1) == (4, 3)).count();
    assert_eq!(holds, 2, "{modes:?}");

    // Refuses the Hold because the pilot took over (Position mode): the link
    // stops asking, it never overrides the pilot's mode.
    let (py, port) = start_pymav(0, 99, &["posctl"]);
    let link = fly_then_go_quiet(port, 3, Duration::from_millis(1500));
    let t0 = Instant::now();
    let st = loop {
        let st = link.status();
        if st.hold_superseded || st.hold_failed || t0.elapsed() > Duration::from_secs(60) {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Longer than the retries would take: none comes.
    std::thread::sleep(Duration::from_millis(3500));
    drop(link);
    let modes = pymav_modes(py);
    eprintln!("pilot took over: {st:?}\n  modes seen: {modes:?}");
    assert!(st.hold_superseded && !st.hold_failed, "{st:?}");
    assert_eq!(st.custom_mode, 3 << 16, "heartbeat not in Position");
    let holds = modes.iter().filter(|m| (m.0, m.1) == (4, 3)).count();
    assert_eq!(
        holds, 1,
        "the Hold was sent again over the pilot's mode: {modes:?}"
    );
}

/// Waits (liveness only, 30 s) until `done` holds for the link's status.
fn until(link: &MavLink, done: impl Fn(&fc::mav::VehicleStatus) -> bool) -> fc::mav::VehicleStatus {
    let t0 = Instant::now();
    loop {
        let st = link.status();
        if done(&st) || t0.elapsed() > Duration::from_secs(30) {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An autopilot that stops sending its pose (as after a reboot, which forgets
/// the intervals asked for) is asked for the streams again, and its last pose
/// goes stale instead of standing for the vehicle's state.
#[test]
fn mavlink_streams_are_asked_again_when_the_pose_goes_stale() {
    let (port, state, stop, peer) = start_px4(Peer::default());
    let address: MavAddress = format!("udpout:127.0.0.1:{port}").parse().unwrap();
    let link = MavLink::connect(MavConfig::new(address)).unwrap();
    link.wait_heartbeat(Duration::from_secs(10)).unwrap();
    let st = until(&link, |st| {
        st.stream_requests >= 1 && st.pose_fresh(Duration::from_millis(500)) == (true, true)
    });
    assert_eq!(
        st.pose_fresh(Duration::from_millis(500)),
        (true, true),
        "{st:?}"
    );
    let asked = st.stream_requests;
    state.lock().unwrap().silent = true;
    let st = until(&link, |st| {
        st.stream_requests > asked && st.pose_fresh(Duration::from_millis(500)) == (false, false)
    });
    assert_eq!(
        st.pose_fresh(Duration::from_millis(500)),
        (false, false),
        "{st:?}"
    );
    assert!(
        st.stream_requests > asked,
        "streams not asked for again: {st:?}"
    );
    // The link counts a request when it sends it; the autopilot's thread
    // records it when it reads it, which a loaded machine may delay: wait for
    // the autopilot's count (liveness only).
    let attitude_requests = || {
        state
            .lock()
            .unwrap()
            .intervals
            .iter()
            .filter(|i| i.0 == 30)
            .count()
    };
    let t0 = Instant::now();
    while attitude_requests() < 2 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rounds = attitude_requests();
    assert!(rounds >= 2, "{rounds} ATTITUDE requests");
    // Streaming again: fresh again.
    state.lock().unwrap().silent = false;
    let st = until(&link, |st| {
        st.pose_fresh(Duration::from_millis(500)) == (true, true)
    });
    assert_eq!(
        st.pose_fresh(Duration::from_millis(500)),
        (true, true),
        "{st:?}"
    );
    drop(link);
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
}
