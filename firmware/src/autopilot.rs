//! The MCU's command logic: arming checks, setpoint limits and rate limiting,
//! the setpoint watchdog that puts the vehicle in a failsafe when the agent
//! goes quiet, the low-battery failsafe, and the rules that keep a failsafe
//! from being cleared in the air: disarm only on the ground (an emergency stop
//! is its own confirmed command), arming only landed, level and with no
//! latched fault, setpoints only with newer sequence numbers.
//!
//! It is pure logic over a millisecond clock, so the same code runs on the
//! Cortex-M4F build (under QEMU or on a board) and in host tests.

use crate::frame::Frame;
use crate::msg::{
    AckStatus, ESTOP_CONFIRM, FcState, FromFc, Refusal, Setpoint, Telemetry, ToFc, faults,
};

/// What the vehicle is; decides the failsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vehicle {
    /// Multirotor: failsafe = hover, then land, then disarm.
    Multirotor,
    /// Ground robot: failsafe = stop, latched until disarmed.
    Ground,
}

/// Limits applied to every accepted setpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest forward/left speed (m/s).
    pub max_horizontal: f32,
    /// Largest climb/descent speed (m/s).
    pub max_vertical: f32,
    /// Largest yaw rate (rad/s).
    pub max_yaw_rate: f32,
    /// Largest change of the commanded velocity per second, per axis (m/s²).
    pub max_accel: f32,
    /// Largest roll/pitch of an attitude setpoint (rad).
    pub max_tilt: f32,
}

/// The flight controller's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Vehicle type.
    pub vehicle: Vehicle,
    /// No accepted setpoint for this long while armed → failsafe (ms).
    pub watchdog_ms: u32,
    /// Multirotor failsafe: hover this long before landing (ms).
    pub hover_ms: u32,
    /// Multirotor failsafe: descent speed while landing (m/s).
    pub land_speed: f32,
    /// Arming refused below this battery voltage (mV).
    pub min_arm_battery_mv: u16,
    /// In flight, a battery below this voltage (mV) for `battery_low_ms`
    /// lands the vehicle (a ground robot stops), then disarms.
    pub land_battery_mv: u16,
    /// How long the battery must stay under `land_battery_mv` (ms), so that a
    /// voltage dip under a burst of thrust does not land the vehicle.
    pub battery_low_ms: u32,
    /// Setpoint limits.
    pub limits: Limits,
    /// Control step (ms).
    pub control_period_ms: u32,
    /// Telemetry period (ms).
    pub telemetry_period_ms: u32,
}

impl Config {
    /// Defaults for a small quadrotor: 200 ms watchdog, 3 m/s, 100 Hz control, 20 Hz telemetry.
    pub const MULTIROTOR: Config = Config {
        vehicle: Vehicle::Multirotor,
        watchdog_ms: 200,
        hover_ms: 2000,
        land_speed: 0.5,
        min_arm_battery_mv: 10_500,
        // 3.33 V per cell of a 3S pack.
        land_battery_mv: 10_000,
        battery_low_ms: 1000,
        limits: Limits {
            max_horizontal: 3.0,
            max_vertical: 1.0,
            max_yaw_rate: 1.5,
            max_accel: 4.0,
            max_tilt: 0.6,
        },
        control_period_ms: 10,
        telemetry_period_ms: 50,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::MULTIROTOR
    }
}

/// What the vehicle's sensors say (from drivers on a board; from
/// [`crate::plant::Plant`] where there are none, as under QEMU).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sensors {
    /// Roll, pitch, yaw (rad).
    pub attitude: [f32; 3],
    /// Body rates (rad/s).
    pub rates: [f32; 3],
    /// Accelerometer (m/s²).
    pub accel: [f32; 3],
    /// Body velocity (m/s).
    pub velocity: [f32; 3],
    /// Height above take-off (m).
    pub altitude: f32,
    /// Position from the boot point (m; forward, left, up at boot).
    pub position: [f32; 3],
    /// The position the controller holds (m; the position itself when it
    /// holds none).
    pub target: [f32; 3],
    /// On the ground.
    pub on_ground: bool,
    /// Battery (mV).
    pub battery_mv: u16,
    /// Inertial sensor healthy.
    pub imu_ok: bool,
}

