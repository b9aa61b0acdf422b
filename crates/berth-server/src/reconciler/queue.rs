//! A de-duplicating work queue of keys, as in Kubernetes controllers: a key queued twice
//! is worked once; a key changed while it is being worked is worked again after; a key
//! may be queued for later (a rollout's deadline). First in, first out.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    hash::Hash,
};

use tokio::time::Instant;

/// The queue. Time is passed in, so that it is tested without waiting.
#[derive(Debug)]
pub struct WorkQueue<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    active: HashSet<K>,
    dirty: HashSet<K>,
    later: BTreeMap<(Instant, u64), K>,
    due: HashMap<K, (Instant, u64)>,
    ticket: u64,
}

impl<K> Default for WorkQueue<K> {
    fn default() -> Self {
        Self {
            ready: VecDeque::new(),
            queued: HashSet::new(),
            active: HashSet::new(),
            dirty: HashSet::new(),
            later: BTreeMap::new(),
            due: HashMap::new(),
            ticket: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Queues `key` now (once, however often it is added before it is taken).
    pub fn add(&mut self, key: K) {
        if self.active.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues `key` at `at`, unless it is already due earlier.
    pub fn add_at(&mut self, key: K, at: Instant) {
        if let Some(&(when, ticket)) = self.due.get(&key) {
            if when <= at {
                return;
            }
            self.later.remove(&(when, ticket));
        }
        self.ticket += 1;
        self.later.insert((at, self.ticket), key.clone());
        self.due.insert(key, (at, self.ticket));
    }

    /// Takes up to `max` keys to work on at `now`; each is active until [`done`](Self::done).
    pub fn take(&mut self, max: usize, now: Instant) -> Vec<K> {
        while let Some(entry) = self.later.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.due.remove(&key);
            self.add(key);
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(key) = self.ready.pop_front() else { break };
            self.queued.remove(&key);
            self.active.insert(key.clone());
            out.push(key);
        }
        out
    }

    /// Ends work on `key`; queues it again if it changed meanwhile.
    pub fn done(&mut self, key: &K) {
        self.active.remove(key);
        if self.dirty.remove(key) {
            self.add(key.clone());
        }
    }

    /// Whether a key is ready now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// When the next queued-for-later key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.later.first_key_value().map(|((at, _), _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_key_queued_twice_runs_once() {
        let mut q = WorkQueue::default();
        let now = Instant::now();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.take(10, now), ["a", "b"]);
        assert!(q.take(10, now).is_empty());
    }

    #[test]
    fn a_key_changed_while_worked_runs_again_after() {
        let mut q = WorkQueue::default();
        let now = Instant::now();
        q.add("a");
        assert_eq!(q.take(1, now), ["a"]);
        q.add("a");
        assert!(q.take(1, now).is_empty(), "never worked twice at once");
        q.done(&"a");
        assert_eq!(q.take(1, now), ["a"]);
        q.done(&"a");
        assert!(q.take(1, now).is_empty());
    }

    #[test]
    fn keys_queued_for_later_come_when_due_and_earliest_wins() {
        let mut q = WorkQueue::default();
        let now = Instant::now();
        q.add_at("a", now + Duration::from_secs(5));
        q.add_at("a", now + Duration::from_secs(1));
        q.add_at("a", now + Duration::from_secs(9));
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        assert!(q.take(10, now).is_empty());
        assert_eq!(q.take(10, now + Duration::from_secs(1)), ["a"]);
        assert_eq!(q.next_due(), None, "the later entries were replaced, not kept");
    }

    #[test]
    fn first_in_first_out_so_no_key_starves() {
        let mut q = WorkQueue::default();
        let now = Instant::now();
        for k in 0..10 {
            q.add(k);
        }
        assert_eq!(q.take(3, now), [0, 1, 2]);
        // Worked keys that come back go to the end, behind those waiting.
        for k in [0, 1, 2] {
            q.done(&k);
            q.add(k);
        }
        assert_eq!(q.take(10, now), [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
    }
}
