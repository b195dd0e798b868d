//! Flight-controller firmware for a Cortex-M4F: the link's command logic
//! ([`fclink::Firmware`]: decoder, arming, limits, watchdog failsafe, telemetry)
//! on a UART, with a 1 ms SysTick clock.
//!
//! Board: ARM MPS2 with the AN386 image (Cortex-M4F, 25 MHz), which
//! `qemu-system-arm -M mps2-an386` models; UART0 is its CMSDK APB UART. The
//! board has no IMU, so the vehicle is `fclink::plant` (a kinematic stand-in);
//! on a real flight controller the sensor drivers replace it.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use fclink::Firmware;
use panic_halt as _;

/// Core clock of the AN386 image (Hz).
const SYSCLK_HZ: u32 = 25_000_000;
/// UART baud rate (QEMU ignores it; a board needs it to match the agent's).
const BAUD: u32 = 115_200;

include!(concat!(env!("OUT_DIR"), "/settings.rs"));

/// Milliseconds since boot, advanced by the SysTick exception.
static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// The CMSDK APB UART at UART0's address.
struct Uart;

impl Uart {
    const BASE: usize = 0x4000_4000;
    const DATA: usize = Self::BASE;
    const STATE: usize = Self::BASE + 0x04;
    const CTRL: usize = Self::BASE + 0x08;
    const BAUDDIV: usize = Self::BASE + 0x10;
    const TX_FULL: u32 = 1 << 0;
    const RX_FULL: u32 = 1 << 1;

    fn read(reg: usize) -> u32 {
        // SAFETY: `reg` is one of the constants above, a 32-bit aligned register
        // of UART0 in the AN386 memory map; MMIO reads have no memory-safety
        // effects and only the main loop touches this UART.
        unsafe { core::ptr::read_volatile(reg as *const u32) }
    }

    fn write(reg: usize, value: u32) {
        // SAFETY: as in `read`; writing these registers changes only the UART.
        unsafe { core::ptr::write_volatile(reg as *mut u32, value) }
    }

    fn init() -> Self {
        Self::write(Self::BAUDDIV, SYSCLK_HZ / BAUD);
        Self::write(Self::CTRL, 0b11); // TX and RX enabled, no interrupts
        Uart
    }

    fn try_read(&mut self) -> Option<u8> {
        (Self::read(Self::STATE) & Self::RX_FULL != 0).then(|| Self::read(Self::DATA) as u8)
    }

    fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            while Self::read(Self::STATE) & Self::TX_FULL != 0 {}
            Self::write(Self::DATA, b as u32);
        }
    }
}

#[entry]
fn main() -> ! {
    let mut uart = Uart::init();
    // `take` succeeds exactly once, here at boot.
    let Some(mut core) = cortex_m::Peripherals::take() else {
        loop {
            cortex_m::asm::wfi();
        }
    };
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(SYSCLK_HZ / 1000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();

    let mut fw = Firmware::new(SETTINGS);
    // A lone delimiter first: a receiver that saw boot noise starts clean.
    uart.write_all(&[0]);
    let mut rx = [0u8; 64];
    loop {
        let now = MILLIS.load(Ordering::Relaxed);
        let mut n = 0;
        while n < rx.len() {
            match uart.try_read() {
                Some(b) => {
                    rx[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            fw.on_bytes(now, &rx[..n], &mut |bytes| uart.write_all(bytes));
        }
        fw.poll(now, &mut |bytes| uart.write_all(bytes));
    }
}
