//! Flight-controller firmware for a Cortex-M4F: the link's command logic
//! ([`fclink::Firmware`]: decoder, arming, limits, watchdog failsafe, telemetry)
//! on a UART, with a 1 ms SysTick clock.
//!
//! A hardware watchdog (the CMSDK APB watchdog) is fed only by the main loop,
//! once per pass: a loop that hangs stops feeding it, its first expiry raises
//! the NMI, which records the cause, and its second resets the MCU. A panic
//! records its cause and resets at once. Either way the firmware boots again
//! disarmed and reports the reset (`faults::MCU_RESET`) until a disarm on the
//! ground acknowledges it.
//!
//! Board: ARM MPS2 with the AN386 image (Cortex-M4F, 25 MHz), which
//! `qemu-system-arm -M mps2-an386` models; UART0 is its CMSDK APB UART. The
//! board has no IMU, so the vehicle is simulated: `fclink::plant` (a
//! kinematic stand-in) or, built with a learned policy (`FC_POLICY`, see
//! build.rs), the rigid-body quadrotor of `fclink::quad` flown by the learned
//! motor-level controller (`fclink::learned`); on a real flight controller
//! the sensor drivers replace the simulation.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use fclink::Firmware;
use fclink::ring::Ring;

/// Core clock of the AN386 image (Hz).
const SYSCLK_HZ: u32 = 25_000_000;
/// UART baud rate (QEMU ignores it; a board needs it to match the agent's).
const BAUD: u32 = 115_200;

include!(concat!(env!("OUT_DIR"), "/settings.rs"));
// `POLICY`: the learned policy compiled in (`FC_POLICY`, see build.rs), if any.
include!(concat!(env!("OUT_DIR"), "/policy.rs"));

/// The firmware: with the learned controller flying the rigid-body model when
/// a policy is compiled in (build.rs checked its shape; a table that still
/// failed would leave the cascaded stand-in flying), else the stand-in.
fn firmware() -> Firmware {
    if let Some((sizes, params)) = POLICY
        && let Ok(policy) = fclink::policy::Policy::new(sizes, params)
        && let Ok(fw) =
            Firmware::with_learned(SETTINGS, policy, fclink::quad::QuadParams::CRAZYFLIE)
    {
        return fw;
    }
    Firmware::new(SETTINGS)
}

/// Milliseconds since boot, advanced by the SysTick exception.
static MILLIS: AtomicU32 = AtomicU32::new(0);