/// What the inner loops are asked to do this control step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Demand {
    /// Motors off.
    Off,
    /// Track this body velocity and yaw rate.
    Velocity {
        /// Forward, left, up (m/s).
        velocity: [f32; 3],
        /// Yaw rate (rad/s).
        yaw_rate: f32,
    },
    /// Track this attitude and thrust.
    Attitude {
        /// Roll (rad).
        roll: f32,
        /// Pitch (rad).
        pitch: f32,
        /// Yaw rate (rad/s).
        yaw_rate: f32,
        /// Thrust (0..1).
        thrust: f32,
    },
    /// Motor outputs (0..1).
    Motors([f32; 4]),
}

/// The command logic.
pub struct Autopilot {
    cfg: Config,
    state: FcState,
    /// Clamped target from the last accepted setpoint.
    target: Setpoint,
    /// Rate-limited velocity command.
    velocity: [f32; 3],
    yaw_rate: f32,
    last_setpoint_ms: u32,
    last_setpoint_seq: u16,
    failsafe_since_ms: u32,
    latched: u16,
    rx_errors: u32,
    last_rx_error_ms: Option<u32>,
    /// Setpoints refused as replays or duplicates.
    stale_setpoints: u32,
    /// Since when the battery has been under the landing threshold in flight.
    battery_low_since_ms: Option<u32>,
}

const STILL: Setpoint = Setpoint::Velocity {
    forward: 0.0,
    left: 0.0,
    up: 0.0,
    yaw_rate: 0.0,
};

fn clamp(v: f32, limit: f32) -> (f32, bool) {
    let c = v.clamp(-limit, limit);
    (c, c != v)
}

fn step_toward(from: f32, to: f32, max_step: f32) -> f32 {
    from + (to - from).clamp(-max_step, max_step)
}

impl Autopilot {
    /// Disarmed, with these settings.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            state: FcState::Disarmed,
            target: STILL,
            velocity: [0.0; 3],
            yaw_rate: 0.0,
            last_setpoint_ms: 0,
            last_setpoint_seq: 0,
            failsafe_since_ms: 0,
            latched: 0,
            rx_errors: 0,
            last_rx_error_ms: None,
            stale_setpoints: 0,
            battery_low_since_ms: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> FcState {
        self.state
    }

    /// Fault flags the sensors raise now (what arming checks).
    fn sensor_faults(&self, s: &Sensors) -> u16 {
        let mut f = 0;
        if s.battery_mv < self.cfg.min_arm_battery_mv {
            f |= faults::BATTERY_LOW;
        }
        if !s.imu_ok {
            f |= faults::IMU;
        }
        if s.attitude[0].abs() > self.cfg.limits.max_tilt
            || s.attitude[1].abs() > self.cfg.limits.max_tilt
        {
            f |= faults::TILT;
        }
        if !s.on_ground {
            f |= faults::NOT_LANDED;
        }
        f
    }

    /// The MCU came back from a watchdog or panic reset: disarmed (it boots
    /// so), with [`faults::MCU_RESET`] latched until a disarm on the ground,
    /// so nobody arms a vehicle whose firmware just failed without seeing it.
    pub fn note_reset(&mut self) {
        self.latched |= faults::MCU_RESET;
    }

    /// Records a frame from the agent that failed to decode.
    pub fn note_rx_error(&mut self, now_ms: u32) {
        self.rx_errors = self.rx_errors.wrapping_add(1);
        self.last_rx_error_ms = Some(now_ms);
    }

    /// Handles a command; returns the acknowledgement to send, if any.
    pub fn handle(
        &mut self,
        now_ms: u32,
        frame: &Frame<ToFc>,
        sensors: &Sensors,
    ) -> Option<FromFc> {
        let status = match frame.msg {
            ToFc::Heartbeat { .. } => return None,
            ToFc::Arm => self.arm(now_ms, frame.seq, sensors),
            // In the air a disarm would drop the vehicle, and clearing the
            // latched failsafe would hand it back to whoever commands it.
            // (Also when already disarmed: after an emergency stop or an MCU
            // reset in the air, a disarm must not clear the latch while the
            // vehicle is still coming down.)
            ToFc::Disarm if !sensors.on_ground => AckStatus::Refused(Refusal::Airborne),
            ToFc::Disarm => {
                self.state = FcState::Disarmed;
                self.latched = 0;
                self.target = STILL;
                AckStatus::Accepted
            }
            ToFc::EmergencyStop { confirm } if confirm != ESTOP_CONFIRM => {
                AckStatus::Refused(Refusal::NotConfirmed)
            }
            ToFc::EmergencyStop { .. } => {
                self.state = FcState::Disarmed;
                self.latched |= faults::EMERGENCY_STOP;
                self.target = STILL;
                AckStatus::Accepted
            }
            ToFc::Setpoint(_) if !newer(frame.seq, self.last_setpoint_seq) => {
                self.stale_setpoints = self.stale_setpoints.wrapping_add(1);
                AckStatus::Refused(Refusal::Stale)
            }
            ToFc::Setpoint(sp) => {
                let status = self.accept_setpoint(sp);
                if !matches!(status, AckStatus::Refused(_)) {
                    self.last_setpoint_ms = now_ms;
                    self.last_setpoint_seq = frame.seq;
                }
                status
            }
        };
        Some(FromFc::Ack {
            seq: frame.seq,
            status,
        })
    }

