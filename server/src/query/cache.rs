//! Answers kept per snapshot, so that paging through a large answer runs its query once
//! instead of once per page. Keys carry the snapshot version: an entry can never answer
//! for newer data, and entries of older snapshots are dropped as soon as a new snapshot
//! is served ([`AnswerCache::keep_only`]). The cache is bounded in entries, rows and
//! estimated bytes ([`Answer::heap_bytes`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use super::Answer;

/// Answers held at most.
pub const CAPACITY: usize = 32;
/// Groups held at most over all answers; a larger answer is not kept.
pub const MAX_ROWS: usize = 2_000_000;
/// Estimated bytes held at most over all answers, by default; a larger answer is not kept.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// A small first-in-first-out cache of whole answers keyed by snapshot version and
/// request fingerprint.
#[derive(Debug)]
pub struct AnswerCache {
    inner: Mutex<Entries>,
    max_bytes: usize,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(u64, u64), (Arc<Answer>, usize)>,
    order: VecDeque<(u64, u64)>,
    rows: usize,
    bytes: usize,
}

impl AnswerCache {
    /// A cache holding at most `max_bytes` of answers (estimated).
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_bytes,
        }
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |e| e.bytes)
    }

    /// Drops every answer of another snapshot than `snapshot`: called when a new one is
    /// served, so that the memory of the old answers comes back at once rather than at
    /// the next query.
    pub fn keep_only(&self, snapshot: u64) {
        let stale: Vec<Arc<Answer>> = {
            let Ok(mut e) = self.inner.lock() else {
                return;
            };
            let keys: Vec<_> = e
                .order
                .iter()
                .copied()
                .filter(|(v, _)| *v != snapshot)
                .collect();
            keys.into_iter().filter_map(|k| e.remove(k)).collect()
        };
        // Freed outside the lock.
        drop(stale);
    }

    /// The cached answer of `(snapshot, fingerprint)`, if any.
    pub fn get(&self, snapshot: u64, fingerprint: u64) -> Option<Arc<Answer>> {
        self.inner
            .lock()
            .ok()?
            .map
            .get(&(snapshot, fingerprint))
            .map(|(a, _)| a.clone())
    }

    /// Keeps `answer`, evicting the oldest entries to stay within the bounds.
    pub fn put(&self, snapshot: u64, fingerprint: u64, answer: Arc<Answer>) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        let rows = answer.rows.len();
        let bytes = answer.heap_bytes();
        if rows > MAX_ROWS || bytes > self.max_bytes || e.map.contains_key(&(snapshot, fingerprint))
        {
            return;
        }
        // Versions are digests of the data, not counters: entries of any other version
        // belong to data no longer served (or, briefly, to a request that still holds
        // the previous snapshot), so they make room first.
        let stale: Vec<_> = e
            .order
            .iter()
            .copied()
            .filter(|(v, _)| *v != snapshot)
            .collect();
        for key in stale {
            e.remove(key);
        }
        while e.map.len() >= CAPACITY
            || ((e.rows + rows > MAX_ROWS || e.bytes + bytes > self.max_bytes)
                && !e.order.is_empty())
        {
            match e.order.front().copied() {
                Some(oldest) => {
                    e.remove(oldest);
                }
                None => break,
            }
        }
        e.rows += rows;
        e.bytes += bytes;
        e.order.push_back((snapshot, fingerprint));
        e.map.insert((snapshot, fingerprint), (answer, bytes));
    }
}

impl Entries {
    fn remove(&mut self, key: (u64, u64)) -> Option<Arc<Answer>> {
        let removed = self.map.remove(&key).map(|(answer, bytes)| {
            self.rows -= answer.rows.len();
            self.bytes -= bytes;
            answer
        });
        self.order.retain(|k| *k != key);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: usize) -> Arc<Answer> {
        let row = super::super::GroupRow {
            currency: "USD".into(),
            bucket: None,
            keys: vec![],
            cost: crate::rules::money::Amount::from_scaled(1),
            allocated: crate::rules::money::Amount::ZERO,
            tokens: crate::layers::Tokens::default(),
            line_items: 1,
            cache_saving: crate::rules::money::FineAmount::default(),
        };
        Arc::new(Answer {
            rows: vec![row; rows],
            ..Answer::default()
        })
    }

    #[test]
    fn keyed_by_snapshot_and_bounded() {
        let cache = AnswerCache::default();
        cache.put(1, 7, answer(3));
        assert_eq!(cache.get(1, 7).map(|a| a.rows.len()), Some(3));
        assert!(
            cache.get(2, 7).is_none(),
            "a newer snapshot never sees an older answer"
        );
        cache.put(2, 8, answer(1));
        assert!(cache.get(1, 7).is_none(), "older snapshots age out");
        for i in 0..(CAPACITY as u64 + 5) {
            cache.put(2, 100 + i, answer(1));
        }
        assert!(cache.get(2, 100).is_none(), "first in, first out");
        assert!(cache.get(2, 100 + CAPACITY as u64 + 4).is_some());
        cache.put(2, 1, answer(MAX_ROWS + 1));
        assert!(cache.get(2, 1).is_none(), "too large to keep");
    }

    #[test]
    fn bounded_in_bytes_and_emptied_for_a_new_snapshot() {
        let one = answer(1000).heap_bytes();
        let cache = AnswerCache::with_max_bytes(one * 3);
        for i in 0..5 {
            cache.put(1, i, answer(1000));
        }
        assert!(cache.bytes() <= one * 3, "{} > {}", cache.bytes(), one * 3);
        assert!(cache.get(1, 0).is_none() && cache.get(1, 1).is_none());
        assert!(cache.get(1, 4).is_some());
        cache.put(1, 99, answer(4000));
        assert!(cache.get(1, 99).is_none(), "larger than the whole cache");
        cache.keep_only(2);
        assert_eq!(cache.bytes(), 0);
        assert!(cache.get(1, 4).is_none());
    }
}
