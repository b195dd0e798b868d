//! Pairing the frames of two cameras by capture time.
//!
//! Two free-running devices deliver frames on their own threads and in their
//! own order. A left and a right frame make a pair when their capture times
//! differ by at most the allowed skew; the pair carries the left (reference)
//! camera's capture time. A frame that can no longer meet a partner — the
//! other camera has already delivered a frame later than it by more than the
//! skew, and frames of one camera arrive in capture order — is dropped and
//! counted, as is a frame pushed out of a full queue.

use std::collections::VecDeque;

/// One camera of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eye {
    /// The left (reference) camera.
    Left,
    /// The right camera.
    Right,
}

/// What the pairer counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Pairs emitted.
    pub pairs: u64,
    /// Left frames that found no partner within the skew.
    pub dropped_left: u64,
    /// Right frames that found no partner within the skew.
    pub dropped_right: u64,
}

impl PairStats {
    /// All unpaired frames.
    pub fn dropped(&self) -> u64 {
        self.dropped_left + self.dropped_right
    }
}

/// Pairs timestamped items of two streams whose stamps differ by at most
/// `max_skew_ns`.
#[derive(Debug)]
pub struct Pairer<T> {
    max_skew_ns: u64,
    capacity: usize,
    left: VecDeque<(u64, T)>,
    right: VecDeque<(u64, T)>,
    stats: PairStats,
}

/// A pair of items and the stamps they were captured at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired<T> {
    /// Left item.
    pub left: T,
    /// Right item.
    pub right: T,
    /// Left capture stamp (ns): the pair's stamp.
    pub stamp_ns: u64,
    /// Right stamp minus left stamp (ns).
    pub skew_ns: i64,
}

impl<T> Pairer<T> {
    /// A pairer allowing `max_skew_ns` between the eyes, holding at most
    /// `capacity` unpaired frames per eye.
    pub fn new(max_skew_ns: u64, capacity: usize) -> Self {
        Self {
            max_skew_ns,
            capacity: capacity.max(1),
            left: VecDeque::new(),
            right: VecDeque::new(),
            stats: PairStats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> PairStats {
        self.stats
    }

    /// Adds one frame; returns the pair it completes, if any.
    pub fn push(&mut self, eye: Eye, stamp_ns: u64, item: T) -> Option<Paired<T>> {
        let skew = self.max_skew_ns;
        let capacity = self.capacity;
        let (mine, other) = match eye {
            Eye::Left => (&mut self.left, &mut self.right),
            Eye::Right => (&mut self.right, &mut self.left),
        };
        // Frames of the other eye older than this one by more than the skew
        // can pair with nothing still to come from this eye.
        let mut expired = 0u64;
        while other
            .front()
            .is_some_and(|(t, _)| t.saturating_add(skew) < stamp_ns)
        {
            other.pop_front();
            expired += 1;
        }
        // The nearest partner within the skew; older frames of the other eye
        // are passed over.
        let best = other
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (i, t.abs_diff(stamp_ns)))
            .filter(|&(_, d)| d <= skew)
            .min_by_key(|&(_, d)| d)
            .map(|(i, _)| i);
        let mut overflow = 0u64;
        let partner = match best {
            Some(i) => {
                expired += i as u64;
                other.drain(..i);
                other.pop_front()
            }
            None => None,
        };
        let out = match partner {
            Some((t_other, partner)) => {
                self.stats.pairs += 1;
                Some(match eye {
                    Eye::Left => Paired {
                        left: item,
                        right: partner,
                        stamp_ns,
                        skew_ns: t_other as i64 - stamp_ns as i64,
                    },
                    Eye::Right => Paired {
                        left: partner,
                        right: item,
                        stamp_ns: t_other,
                        skew_ns: stamp_ns as i64 - t_other as i64,
                    },
                })
            }
            None => {
                mine.push_back((stamp_ns, item));
                if mine.len() > capacity {
                    mine.pop_front();
                    overflow = 1;
                }
                None
            }
        };
        let (drop_mine, drop_other) = match eye {
            Eye::Left => (&mut self.stats.dropped_left, &mut self.stats.dropped_right),
            Eye::Right => (&mut self.stats.dropped_right, &mut self.stats.dropped_left),
        };
        *drop_mine += overflow;
        *drop_other += expired;
        out
    }

    /// Counts every frame still waiting as dropped (the stream ended).
    pub fn flush(&mut self) {
        self.stats.dropped_left += self.left.len() as u64;
        self.stats.dropped_right += self.right.len() as u64;
        self.left.clear();
        self.right.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn pairs_within_the_skew_and_counts_the_rest() {
        let mut p = Pairer::new(10 * MS, 8);
        // Frame k of the left camera at k·100 ms; the right one 4 ms late,
        // but 30 ms late for k = 3.
        let mut pairs = Vec::new();
        for k in 0..6u64 {
            let late = if k == 3 { 30 } else { 4 };
            pairs.extend(p.push(Eye::Left, k * 100 * MS, k));
            pairs.extend(p.push(Eye::Right, (k * 100 + late) * MS, k));
        }
        p.flush();
        assert_eq!(pairs.len(), 5);
        assert!(
            pairs
                .iter()
                .all(|q| q.left == q.right && q.skew_ns == 4 * MS as i64)
        );
        assert!(pairs.iter().all(|q| q.stamp_ns == q.left * 100 * MS));
        let s = p.stats();
        assert_eq!((s.pairs, s.dropped_left, s.dropped_right), (5, 1, 1));
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        // The right camera's thread runs three frames ahead of the left's.
        let mut p = Pairer::new(5 * MS, 8);
        let mut n = 0;
        for k in 0..3u64 {
            assert!(p.push(Eye::Right, (k * 50 + 2) * MS, k).is_none());
        }
        for k in 0..3u64 {
            let q = p.push(Eye::Left, k * 50 * MS, k).unwrap();
            assert_eq!((q.left, q.right, q.skew_ns), (k, k, 2 * MS as i64));
            n += 1;
        }
        assert_eq!((n, p.stats().dropped()), (3, 0));
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let mut p = Pairer::new(MS, 2);
        for k in 0..5u64 {
            assert!(p.push(Eye::Left, k * 100 * MS, k).is_none());
        }
        assert_eq!(p.stats().dropped_left, 3);
        // Frames 3 and 4 stayed; 0..=2 went.
        let q = p.push(Eye::Right, 300 * MS, 13).unwrap();
        assert_eq!((q.left, q.right), (3, 13));
    }
}