    fn arm(&mut self, now_ms: u32, seq: u16, sensors: &Sensors) -> AckStatus {
        match self.state {
            FcState::Armed => AckStatus::Accepted,
            s if s.is_failsafe() => AckStatus::Refused(Refusal::InFailsafe),
            // A failsafe that ended in a landing, or an emergency stop, is
            // acknowledged with a disarm on the ground before the next flight.
            _ if self.latched != 0 => AckStatus::Refused(Refusal::InFailsafe),
            _ => {
                let f = self.sensor_faults(sensors);
                if f != 0 {
                    return AckStatus::Refused(Refusal::ArmingChecks(f));
                }
                self.state = FcState::Armed;
                self.latched = 0;
                self.target = STILL;
                self.velocity = sensors.velocity;
                self.yaw_rate = 0.0;
                // Arming starts the watchdog: setpoints must follow within its time.
                self.last_setpoint_ms = now_ms;
                // Setpoints sent before this arming command are stale.
                self.last_setpoint_seq = seq;
                self.battery_low_since_ms = None;
                AckStatus::Accepted
            }
        }
    }

    fn accept_setpoint(&mut self, sp: Setpoint) -> AckStatus {
        let finite = match sp {
            Setpoint::Velocity {
                forward,
                left,
                up,
                yaw_rate,
            } => [forward, left, up, yaw_rate].iter().all(|v| v.is_finite()),
            Setpoint::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => [roll, pitch, yaw_rate, thrust]
                .iter()
                .all(|v| v.is_finite()),
            Setpoint::Motors(m) => m.iter().all(|v| v.is_finite()),
        };
        if !finite {
            return AckStatus::Refused(Refusal::NotFinite);
        }
        if self.state.is_failsafe() {
            return AckStatus::Refused(Refusal::InFailsafe);
        }
        if self.state != FcState::Armed {
            return AckStatus::Refused(Refusal::NotArmed);
        }
        let l = self.cfg.limits;
        let ground = self.cfg.vehicle == Vehicle::Ground;
        let (clamped, any) = match sp {
            Setpoint::Velocity {
                forward,
                left,
                up,
                yaw_rate,
            } => {
                let (f, a) = clamp(forward, l.max_horizontal);
                // A ground robot drives forward and turns; it cannot strafe or climb.
                let (lf, b) = clamp(left, if ground { 0.0 } else { l.max_horizontal });
                let (u, c) = clamp(up, if ground { 0.0 } else { l.max_vertical });
                let (y, d) = clamp(yaw_rate, l.max_yaw_rate);
                (
                    Setpoint::Velocity {
                        forward: f,
                        left: lf,
                        up: u,
                        yaw_rate: y,
                    },
                    a | b | c | d,
                )
            }
            _ if ground => return AckStatus::Refused(Refusal::Unsupported),
            Setpoint::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => {
                let (r, a) = clamp(roll, l.max_tilt);
                let (p, b) = clamp(pitch, l.max_tilt);
                let (y, c) = clamp(yaw_rate, l.max_yaw_rate);
                let t = thrust.clamp(0.0, 1.0);
                (
                    Setpoint::Attitude {
                        roll: r,
                        pitch: p,
                        yaw_rate: y,
                        thrust: t,
                    },
                    a | b | c | (t != thrust),
                )
            }
            Setpoint::Motors(m) => {
                let c = m.map(|v| v.clamp(0.0, 1.0));
                (Setpoint::Motors(c), c != m)
            }
        };
        self.target = clamped;
        if any {
            AckStatus::Clamped
        } else {
            AckStatus::Accepted
        }
    }

