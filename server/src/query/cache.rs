//! Answers kept per snapshot, so that paging through a large answer runs its query once
//! instead of once per page. Keys carry the snapshot version: an entry can never answer
//! for newer data, and entries of older snapshots age out.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use super::Answer;

/// Answers held at most.
pub const CAPACITY: usize = 32;
/// Groups held at most over all answers; a larger answer is not kept.
pub const MAX_ROWS: usize = 2_000_000;

/// A small first-in-first-out cache of whole answers keyed by snapshot version and
/// request fingerprint.
#[derive(Debug, Default)]
pub struct AnswerCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(u64, u64), Arc<Answer>>,
    order: VecDeque<(u64, u64)>,
    rows: usize,
}

impl AnswerCache {
    /// The cached answer of `(snapshot, fingerprint)`, if any.
    pub fn get(&self, snapshot: u64, fingerprint: u64) -> Option<Arc<Answer>> {
        self.inner
            .lock()
            .ok()?
            .map
            .get(&(snapshot, fingerprint))
            .cloned()
    }

    /// Keeps `answer`, evicting the oldest entries to stay within the bounds.
    pub fn put(&self, snapshot: u64, fingerprint: u64, answer: Arc<Answer>) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        let rows = answer.rows.len();
        if rows > MAX_ROWS || e.map.contains_key(&(snapshot, fingerprint)) {
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
        while e.map.len() >= CAPACITY || (e.rows + rows > MAX_ROWS && !e.order.is_empty()) {
            match e.order.front().copied() {
                Some(oldest) => e.remove(oldest),
                None => break,
            }
        }
        e.rows += rows;
        e.order.push_back((snapshot, fingerprint));
        e.map.insert((snapshot, fingerprint), answer);
    }
}

impl Entries {
    fn remove(&mut self, key: (u64, u64)) {
        if let Some(answer) = self.map.remove(&key) {
            self.rows -= answer.rows.len();
        }
        self.order.retain(|k| *k != key);
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
            cost: 1,
            allocated: 0,
            tokens: crate::layers::Tokens::default(),
            line_items: 1,
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
}
