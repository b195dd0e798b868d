//! The MCU firmware under QEMU: `qemu-system-arm -M mps2-an386` (a
//! Cortex-M4F board QEMU models) with its UART0 on a pseudo-terminal that the
//! agent's driver opens like any serial device.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running QEMU with the firmware.
pub struct Qemu {
    child: Child,
    device: PathBuf,
}

/// Why QEMU could not be started.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The firmware image is missing.
    #[error("firmware image {0} not found (build it: cd firmware/mcu && cargo build --release)")]
    NoImage(PathBuf),
    /// qemu-system-arm is not installed or failed to start.
    #[error(
        "cannot start qemu-system-arm ({0}); install it with `apt-get install -y qemu-system-arm`"
    )]
    Spawn(String),
    /// QEMU did not say which pseudo-terminal it opened.
    #[error("qemu-system-arm did not report its serial pty within {0:?}: {1}")]
    NoPty(Duration, String),
}

impl Qemu {
    /// Boots `image` (the firmware ELF) and waits for QEMU to name the pty of UART0.
    pub fn spawn(image: &Path) -> Result<Qemu, QemuError> {
        // Virtual time from the instructions the guest executes (adapted to
        // track real time on average): a host too busy to run QEMU for a
        // while stalls the guest's clocks with it, so neither the firmware's
        // setpoint watchdog nor its hardware watchdog fires because of the
        // host's load (seen in CI without it: a hardware-watchdog reset
        // mid-test).
        Self::spawn_icount(image, "shift=auto")
    }

    /// Boots `image` with one virtual nanosecond per instruction (`-icount
    /// shift=0`): the firmware's clocks then count instructions (its 25 MHz
    /// SysTick one cycle per 40), which makes a cost measured on them an
    /// instruction count. The guest's clock runs slower than real time.
    pub fn spawn_counting(image: &Path) -> Result<Qemu, QemuError> {
        Self::spawn_icount(image, "shift=0")
    }

    fn spawn_icount(image: &Path, icount: &str) -> Result<Qemu, QemuError> {
        if !image.is_file() {
            return Err(QemuError::NoImage(image.to_path_buf()));
        }
        let mut child = Command::new("qemu-system-arm")
            .args([
                "-M",
                "mps2-an386",
                "-icount",
                icount,
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "pty",
                "-kernel",
            ])
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| QemuError::Spawn(e.to_string()))?;
        let timeout = Duration::from_secs(10);
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(QemuError::Spawn("no stdout pipe".into()));
        };
        // QEMU prints (on stdout) "char device redirected to /dev/pts/N (label serial0)".
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("/dev/pts/") {
                    let path: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(Ok(PathBuf::from(path)));
                } else {
                    seen.push_str(&line);
                    seen.push('\n');
                    tracing::debug!("qemu: {line}");
                }
            }
            let _ = tx.send(Err(seen));
        });
        let started = Instant::now();
        match rx.recv_timeout(timeout) {
            Ok(Ok(device)) => {
                tracing::info!(
                    "firmware booted in QEMU in {:?}; UART0 at {}",
                    started.elapsed(),
                    device.display()
                );
                Ok(Qemu { child, device })
            }
            Ok(Err(said)) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(QemuError::NoPty(timeout, said))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(QemuError::NoPty(timeout, "nothing".into()))
            }
        }
    }

    /// The pseudo-terminal of the firmware's UART.
    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