    /// One control step at `now_ms`: runs the watchdog and failsafe, and
    /// returns what the inner loops track.
    pub fn tick(&mut self, now_ms: u32, sensors: &Sensors) -> Demand {
        let dt = self.cfg.control_period_ms as f32 * 1e-3;
        // Signed: a control step scheduled before the last setpoint arrived (the
        // loop catching up after a stall) sees a negative age, not a huge one.
        let age = now_ms.wrapping_sub(self.last_setpoint_ms) as i32;
        if self.state == FcState::Armed && age > self.cfg.watchdog_ms as i32 {
            self.latched |= faults::WATCHDOG;
            self.failsafe_since_ms = now_ms;
            self.state = match self.cfg.vehicle {
                Vehicle::Multirotor => FcState::FailsafeHover,
                Vehicle::Ground => FcState::FailsafeStop,
            };
        }
        self.watch_battery(now_ms, sensors);
        let target = match self.state {
            FcState::Disarmed => {
                self.velocity = [0.0; 3];
                self.yaw_rate = 0.0;
                return Demand::Off;
            }
            FcState::Armed => self.target,
            FcState::FailsafeStop => STILL,
            FcState::FailsafeHover => {
                if now_ms.wrapping_sub(self.failsafe_since_ms) >= self.cfg.hover_ms {
                    self.state = FcState::FailsafeLand;
                }
                STILL
            }
            FcState::FailsafeLand => {
                if sensors.on_ground {
                    self.state = FcState::Disarmed;
                    return Demand::Off;
                }
                Setpoint::Velocity {
                    forward: 0.0,
                    left: 0.0,
                    up: -self.cfg.land_speed,
                    yaw_rate: 0.0,
                }
            }
        };
        match target {
            Setpoint::Velocity {
                forward,
                left,
                up,
                yaw_rate,
            } => {
                let max_dv = self.cfg.limits.max_accel * dt;
                let to = [forward, left, up];
                for (v, t) in self.velocity.iter_mut().zip(to) {
                    *v = step_toward(*v, t, max_dv);
                }
                self.yaw_rate = step_toward(
                    self.yaw_rate,
                    yaw_rate,
                    4.0 * self.cfg.limits.max_yaw_rate * dt,
                );
                Demand::Velocity {
                    velocity: self.velocity,
                    yaw_rate: self.yaw_rate,
                }
            }
            Setpoint::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => Demand::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            },
            Setpoint::Motors(m) => Demand::Motors(m),
        }
    }

    /// The low-battery failsafe: armed or hovering in a failsafe with the
    /// battery under the landing threshold for `battery_low_ms` → land (a
    /// ground robot stops), latched as [`faults::BATTERY_FAILSAFE`].
    fn watch_battery(&mut self, now_ms: u32, sensors: &Sensors) {
        let flying = matches!(self.state, FcState::Armed | FcState::FailsafeHover);
        if !flying || sensors.battery_mv >= self.cfg.land_battery_mv {
            self.battery_low_since_ms = None;
            return;
        }
        let since = *self.battery_low_since_ms.get_or_insert(now_ms);
        if now_ms.wrapping_sub(since) < self.cfg.battery_low_ms {
            return;
        }
        self.latched |= faults::BATTERY_FAILSAFE;
        self.failsafe_since_ms = now_ms;
        self.state = match self.cfg.vehicle {
            Vehicle::Multirotor => FcState::FailsafeLand,
            Vehicle::Ground => FcState::FailsafeStop,
        };
    }

    /// The report for `now_ms`.
    pub fn telemetry(&self, now_ms: u32, s: &Sensors) -> Telemetry {
        let mut f = self.latched | self.sensor_faults(s);
        if self
            .last_rx_error_ms
            .is_some_and(|t| now_ms.wrapping_sub(t) < 1000)
        {
            f |= faults::LINK_ERRORS;
        }
        Telemetry {
            uptime_ms: now_ms,
            state: self.state,
            attitude: s.attitude,
            rates: s.rates,
            accel: s.accel,
            velocity: s.velocity,
            altitude: s.altitude,
            position: s.position,
            target: s.target,
            battery_mv: s.battery_mv,
            faults: f,
            last_setpoint_seq: self.last_setpoint_seq,
            setpoint_age_ms: (now_ms.wrapping_sub(self.last_setpoint_ms) as i32).max(0) as u32,
            rx_errors: self.rx_errors,
            stale_setpoints: self.stale_setpoints,
            policy_cycles: 0,
        }
    }
}

