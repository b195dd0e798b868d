//! The flight-controller firmware built for the host, behind a
//! pseudo-terminal: the same [`fclink::Firmware`] the MCU runs, so the agent's
//! driver can be exercised (and the robot graph flown against the twin) with
//! no board and no QEMU.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fclink::{Config, FcState, Firmware};
use serialport::{SerialPort, TTYPort};

/// A running host build of the firmware.
pub struct HostFc {
    device: PathBuf,
    link: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<FcState>>,
    thread: Option<JoinHandle<()>>,
}

impl HostFc {
    /// Opens a pseudo-terminal pair and runs the firmware on its master side.
    /// The agent opens [`HostFc::device`]; with `link`, a symlink at that path
    /// points to it (replaced if present), so the device has a stable name.
    pub fn start(cfg: Config, link: Option<&Path>) -> std::io::Result<HostFc> {
        Self::serve(link, move || Firmware::new(cfg))
    }

    /// As [`HostFc::start`], the vehicle flown by the learned controller
    /// (`policy`, read with [`fclink::policy::parse_table`] from a weight
    /// table `agent learn-to-fly` wrote) on the rigid-body model of
    /// `vehicle`.
    pub fn start_learned(
        cfg: Config,
        link: Option<&Path>,
        policy: fclink::policy::Policy<'static>,
        vehicle: fclink::quad::QuadParams,
    ) -> std::io::Result<HostFc> {
        let fw = Firmware::with_learned(cfg, policy, vehicle).map_err(|e| {
            std::io::Error::new(
                ErrorKind::InvalidInput,
                format!("the learned controller cannot fly: {e:?}"),
            )
        })?;
        Self::serve(link, move || fw)
    }

    fn serve(
        link: Option<&Path>,
        firmware: impl FnOnce() -> Firmware + Send + 'static,
    ) -> std::io::Result<HostFc> {
        let (mut master, slave) = TTYPort::pair().map_err(std::io::Error::other)?;
        master
            .set_timeout(Duration::from_millis(1))
            .map_err(std::io::Error::other)?;
        let slave_path = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| std::io::Error::other("pseudo-terminal without a name"))?;
        let device = match link {
            Some(l) => {
                // Only a link (a previous run's) is replaced: a file or
                // folder at that path is someone's data, never deleted.
                match std::fs::symlink_metadata(l) {
                    Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(l)?,
                    Ok(_) => {
                        return Err(std::io::Error::new(
                            ErrorKind::AlreadyExists,
                            format!(
                                "{} exists and is not a link: pick another --link path",
                                l.display()
                            ),
                        ));
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                std::os::unix::fs::symlink(&slave_path, l)?;
                l.to_path_buf()
            }
            None => slave_path,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(FcState::Disarmed));
        let thread = {
            let (stop, state) = (stop.clone(), state.clone());
            std::thread::Builder::new()
                .name("host-fc".into())
                .spawn(move || {
                    // Holding the slave open keeps the master readable while no agent
                    // is attached (a pty master reads EIO once the last slave closes).
                    let _slave = slave;
                    let started = Instant::now();
                    let mut fw = firmware();
                    let mut buf = [0u8; 256];
                    let mut out: Vec<u8> = Vec::with_capacity(1024);
                    while !stop.load(Ordering::Relaxed) {
                        let n = match master.read(&mut buf) {
                            Ok(n) => n,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::TimedOut | ErrorKind::Interrupted
                                ) =>
                            {
                                0
                            }
                            Err(e) => {
                                tracing::error!("host flight controller: pty read failed: {e}");
                                std::thread::sleep(Duration::from_millis(10));
                                0
                            }
                        };
                        let now = started.elapsed().as_millis() as u32;
                        fw.on_bytes(now, &buf[..n], &mut |b| out.extend_from_slice(b));
                        fw.poll(now, &mut |b| out.extend_from_slice(b));
                        if !out.is_empty() {
                            // Like a UART with nobody listening: what does not fit is lost.
                            if let Err(e) = master.write_all(&out)
                                && e.kind() != ErrorKind::TimedOut
                            {
                                tracing::warn!("host flight controller: pty write failed: {e}");
                            }
                            out.clear();
                        }
                        *state.lock().unwrap_or_else(|p| p.into_inner()) = fw.autopilot().state();
                    }
                })?
        };
        Ok(HostFc {
            device,
            link: link.map(Path::to_path_buf),
            stop,
            state,
            thread: Some(thread),
        })
    }

    /// The serial device the agent opens.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// The autopilot's state now.
    pub fn state(&self) -> FcState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the firmware; the device vanishes (and its symlink with it).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Our link only: not whatever replaced it at that path meanwhile.
        if let Some(l) = self.link.take()
            && std::fs::symlink_metadata(&l).is_ok_and(|m| m.file_type().is_symlink())
        {
            let _ = std::fs::remove_file(l);
        }
    }
}

impl Drop for HostFc {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--link PATH` replaces a previous run's link, and on stop removes its
    /// own, but never deletes a file that happens to be at PATH.
    #[test]
    fn fc_host_never_deletes_a_file_at_its_link_path() {
        let dir = std::env::temp_dir().join(format!("hostfc-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fc.tty");
        std::fs::write(&path, b"flight log").unwrap();
        let e = HostFc::start(Config::default(), Some(&path))
            .err()
            .expect("started over a file");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"flight log");
        // A stale link of a previous run is replaced; stop removes the new one.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), &path).unwrap();
        let fc = HostFc::start(Config::default(), Some(&path)).unwrap();
        assert!(std::fs::read_link(&path).unwrap().starts_with("/dev/pts"));
        fc.stop();
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "link left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
