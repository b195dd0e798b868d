//! A byte queue between one interrupt handler and the main loop: the UART's
//! receive interrupt fills one as bytes arrive (so none is lost while the
//! main loop is busy, e.g. sending telemetry), the main loop fills another
//! that the transmit interrupt drains (so sending never blocks the loop).
//!
//! Single producer, single consumer, lock-free and without `unsafe`: every
//! slot is an atomic byte; the producer writes the slot, then publishes it by
//! advancing `tail` (release); the consumer reads `tail` (acquire), then the
//! slot, then frees it by advancing `head` (release). On a single core the
//! handler and the loop interleave only at instruction boundaries, which the
//! same orderings cover.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};

/// A queue of at most `N - 1` bytes.
pub struct Ring<const N: usize> {
    slots: [AtomicU8; N],
    head: AtomicUsize,
    tail: AtomicUsize,
    dropped: AtomicU32,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    /// Empty (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicU8::new(0) }; N],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicU32::new(0),
        }
    }

    /// Producer: queue `b`; `false` (and counted) when full.
    pub fn push(&self, b: u8) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let next = (tail + 1) % N;
        if next == self.head.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.slots[tail].store(b, Ordering::Relaxed);
        self.tail.store(next, Ordering::Release);
        true
    }

    /// Consumer: the oldest byte.
    pub fn pop(&self) -> Option<u8> {
        let head = self.head.load(Ordering::Relaxed);
        if head == self.tail.load(Ordering::Acquire) {
            return None;
        }
        let b = self.slots[head].load(Ordering::Relaxed);
        self.head.store((head + 1) % N, Ordering::Release);
        Some(b)
    }

    /// Bytes queued now.
    pub fn len(&self) -> usize {
        let (h, t) = (
            self.head.load(Ordering::Acquire),
            self.tail.load(Ordering::Acquire),
        );
        (t + N - h) % N
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left (bytes).
    pub fn free(&self) -> usize {
        N - 1 - self.len()
    }

    /// Count `n` bytes the producer gave up on without pushing them (a frame
    /// that would not fit whole).
    pub fn count_dropped(&self, n: usize) {
        self.dropped
            .fetch_add(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Bytes refused because the queue was full, since boot.
    pub fn dropped(&self) -> u32 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_across_threads() {
        static R: Ring<64> = Ring::new();
        let n = 200_000u32;
        let producer = std::thread::spawn(move || {
            for k in 0..n {
                while !R.push(k as u8) {
                    std::hint::spin_loop();
                }
            }
        });
        let mut next = 0u32;
        while next < n {
            if let Some(b) = R.pop() {
                assert_eq!(b, next as u8, "byte {next}");
                next += 1;
            }
        }
        producer.join().unwrap();
        assert!(R.is_empty());
    }

    /// The receive path at 115200 baud (a byte every 87 µs) while the main
    /// loop sends a telemetry frame the way the old firmware did, blocking on
    /// the transmitter for 6.5 ms: the interrupt queues every byte that
    /// arrives meanwhile, and the loop gets them all, in order, when it is
    /// back. (The one-byte receive register the old loop polled held one.)
    #[test]
    fn no_byte_lost_while_telemetry_is_sent() {
        let rx: Ring<256> = Ring::new();
        let byte_every_us = 87u32;
        let (mut now_us, mut sent, mut got) = (0u32, 0u8, Vec::new());
        let mut next_byte_us = 0u32;
        // One simulated second: the loop alternates 6.5 ms of telemetry
        // (interrupts only) with a pass that drains the queue.
        while now_us < 1_000_000 {
            let busy_until = now_us + 6_500;
            while next_byte_us < busy_until {
                // The receive interrupt: one byte in the register, into the queue.
                assert!(rx.push(sent), "queue full at {next_byte_us} µs");
                sent = sent.wrapping_add(1);
                next_byte_us += byte_every_us;
            }
            now_us = busy_until;
            while let Some(b) = rx.pop() {
                got.push(b);
            }
        }
        // Every byte that arrived in the second, in order.
        let arrived = next_byte_us.div_ceil(byte_every_us) as usize;
        assert!(arrived > 11_000, "{arrived} bytes");
        let want: Vec<u8> = (0..arrived).map(|k| k as u8).collect();
        assert_eq!(got, want);
        assert_eq!(rx.dropped(), 0);
        // A queue too small for one telemetry frame's time does lose bytes.
        let small: Ring<32> = Ring::new();
        for k in 0..(6_500 / byte_every_us) {
            small.push(k as u8);
        }
        assert!(small.dropped() > 0);
    }
}
