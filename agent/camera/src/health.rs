//! A camera's health: frame rate, skew between the eyes, dropped frames and
//! latency (receive time minus capture time).

use std::collections::VecDeque;

/// A snapshot of a source's health.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Health {
    /// Pairs delivered.
    pub pairs: u64,
    /// Pairs per second over the last second of capture times.
    pub fps: f64,
    /// Skew of the last pair (right minus left, ms).
    pub skew_ms: f64,
    /// Largest skew seen (absolute, ms).
    pub max_skew_ms: f64,
    /// Frames dropped: unpaired, arriving while the consumer was late,
    /// skipped for a newer pair, or unreadable.
    pub dropped: u64,
    /// Frames that could not be read (wrong format).
    pub unreadable: u64,
    /// Hand-over time minus capture time of the last pair (ms): the
    /// camera's, the pipeline's and the queue's delay.
    pub latency_ms: f64,
}

/// Accumulates [`Health`].
#[derive(Debug, Default)]
pub struct HealthMeter {
    h: Health,
    recent: VecDeque<u64>,
}

impl HealthMeter {
    /// Records one pair.
    pub fn record(&mut self, stamp_ns: u64, recv_ns: u64, skew_ns: i64) {
        self.h.pairs += 1;
        self.h.skew_ms = skew_ns as f64 * 1e-6;
        self.h.max_skew_ms = self.h.max_skew_ms.max(self.h.skew_ms.abs());
        self.h.latency_ms = (recv_ns as f64 - stamp_ns as f64) * 1e-6;
        self.recent.push_back(stamp_ns);
        while self
            .recent
            .front()
            .is_some_and(|t| t + 1_000_000_000 < stamp_ns)
        {
            self.recent.pop_front();
        }
        self.h.fps = match (self.recent.front(), self.recent.back()) {
            (Some(a), Some(b)) if b > a => (self.recent.len() - 1) as f64 / ((b - a) as f64 * 1e-9),
            _ => 0.0,
        };
    }

    /// The snapshot.
    pub fn health(&self) -> Health {
        self.h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_latency_come_from_the_stamps() {
        let mut m = HealthMeter::default();
        for k in 0..31u64 {
            let t = k * 33_333_333;
            m.record(t, t + 12_000_000, -2_000_000);
        }
        let h = m.health();
        assert!((h.fps - 30.0).abs() < 0.1, "{}", h.fps);
        assert!((h.latency_ms - 12.0).abs() < 1e-6 && (h.max_skew_ms - 2.0).abs() < 1e-6);
        assert_eq!(h.pairs, 31);
    }
}