/// Whether sequence number `seq` is newer than `last` (serial-number
/// arithmetic: the 16-bit counter wraps; "newer" is up to half the range ahead).
fn newer(seq: u16, last: u16) -> bool {
    (seq.wrapping_sub(last) as i16) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plant::Plant;

    fn frame(seq: u16, msg: ToFc) -> Frame<ToFc> {
        Frame { seq, msg }
    }

    fn vel(forward: f32, left: f32, up: f32, yaw_rate: f32) -> ToFc {
        ToFc::Setpoint(Setpoint::Velocity {
            forward,
            left,
            up,
            yaw_rate,
        })
    }

    fn status(ack: Option<FromFc>) -> AckStatus {
        match ack {
            Some(FromFc::Ack { status, .. }) => status,
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    /// Runs the autopilot and plant from `from` to `to` (ms), streaming `sp`
    /// every 20 ms if given.
    fn run(ap: &mut Autopilot, plant: &mut Plant, from: u32, to: u32, sp: Option<ToFc>) {
        let mut t = from;
        while t < to {
            if let Some(sp) = sp
                && t.is_multiple_of(20)
            {
                ap.handle(t, &frame(t as u16, sp), &plant.sensors());
            }
            let d = ap.tick(t, &plant.sensors());
            plant.step(&d, 0.01);
            t += 10;
        }
    }

    #[test]
    fn watchdog_hovers_then_lands_then_disarms() {
        let cfg = Config::MULTIROTOR;
        let mut ap = Autopilot::new(cfg);
        let mut plant = Plant::new(cfg.vehicle);
        assert_eq!(
            status(ap.handle(0, &frame(1, ToFc::Arm), &plant.sensors())),
            AckStatus::Accepted
        );
        run(&mut ap, &mut plant, 0, 3000, Some(vel(1.0, 0.0, 0.5, 0.0)));
        assert_eq!(ap.state(), FcState::Armed);
        assert!(
            plant.sensors().altitude > 1.0,
            "climbed to {}",
            plant.sensors().altitude
        );
        // The agent goes quiet at 3000 ms (last setpoint at 2980 ms).
        run(&mut ap, &mut plant, 3000, 3180, None);
        assert_eq!(ap.state(), FcState::Armed, "fired before the watchdog time");
        run(&mut ap, &mut plant, 3180, 3200, None);
        assert_eq!(
            ap.state(),
            FcState::FailsafeHover,
            "watchdog did not fire within 200 ms"
        );
        let t = ap.telemetry(3200, &plant.sensors());
        assert_ne!(t.faults & faults::WATCHDOG, 0);
        // Setpoints are refused while the failsafe is latched.
        assert_eq!(
            status(ap.handle(
                3210,
                &frame(4000, vel(1.0, 0.0, 0.0, 0.0)),
                &plant.sensors()
            )),
            AckStatus::Refused(Refusal::InFailsafe)
        );
        run(&mut ap, &mut plant, 3200, 5000, None);
        assert!(
            plant.sensors().velocity.iter().all(|v| v.abs() < 0.05),
            "not hovering: {:?}",
            plant.sensors().velocity
        );
        run(&mut ap, &mut plant, 5000, 5300, None);
        assert_eq!(ap.state(), FcState::FailsafeLand);
        run(&mut ap, &mut plant, 5300, 20_000, None);
        assert_eq!(ap.state(), FcState::Disarmed, "did not land and disarm");
        assert!(plant.sensors().on_ground);
        // Landed and disarmed, the latch holds: no arming until a disarm
        // acknowledges it; then arming works again.
        assert_eq!(
            status(ap.handle(20_000, &frame(4001, ToFc::Arm), &plant.sensors())),
            AckStatus::Refused(Refusal::InFailsafe)
        );
        ap.handle(20_000, &frame(4002, ToFc::Disarm), &plant.sensors());
        assert_eq!(
            ap.telemetry(20_000, &plant.sensors()).faults & faults::WATCHDOG,
            0
        );
        assert_eq!(
            status(ap.handle(20_010, &frame(4003, ToFc::Arm), &plant.sensors())),
            AckStatus::Accepted
        );
    }

    #[test]
    fn ground_robot_stops_and_stays_stopped() {
        let cfg = Config {
            vehicle: Vehicle::Ground,
            ..Config::MULTIROTOR
        };
        let mut ap = Autopilot::new(cfg);
        let mut plant = Plant::new(cfg.vehicle);
        ap.handle(0, &frame(1, ToFc::Arm), &plant.sensors());
        // A ground robot cannot strafe: the leftward part is clamped away.
        assert_eq!(
            status(ap.handle(0, &frame(2, vel(1.0, 1.0, 0.0, 0.0)), &plant.sensors())),
            AckStatus::Clamped
        );
        run(&mut ap, &mut plant, 0, 1000, Some(vel(1.0, 0.0, 0.0, 0.0)));
        assert!(plant.sensors().velocity[0] > 0.9);
        run(&mut ap, &mut plant, 1000, 3000, None);
        assert_eq!(ap.state(), FcState::FailsafeStop);
        assert!(plant.sensors().velocity[0].abs() < 0.01);
        assert_eq!(
            status(ap.handle(3000, &frame(3, ToFc::Arm), &plant.sensors())),
            AckStatus::Refused(Refusal::InFailsafe)
        );
        assert_eq!(
            status(ap.handle(
                3000,
                &frame(5000, ToFc::Setpoint(Setpoint::Motors([0.5; 4]))),
                &plant.sensors()
            )),
            AckStatus::Refused(Refusal::InFailsafe)
        );
    }

    #[test]
    fn a_late_control_step_does_not_fire_the_watchdog() {
        // The loop stalled: a setpoint is handled at 1000 ms, then the control
        // steps of 800..1000 ms run late. None of them may see the setpoint as old.
        let mut ap = Autopilot::new(Config::MULTIROTOR);
        let s = Plant::new(Vehicle::Multirotor).sensors();
        ap.handle(500, &frame(1, ToFc::Arm), &s);
        ap.handle(700, &frame(2, vel(1.0, 0.0, 0.0, 0.0)), &s);
        ap.handle(1000, &frame(3, vel(1.0, 0.0, 0.0, 0.0)), &s);
        for t in (800..1000).step_by(10) {
            ap.tick(t, &s);
        }
        assert_eq!(ap.state(), FcState::Armed);
        assert_eq!(ap.telemetry(990, &s).setpoint_age_ms, 0);
        ap.tick(1201, &s);
        assert_eq!(ap.state(), FcState::FailsafeHover);
    }

    #[test]
    fn a_reset_mcu_reports_it_and_stays_disarmed() {
        let mut ap = Autopilot::new(Config::MULTIROTOR);
        let s = Plant::new(Vehicle::Multirotor).sensors();
        ap.note_reset();
        assert_ne!(ap.telemetry(0, &s).faults & faults::MCU_RESET, 0);
        assert_eq!(
            status(ap.handle(0, &frame(1, ToFc::Arm), &s)),
            AckStatus::Refused(Refusal::InFailsafe)
        );
        assert_eq!(ap.state(), FcState::Disarmed);
        ap.handle(1, &frame(2, ToFc::Disarm), &s);
        assert_eq!(ap.telemetry(1, &s).faults & faults::MCU_RESET, 0);
        assert_eq!(
            status(ap.handle(2, &frame(3, ToFc::Arm), &s)),
            AckStatus::Accepted
        );
    }

    #[test]
    fn arming_checks_and_refusals() {
        let mut ap = Autopilot::new(Config::MULTIROTOR);
        let mut s = Plant::new(Vehicle::Multirotor).sensors();
        assert_eq!(
            status(ap.handle(0, &frame(1, vel(0.5, 0.0, 0.0, 0.0)), &s)),
            AckStatus::Refused(Refusal::NotArmed)
        );
        s.battery_mv = 10_000;
        s.imu_ok = false;
        assert_eq!(
            status(ap.handle(0, &frame(2, ToFc::Arm), &s)),
            AckStatus::Refused(Refusal::ArmingChecks(faults::BATTERY_LOW | faults::IMU))
        );
        assert_eq!(ap.state(), FcState::Disarmed);
        s.battery_mv = 12_000;
        s.imu_ok = true;
        assert_eq!(
            status(ap.handle(0, &frame(3, ToFc::Arm), &s)),
            AckStatus::Accepted
        );
        assert_eq!(
            status(ap.handle(1, &frame(4, vel(f32::NAN, 0.0, 0.0, 0.0)), &s)),
            AckStatus::Refused(Refusal::NotFinite)
        );
        assert_eq!(
            ap.handle(1, &frame(5, ToFc::Heartbeat { uptime_ms: 1 }), &s),
            None
        );
    }

    #[test]
    fn setpoints_are_clamped_and_rate_limited() {
        let cfg = Config::MULTIROTOR;
        let mut ap = Autopilot::new(cfg);
        let s = Plant::new(cfg.vehicle).sensors();
        ap.handle(0, &frame(1, ToFc::Arm), &s);
        assert_eq!(
            status(ap.handle(0, &frame(2, vel(10.0, -10.0, 5.0, 9.0)), &s)),
            AckStatus::Clamped
        );
        let mut last = [0.0f32; 3];
        for i in 0..200 {
            let Demand::Velocity { velocity, yaw_rate } = ap.tick(i * 10, &s) else {
                panic!("expected a velocity demand");
            };
            ap.handle(i * 10, &frame(3 + i as u16, vel(10.0, -10.0, 5.0, 9.0)), &s);
            for k in 0..3 {
                let step = (velocity[k] - last[k]).abs();
                assert!(
                    step <= cfg.limits.max_accel * 0.01 + 1e-6,
                    "step {step} at {i}"
                );
            }
            assert!(yaw_rate.abs() <= cfg.limits.max_yaw_rate);
            last = velocity;
        }
        assert_eq!(last, [3.0, -3.0, 1.0]);
        let t = ap.telemetry(2000, &s);
        assert_eq!(t.last_setpoint_seq, 3 + 199);
    }

    /// Arms on the ground and climbs for two seconds with setpoints numbered
    /// from 100 up; returns the next free sequence number.
    fn take_off(ap: &mut Autopilot, plant: &mut Plant) -> u16 {
        assert_eq!(
            status(ap.handle(0, &frame(99, ToFc::Arm), &plant.sensors())),
            AckStatus::Accepted
        );
        let mut seq = 100;
        for t in (0..2000).step_by(10) {
            if t % 20 == 0 {
                ap.handle(t, &frame(seq, vel(0.0, 0.0, 1.0, 0.0)), &plant.sensors());
                seq += 1;
            }
            let d = ap.tick(t, &plant.sensors());
            plant.step(&d, 0.01);
        }
        assert!(!plant.sensors().on_ground, "did not take off");
        assert_eq!(ap.state(), FcState::Armed);
        seq
    }

    #[test]
    fn disarm_refused_in_flight_without_emergency_stop() {
        let mut ap = Autopilot::new(Config::MULTIROTOR);
        let mut plant = Plant::new(Vehicle::Multirotor);
        let seq = take_off(&mut ap, &mut plant);
        let s = plant.sensors();
        assert_eq!(
            status(ap.handle(2000, &frame(seq, ToFc::Disarm), &s)),
            AckStatus::Refused(Refusal::Airborne)
        );
        assert_eq!(ap.state(), FcState::Armed, "disarmed in the air");
        // Nor can a disarm clear a failsafe in the air: the agent goes quiet.
        ap.tick(2300, &s);
        assert_eq!(ap.state(), FcState::FailsafeHover);
        assert_eq!(
            status(ap.handle(2310, &frame(seq + 1, ToFc::Disarm), &s)),
            AckStatus::Refused(Refusal::Airborne)
        );
        assert_eq!(ap.state(), FcState::FailsafeHover);
        assert_ne!(ap.telemetry(2310, &s).faults & faults::WATCHDOG, 0);
        // An emergency stop without its confirmation does nothing.
        assert_eq!(
            status(ap.handle(
                2320,
                &frame(seq + 2, ToFc::EmergencyStop { confirm: 0 }),
                &s
            )),
            AckStatus::Refused(Refusal::NotConfirmed)
        );
        assert_eq!(ap.state(), FcState::FailsafeHover);
        // The confirmed one stops the motors and stays on record.
        assert_eq!(
            status(ap.handle(
                2330,
                &frame(
                    seq + 3,
                    ToFc::EmergencyStop {
                        confirm: ESTOP_CONFIRM
                    }
                ),
                &s
            )),
            AckStatus::Accepted
        );
        assert_eq!(ap.tick(2340, &s), Demand::Off);
        assert_ne!(ap.telemetry(2340, &s).faults & faults::EMERGENCY_STOP, 0);
        // Still in the air (falling), a disarm does not clear the stop's record.
        assert_eq!(
            status(ap.handle(2345, &frame(seq + 5, ToFc::Disarm), &s)),
            AckStatus::Refused(Refusal::Airborne)
        );
        assert_ne!(ap.telemetry(2345, &s).faults & faults::EMERGENCY_STOP, 0);
        // Arming in the air is refused (and so it is after the stop, whatever the place).
        let mut airborne = Autopilot::new(Config::MULTIROTOR);
        assert_eq!(
            status(airborne.handle(0, &frame(1, ToFc::Arm), &s)),
            AckStatus::Refused(Refusal::ArmingChecks(faults::NOT_LANDED))
        );
        assert_eq!(
            status(ap.handle(2350, &frame(seq + 4, ToFc::Arm), &s)),
            AckStatus::Refused(Refusal::InFailsafe)
        );
    }

    #[test]
    fn low_battery_lands() {
        let cfg = Config::MULTIROTOR;
        let mut ap = Autopilot::new(cfg);
        let mut plant = Plant::new(cfg.vehicle);
        let mut seq = take_off(&mut ap, &mut plant);
        let low = |plant: &Plant| Sensors {
            battery_mv: cfg.land_battery_mv - 200,
            ..plant.sensors()
        };
        // The agent keeps streaming setpoints the whole time: the battery, not
        // the watchdog, ends the flight.
        let mut t = 2000;
        let mut landing_at = None;
        while t < 30_000 && ap.state() != FcState::Disarmed {
            if t % 20 == 0 {
                ap.handle(t, &frame(seq, vel(0.0, 0.0, 0.5, 0.0)), &low(&plant));
                seq += 1;
            }
            let d = ap.tick(t, &low(&plant));
            plant.step(&d, 0.01);
            if landing_at.is_none() && ap.state() == FcState::FailsafeLand {
                landing_at = Some(t);
            }
            t += 10;
        }
        let landing_at = landing_at.expect("never began to land");
        assert!(
            (2000 + cfg.battery_low_ms..2000 + cfg.battery_low_ms + 20).contains(&landing_at),
            "landing began at {landing_at} ms, not after {} ms of low battery",
            cfg.battery_low_ms
        );
        assert_eq!(ap.state(), FcState::Disarmed, "did not land and disarm");
        assert!(plant.sensors().on_ground);
        assert_ne!(
            ap.telemetry(t, &low(&plant)).faults & faults::BATTERY_FAILSAFE,
            0
        );
        // A dip shorter than the threshold's time does not land.
        let mut ap = Autopilot::new(cfg);
        let mut plant = Plant::new(cfg.vehicle);
        let mut seq = take_off(&mut ap, &mut plant);
        for t in (2000..4000).step_by(10) {
            let s = if t < 2000 + cfg.battery_low_ms - 100 {
                low(&plant)
            } else {
                plant.sensors()
            };
            if t % 20 == 0 {
                ap.handle(t, &frame(seq, vel(0.0, 0.0, 0.0, 0.0)), &s);
                seq += 1;
            }
            ap.tick(t, &s);
        }
        assert_eq!(ap.state(), FcState::Armed);
    }

    #[test]
    fn replayed_setpoint_is_rejected() {
        let mut ap = Autopilot::new(Config::MULTIROTOR);
        let s = Plant::new(Vehicle::Multirotor).sensors();
        ap.handle(0, &frame(10, ToFc::Arm), &s);
        // A setpoint queued before the arming command is stale.
        assert_eq!(
            status(ap.handle(1, &frame(9, vel(1.0, 0.0, 0.0, 0.0)), &s)),
            AckStatus::Refused(Refusal::Stale)
        );
        assert_eq!(
            status(ap.handle(2, &frame(11, vel(1.0, 0.0, 0.0, 0.0)), &s)),
            AckStatus::Accepted
        );
        // The same frame again (a duplicate) and an older one (a replay).
        for old in [11, 3] {
            assert_eq!(
                status(ap.handle(3, &frame(old, vel(2.0, 0.0, 0.0, 0.0)), &s)),
                AckStatus::Refused(Refusal::Stale)
            );
        }
        let t = ap.telemetry(3, &s);
        assert_eq!((t.stale_setpoints, t.last_setpoint_seq), (3, 11));
        // From here on only replays arrive: they do not feed the watchdog, which fires.
        for k in 0..30 {
            ap.handle(10 + k * 10, &frame(11, vel(1.0, 0.0, 0.0, 0.0)), &s);
            ap.tick(10 + k * 10, &s);
        }
        assert_eq!(
            ap.state(),
            FcState::FailsafeHover,
            "replays fed the watchdog"
        );
        // The counter wraps: 65535 → 0 is newer.
        assert!(newer(0, 65_535) && newer(5, 65_530) && !newer(65_530, 5));
    }
}
