//! The whole flight-controller side of the link as one object: bytes in,
//! bytes out, on a millisecond clock. The Cortex-M build and the host build
//! are thin shells around it that move bytes between a UART (or a
//! pseudo-terminal) and [`Firmware`].

use crate::autopilot::{Autopilot, Config, Sensors};
use crate::frame::{self, Decoder, MAX_WIRE};
use crate::learned::LearnedFlight;
use crate::msg::{FromFc, ToFc};
use crate::plant::Plant;
use crate::policy::{Policy, PolicyError};
use crate::quad::QuadParams;

/// The simulated vehicle and what flies it.
// One value for the firmware's life, and the MCU has no allocator to box the
// larger variant in.
#[allow(clippy::large_enum_variant)]
enum Sim {
    /// The kinematic stand-in, tracking demands directly.
    Kinematic(Plant),
    /// The rigid-body quadrotor flown by a learned motor-level policy.
    Learned(LearnedFlight<'static>),
}

impl Sim {
    fn sensors(&self) -> Sensors {
        match self {
            Sim::Kinematic(p) => p.sensors(),
            Sim::Learned(l) => l.sensors(),
        }
    }

    fn step(&mut self, demand: &crate::autopilot::Demand, dt: f32) {
        match self {
            Sim::Kinematic(p) => p.step(demand, dt),
            Sim::Learned(l) => l.step(demand),
        }
    }
}

/// Decoder, autopilot and simulated vehicle, scheduled on one clock.
pub struct Firmware {
    decoder: Decoder,
    autopilot: Autopilot,
    plant: Sim,
    tx_seq: u16,
    next_control_ms: u32,
    next_telemetry_ms: u32,
}

impl Firmware {
    /// Boots with these settings at time 0.
    pub fn new(cfg: Config) -> Self {
        Self {
            decoder: Decoder::new(),
            autopilot: Autopilot::new(cfg),
            plant: Sim::Kinematic(Plant::new(cfg.vehicle)),
            tx_seq: 0,
            next_control_ms: 0,
            next_telemetry_ms: 0,
        }
    }

    /// Boots with the learned controller: `policy` (see
    /// [`crate::learned`]) flies the rigid-body model of `vehicle` at the
    /// control rate of `cfg`, which must be a multirotor's.
    pub fn with_learned(
        cfg: Config,
        policy: Policy<'static>,
        vehicle: QuadParams,
    ) -> Result<Self, PolicyError> {
        if cfg.vehicle != crate::autopilot::Vehicle::Multirotor || cfg.control_period_ms == 0 {
            return Err(PolicyError::Vehicle);
        }
        let dt = cfg.control_period_ms as f32 * 1e-3;
        let mut fw = Self::new(cfg);
        fw.plant = Sim::Learned(LearnedFlight::new(policy, vehicle, dt)?);
        Ok(fw)
    }

    /// Time the learned controller's steps on `clock`, the MCU's free-running
    /// cycle counter; telemetry reports the last step's cycles.
    pub fn set_cycle_clock(&mut self, clock: fn() -> u32) {
        if let Sim::Learned(l) = &mut self.plant {
            l.set_clock(clock);
        }
    }

    /// Whether the learned controller flies the vehicle.
    pub fn is_learned(&self) -> bool {
        matches!(self.plant, Sim::Learned(_))
    }

    /// The MCU was reset by its watchdog or a panic (see
    /// [`Autopilot::note_reset`]).
    pub fn note_reset(&mut self) {
        self.autopilot.note_reset();
    }

    /// The command logic (state, settings).
    pub fn autopilot(&self) -> &Autopilot {
        &self.autopilot
    }

    /// What the sensors read now.
    pub fn sensors(&self) -> Sensors {
        self.plant.sensors()
    }

    fn send(&mut self, msg: &FromFc, tx: &mut impl FnMut(&[u8])) {
        let mut buf = [0u8; MAX_WIRE];
        // Every FromFc fits in a frame (checked by a test), so this cannot fail.
        if let Ok(bytes) = frame::encode(self.tx_seq, msg, &mut buf) {
            tx(bytes);
            self.tx_seq = self.tx_seq.wrapping_add(1);
        }
    }

    /// Feeds bytes received at `now_ms`; acknowledgements go out through `tx`.
    pub fn on_bytes(&mut self, now_ms: u32, bytes: &[u8], tx: &mut impl FnMut(&[u8])) {
        for &b in bytes {
            match self.decoder.push::<ToFc>(b) {
                None => {}
                Some(Ok(f)) => {
                    let sensors = self.plant.sensors();
                    if let Some(ack) = self.autopilot.handle(now_ms, &f, &sensors) {
                        self.send(&ack, tx);
                    }
                }
                Some(Err(_)) => self.autopilot.note_rx_error(now_ms),
            }
        }
    }

    /// Runs the control steps and telemetry due by `now_ms`.
    pub fn poll(&mut self, now_ms: u32, tx: &mut impl FnMut(&[u8])) {
        let cfg = *self.autopilot.config();
        let mut steps = 0;
        while now_ms.wrapping_sub(self.next_control_ms) as i32 >= 0 {
            let sensors = self.plant.sensors();
            let demand = self.autopilot.tick(self.next_control_ms, &sensors);
            self.plant
                .step(&demand, cfg.control_period_ms as f32 * 1e-3);
            self.next_control_ms = self.next_control_ms.wrapping_add(cfg.control_period_ms);
            steps += 1;
            if steps > 100 {
                // Far behind (a paused debugger, a stalled host): skip ahead
                // rather than replaying seconds of control steps.
                self.next_control_ms = now_ms.wrapping_add(cfg.control_period_ms);
                break;
            }
        }
        if now_ms.wrapping_sub(self.next_telemetry_ms) as i32 >= 0 {
            let mut t = self.autopilot.telemetry(now_ms, &self.plant.sensors());
            if let Sim::Learned(l) = &self.plant {
                t.policy_cycles = l.policy_cycles();
            }
            self.send(&FromFc::Telemetry(t), tx);
            self.next_telemetry_ms = now_ms.wrapping_add(cfg.telemetry_period_ms);
        }
    }
}