/// A free-running count of core clock cycles since boot (wraps after 171 s
/// at 25 MHz; differences stay right across the wrap): the millisecond count
/// and the SysTick counter's progress through the current millisecond.
fn cycles() -> u32 {
    loop {
        let ms = MILLIS.load(Ordering::Relaxed);
        let left = cortex_m::peripheral::SYST::get_current();
        // A tick between the two reads: read again.
        if MILLIS.load(Ordering::Relaxed) == ms {
            return ms
                .wrapping_mul(SYSCLK_HZ / 1000)
                .wrapping_add(SYSCLK_HZ / 1000 - 1 - left);
        }
    }
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Why the MCU last reset, kept in RAM the startup code does not clear
/// (`.uninit`): [`CAUSE_WATCHDOG`], [`CAUSE_PANIC`], or anything else (power on).
#[unsafe(link_section = ".uninit.RESET_CAUSE")]
static mut RESET_CAUSE: core::mem::MaybeUninit<u32> = core::mem::MaybeUninit::uninit();
const CAUSE_WATCHDOG: u32 = 0x5744_4F47;
const CAUSE_PANIC: u32 = 0x5041_4E43;

fn set_cause(cause: u32) {
    // SAFETY: a plain 32-bit store to a static no reference points to; the
    // writers (NMI, panic) run when the main loop no longer does.
    unsafe {
        core::ptr::addr_of_mut!(RESET_CAUSE)
            .cast::<u32>()
            .write_volatile(cause)
    }
}

/// The cause left by the previous run, cleared for the next one.
fn take_cause() -> u32 {
    // SAFETY: as in `set_cause`; read once at boot before anything else runs.
    // Uninitialised RAM reads as some bit pattern, which is a valid u32.
    let c = unsafe {
        core::ptr::addr_of!(RESET_CAUSE)
            .cast::<u32>()
            .read_volatile()
    };
    set_cause(0);
    c
}

/// Read a peripheral register. Callers pass only the register constants of
/// [`Watchdog`] and [`Uart`].
fn mmio_read(reg: usize) -> u32 {
    // SAFETY: `reg` is a 32-bit aligned register of the AN386 memory map (the
    // watchdog's at 0x4000_8000, UART0's at 0x4000_4000); MMIO reads have no
    // memory-safety effects.
    unsafe { core::ptr::read_volatile(reg as *const u32) }
}

/// Write a peripheral register (as [`mmio_read`]); it changes only that
/// peripheral.
fn mmio_write(reg: usize, value: u32) {
    // SAFETY: as in `mmio_read`.
    unsafe { core::ptr::write_volatile(reg as *mut u32, value) }
}

/// The CMSDK APB watchdog (ARM DDI0479C), clocked at the core clock. It
/// counts down from LOAD; at zero it raises its interrupt (the NMI here) and
/// reloads; at zero again with the interrupt still pending it resets the MCU.
struct Watchdog;

impl Watchdog {
    const BASE: usize = 0x4000_8000;
    const LOAD: usize = Self::BASE;
    const CONTROL: usize = Self::BASE + 0x08;
    const INTCLR: usize = Self::BASE + 0x0C;
    const LOCK: usize = Self::BASE + 0xC00;
    const UNLOCK_KEY: u32 = 0x1ACC_E551;
    const INTEN: u32 = 1 << 0;
    const RESEN: u32 = 1 << 1;

    fn write(reg: usize, value: u32) {
        mmio_write(reg, value);
    }

    /// Start it: the MCU resets `timeout_ms` after the last feed (the NMI
    /// comes halfway).
    fn start(timeout_ms: u32) -> Self {
        Self::write(Self::LOCK, Self::UNLOCK_KEY);
        Self::write(Self::LOAD, SYSCLK_HZ / 1000 * timeout_ms / 2);
        Self::write(Self::CONTROL, Self::INTEN | Self::RESEN);
        Self::write(Self::LOCK, 0);
        Watchdog
    }

    /// A healthy pass of the main loop: reload the counter.
    fn feed(&mut self) {
        Self::write(Self::LOCK, Self::UNLOCK_KEY);
        Self::write(Self::INTCLR, 1);
        Self::write(Self::LOCK, 0);
    }
}

/// The watchdog's first expiry: the main loop stopped feeding it. Record why
/// and wait for the reset (motors: on a board, the PWM outputs are zeroed
/// here; this board has none).
// SAFETY (cortex-m-rt asks NMI handlers to be `unsafe fn`: an NMI can
// preempt critical sections): it touches only `RESET_CAUSE`, with a volatile
// store, and never returns into the code it interrupted.
#[exception]
unsafe fn NonMaskableInt() {
    set_cause(CAUSE_WATCHDOG);
    loop {
        cortex_m::asm::nop();
    }
}

/// A panic: record it, motors off (none on this board), reset now.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    set_cause(CAUSE_PANIC);
    cortex_m::peripheral::SCB::sys_reset()
}

// The whole watchdog time, from the last feed to the reset (ms): the build
// setting `FC_HW_WATCHDOG_MS` (default 1000). A pass of the main loop takes
// microseconds; under QEMU, run it with `-icount` so that the watchdog counts
// the guest's time, not the host's (`fc::qemu` does).
include!(concat!(env!("OUT_DIR"), "/hw_watchdog.rs"));

/// Bytes received by the UART's interrupt, for the main loop.
static RX: Ring<512> = Ring::new();
/// Bytes the main loop queued, for the UART's transmit interrupt.
static TX: Ring<2048> = Ring::new();

/// The CMSDK APB UART at UART0's address, interrupt driven: the receive
/// interrupt moves every byte into [`RX`] as it arrives (the receive register
/// holds one byte, which a loop busy for longer than a byte's time — 87 µs at
/// 115200 baud — would lose); the transmit interrupt feeds the transmitter
/// from [`TX`], so sending telemetry never blocks the loop.
struct Uart;

impl Uart {
    const BASE: usize = 0x4000_4000;
    const DATA: usize = Self::BASE;
    const STATE: usize = Self::BASE + 0x04;
    const CTRL: usize = Self::BASE + 0x08;
    const INTCLEAR: usize = Self::BASE + 0x0C;
    const BAUDDIV: usize = Self::BASE + 0x10;
    const TX_FULL: u32 = 1 << 0;
    const RX_FULL: u32 = 1 << 1;
    /// CTRL: transmitter, receiver, their interrupts.
    const ENABLE: u32 = 0b1111;
    const TX_INT: u32 = 1 << 0;
    const RX_INT: u32 = 1 << 1;

    fn read(reg: usize) -> u32 {
        mmio_read(reg)
    }

    fn write(reg: usize, value: u32) {
        mmio_write(reg, value);
    }

    fn init() -> Self {
        Self::write(Self::BAUDDIV, SYSCLK_HZ / BAUD);
        Self::write(Self::CTRL, Self::ENABLE);
        // SAFETY: unmasking is unsafe only because it may break a critical
        // section relying on the mask; none relies on these two lines, and
        // their handlers touch nothing but the UART and the two queues.
        unsafe {
            cortex_m::peripheral::NVIC::unmask(Irq::Uart0Rx);
            cortex_m::peripheral::NVIC::unmask(Irq::Uart0Tx);
        }
        Uart
    }

