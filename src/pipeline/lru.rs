//! A map that keeps its `N` most recently used entries: the encoders' caches, bounded
//! so a long session of new prompts and seeds does not grow without end.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Up to `N` entries; adding one more forgets the least recently used.
pub struct Lru<K, V, const N: usize> {
    values: HashMap<K, V>,
    /// The keys, least recently used first.
    order: VecDeque<K>,
}

impl<K, V, const N: usize> Default for Lru<K, V, N> {
    fn default() -> Self {
        Self {
            values: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone, const N: usize> Lru<K, V, N> {
    /// The value of `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let value = self.values.get(key)?.clone();
        self.order.retain(|k| k != key);
        self.order.push_back(key.clone());
        Some(value)
    }

    /// Adds (or replaces) `key`, forgetting the least recently used entry when full.
    pub fn insert(&mut self, key: K, value: V) {
        self.order.retain(|k| k != &key);
        if self.order.len() >= N
            && let Some(oldest) = self.order.pop_front()
        {
            self.values.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.values.insert(key, value);
    }

    /// The value of `key`, made by `make` and kept when it is not there yet.
    pub fn get_or_try_insert_with<E>(
        &mut self,
        key: K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let value = make()?;
        self.insert(key, value.clone());
        Ok(value)
    }

    /// Keeps only the entries whose key passes `keep`.
    pub fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.values.retain(|key, _| keep(key));
        self.order.retain(|key| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru: Lru<&str, u32, 2> = Lru::default();
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3);
        assert_eq!(lru.get(&"b"), None, "b was the least recently used");
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        lru.insert("c", 4);
        assert_eq!(lru.get(&"c"), Some(4));
        assert_eq!(lru.get(&"a"), Some(1), "replacing c forgot nothing");
        let made = lru.get_or_try_insert_with("d", || Ok::<_, ()>(5));
        assert_eq!(made, Ok(5));
        let kept = lru.get_or_try_insert_with("d", || Err(()));
        assert_eq!(kept, Ok(5), "a kept value is not made again");
        assert_eq!(lru.get_or_try_insert_with("e", || Err(())), Err(()));
        assert_eq!(lru.get(&"e"), None, "a failure is not kept");
        lru.retain(|key| *key != "a");
        assert_eq!(lru.get(&"a"), None, "a did not pass `retain`");
        assert_eq!(lru.get(&"d"), Some(5), "d passed `retain`");
        lru.insert("f", 6);
        assert_eq!(
            lru.get(&"d"),
            Some(5),
            "a left the order too: f took its place"
        );
    }
}
