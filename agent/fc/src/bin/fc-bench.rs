//! `fc-bench`: latency of the flight-controller link, setpoint written →
//! its acknowledgement read back, over a serial device: the host build of the
//! firmware on a pty (default), the real firmware under QEMU (`--qemu ELF`),
//! or a board (`--device PATH`). With `--policy-cost`, instead: the cost of
//! the learned controller's step on the MCU, which the firmware times on its
//! own clock (a firmware built with `FC_POLICY`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fc::{HostFc, Link, LinkConfig};
use fclink::{AckStatus, Config, Setpoint, ToFc};

/// Measures setpoint → acknowledgement latency on the flight-controller link.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Serial device of a flight controller running the firmware.
    #[arg(long, conflicts_with = "qemu")]
    device: Option<PathBuf>,
    /// Boot this firmware image (ELF) in qemu-system-arm and measure through its UART.
    #[arg(long)]
    qemu: Option<PathBuf>,
    /// Setpoints to send.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Setpoint rate (Hz).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Baud rate for --device.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Measure the learned controller's cost per step instead (needs a
    /// firmware built with FC_POLICY): under --qemu, QEMU runs one virtual
    /// nanosecond per instruction, so the firmware's clock counts
    /// instructions; on a --device, its core clock cycles.
    #[arg(long)]
    policy_cost: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.count == 0 || !args.rate.is_finite() || args.rate <= 0.0 {
        bail!("--count and --rate must be positive");
    }
    if args.policy_cost {
        return policy_cost(&args);
    }
    let mut _host = None;
    let mut _qemu = None;
    let (device, what) = if let Some(image) = &args.qemu {
        let q = fc::qemu::Qemu::spawn(image)?;
        let d = q.device().to_path_buf();
        _qemu = Some(q);
        (
            d,
            format!(
                "firmware {} under qemu-system-arm (mps2-an386)",
                image.display()
            ),
        )
    } else if let Some(d) = &args.device {
        (d.clone(), format!("device {}", d.display()))
    } else {
        let h =
            HostFc::start(Config::MULTIROTOR, None).context("cannot start the host firmware")?;
        let d = h.device().to_path_buf();
        _host = Some(h);
        (d, "host build of the firmware on a pty".to_string())
    };
    let link = Link::open(LinkConfig {
        baud: args.baud,
        ..LinkConfig::new(&device)
    })?;
    // Let the firmware boot and the line settle.
    std::thread::sleep(Duration::from_millis(300));
    let arm = link.command(ToFc::Arm, Duration::from_secs(2))?;
    if arm != AckStatus::Accepted {
        bail!("flight controller refused to arm: {arm:?}");
    }
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut latencies = Vec::with_capacity(args.count);
    let mut lost = 0usize;
    let started = Instant::now();
    for i in 0..args.count {
        let sent = Instant::now();
        let seq = link.send(ToFc::Setpoint(Setpoint::Velocity {
            forward: 0.5,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.0,
        }));
        match link.wait_ack(seq, sent, Duration::from_millis(100)) {
            Some((_, at)) => latencies.push((at - sent).as_secs_f64() * 1e3),
            None => lost += 1,
        }
        if (i + 1) % 500 == 0 {
            eprintln!("fc-bench: {}/{} setpoints", i + 1, args.count);
        }
        let next = started + period * (i as u32 + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let _ = link.command(ToFc::Disarm, Duration::from_secs(1));
    if latencies.is_empty() {
        bail!("no setpoint was acknowledged");
    }
    latencies.sort_by(f64::total_cmp);
    let s = link.stats();
    println!("link: {what}");
    println!(
        "setpoint -> ack latency over {} setpoints at {} Hz: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; unacknowledged {lost}",
        args.count,
        args.rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "frames: {} received, {} sent, {} CRC errors, {} other errors, {} dropped bytes",
        s.frames_rx, s.frames_tx, s.crc_errors, s.other_errors, s.dropped_bytes
    );
    Ok(())
}

/// Core clock of the firmware's board (the AN386 image's 25 MHz).
const MCU_HZ: f64 = 25e6;

/// Arm, climb on velocity setpoints, and read the learned controller's step
/// cost from telemetry (`policy_cycles`) over `--count` reports.
fn policy_cost(args: &Args) -> anyhow::Result<()> {
    let (mut _qemu, device, per_cycle) = match (&args.qemu, &args.device) {
        (Some(image), _) => {
            let q = fc::qemu::Qemu::spawn_counting(image)?;
            let d = q.device().to_path_buf();
            // shift=0: one instruction per virtual ns, 40 per 25 MHz cycle.
            (Some(q), d, Some(1e9 / MCU_HZ))
        }
        (None, Some(d)) => (None, d.clone(), None),
        (None, None) => bail!("--policy-cost needs --qemu ELF or --device PATH (the MCU's cost)"),
    };
    let link = Link::open(LinkConfig {
        baud: args.baud,
        ..LinkConfig::new(&device)
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let arm = link.command(ToFc::Arm, Duration::from_secs(30))?;
    if arm != AckStatus::Accepted {
        bail!("flight controller refused to arm: {arm:?}");
    }
    let climb = ToFc::Setpoint(Setpoint::Velocity {
        forward: 0.0,
        left: 0.0,
        up: 0.3,
        yaw_rate: 0.0,
    });
    let mut cost = Vec::with_capacity(args.count);
    let mut last_uptime = None;
    let started = Instant::now();
    while cost.len() < args.count {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{} of {} reports in 10 minutes", cost.len(), args.count);
        }
        link.send(climb);
        std::thread::sleep(Duration::from_millis(10));
        if let Some((t, _)) = link.latest_telemetry()
            && last_uptime != Some(t.uptime_ms)
        {
            last_uptime = Some(t.uptime_ms);
            if t.policy_cycles > 0 {
                cost.push(f64::from(t.policy_cycles));
            }
        }
        if started.elapsed() > Duration::from_secs(30) && cost.is_empty() {
            bail!(
                "no learned-controller cost in telemetry after 30 s: is the firmware built with FC_POLICY?"
            );
        }
    }
    let _ = link.command(ToFc::Disarm, Duration::from_secs(1));
    cost.sort_by(f64::total_cmp);
    let (p50, max) = (percentile(&cost, 0.5), cost[cost.len() - 1]);
    match per_cycle {
        Some(k) => println!(
            "learned controller step (observation + forward pass) on the firmware under QEMU, {} steps: \
             p50 {:.0} instructions, max {:.0} (counted: -icount shift=0, the firmware's 25 MHz clock \
             reads one cycle per {k:.0} instructions); at one instruction per cycle that is {:.0} us of a \
             25 MHz Cortex-M4F's 10 ms control period",
            cost.len(),
            p50 * k,
            max * k,
            p50 * k / MCU_HZ * 1e6
        ),
        None => println!(
            "learned controller step (observation + forward pass) on {}: {} steps, p50 {p50:.0} cycles, max {max:.0} (the MCU's clock)",
            device.display(),
            cost.len()
        ),
    }
    Ok(())
}