    /// Queue a whole frame for sending, or none of it when it does not fit
    /// (a frame cut short would only cost the receiver a resync); then make
    /// sure the transmit interrupt runs.
    fn send(&mut self, bytes: &[u8]) {
        if TX.free() >= bytes.len() {
            for &b in bytes {
                TX.push(b);
            }
        } else {
            TX.count_dropped(bytes.len());
        }
        cortex_m::peripheral::NVIC::pend(Irq::Uart0Tx);
    }
}

/// The UART0 interrupt lines of the AN386 image (QEMU's mps2: receive 0,
/// transmit 1).
#[derive(Clone, Copy)]
enum Irq {
    Uart0Rx = 0,
    Uart0Tx = 1,
}

// SAFETY: the numbers are the board's interrupt lines for UART0, in range.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self as u16
    }
}

// Each handler clears its interrupt first, then empties (fills) the register:
// a byte that arrives after the last look raises the interrupt again. Cleared
// last, that byte's interrupt would be lost with it, and the receiver would
// stall with a byte it never reads.
extern "C" fn uart0_rx() {
    Uart::write(Uart::INTCLEAR, Uart::RX_INT);
    while Uart::read(Uart::STATE) & Uart::RX_FULL != 0 {
        // A full queue counts the byte as dropped (the decoder then resyncs).
        RX.push(Uart::read(Uart::DATA) as u8);
    }
}

extern "C" fn uart0_tx() {
    Uart::write(Uart::INTCLEAR, Uart::TX_INT);
    while Uart::read(Uart::STATE) & Uart::TX_FULL == 0 {
        match TX.pop() {
            Some(b) => Uart::write(Uart::DATA, u32::from(b)),
            None => break,
        }
    }
}

/// The device's interrupt vectors (cortex-m-rt's `device` feature: there is
/// no peripheral-access crate for this board), lines 0 and 1.
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [extern "C" fn(); 2] = [uart0_rx, uart0_tx];

#[entry]
fn main() -> ! {
    // `take` succeeds exactly once, here at boot.
    let Some(mut core) = cortex_m::Peripherals::take() else {
        loop {
            cortex_m::asm::wfi();
        }
    };
    let mut uart = Uart::init();
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(SYSCLK_HZ / 1000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();

    let mut fw = firmware();
    fw.set_cycle_clock(cycles);
    let cause = take_cause();
    if cause == CAUSE_WATCHDOG || cause == CAUSE_PANIC {
        fw.note_reset();
    }
    let mut watchdog = Watchdog::start(WATCHDOG_MS);
    // A lone delimiter first: a receiver that saw boot noise starts clean.
    uart.send(&[0]);
    let mut rx = [0u8; 64];
    #[cfg(feature = "test-hooks")]
    let mut hook = hooks::Hook::default();
    // The loop is healthy when it runs *and* its clock does: a SysTick that
    // stopped (its interrupt lost, its counter disabled) freezes `now`, and
    // with it every timeout of the firmware — the setpoint watchdog's
    // failsafe included. So the watchdog is fed at most once per tick: a
    // frozen clock starves it and the MCU resets.
    let mut fed_at = MILLIS.load(Ordering::Relaxed).wrapping_sub(1);
    loop {
        let now = MILLIS.load(Ordering::Relaxed);
        if now != fed_at {
            watchdog.feed();
            fed_at = now;
        }
        let mut n = 0;
        while n < rx.len() {
            match RX.pop() {
                Some(b) => {
                    rx[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        #[cfg(feature = "test-hooks")]
        hook.scan(&rx[..n]);
        if n > 0 {
            fw.on_bytes(now, &rx[..n], &mut |bytes| uart.send(bytes));
        }
        fw.poll(now, &mut |bytes| uart.send(bytes));
    }
}

/// Faults a test can inject (`--features test-hooks`, never in a flight
/// build): the bytes `HANG!` on the UART make the main loop hang, `PANIC` make
/// it panic, `TICK!` stop the SysTick clock (the loop runs on, its time
/// frozen), so the tests see the watchdog and the panic handler reset it.
#[cfg(feature = "test-hooks")]
mod hooks {
    #[derive(Default)]
    pub struct Hook {
        last: [u8; 5],
    }

    impl Hook {
        pub fn scan(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.last.copy_within(1.., 0);
                self.last[4] = b;
                match &self.last {
                    b"HANG!" => loop {
                        cortex_m::asm::nop();
                    },
                    b"PANIC" => panic!("injected by a test"),
                    // SAFETY: SYST is the core's SysTick; clearing its
                    // enable bit only stops the millisecond clock.
                    b"TICK!" => unsafe {
                        let syst = &*cortex_m::peripheral::SYST::PTR;
                        syst.csr.modify(|c| c & !1);
                    },
                    _ => {}
                }
            }
        }
    }
}
