//! A bounded map from byte keys to values that forgets in insertion order (dedup's window
//! table: an entry is never moved when it is hit, so its insertion order is its window
//! order). The values sit in one ring and the keys in one byte arena, both in insertion
//! order, so forgetting the oldest reads memory next to what the last one read; the index
//! holds 64-bit hashes only, and a key's bytes are compared on a hash match alone.
use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, BuildHasherDefault, Hasher},
};

/// Hashes a `u64` that already is a (seeded) hash: the index's keys.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Slot<V> {
    hash: u64,
    /// Where the key starts in the arena (counted from the first byte ever written).
    key_at: u64,
    key_len: usize,
    /// The next older live entry with the same hash, if any (sequence number).
    same_hash: Option<u64>,
    value: V,
}

pub struct KeyFifo<V> {
    cap: usize,
    hasher: lru::DefaultHasher,
    /// Hash → sequence number of the newest entry with that hash.
    index: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
    slots: VecDeque<Slot<V>>,
    /// Sequence number of `slots[0]`.
    first_seq: u64,
    arena: Vec<u8>,
    /// Arena offset of `arena[0]`.
    arena_base: u64,
}

impl<V> KeyFifo<V> {
    pub fn new(cap: usize) -> Self {
        KeyFifo {
            cap: cap.max(1),
            hasher: Default::default(),
            index: HashMap::default(),
            slots: VecDeque::new(),
            first_seq: 0,
            arena: Vec::new(),
            arena_base: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn key(&self, s: &Slot<V>) -> &[u8] {
        let at = (s.key_at - self.arena_base) as usize;
        &self.arena[at..at + s.key_len]
    }

    /// The entry of `key` (whose [`KeyFifo::hash`] is `hash`), without moving it.
    pub fn get_mut(&mut self, key: &[u8], hash: u64) -> Option<&mut V> {
        let mut seq = self.index.get(&hash).copied();
        while let Some(s) = seq.filter(|s| *s >= self.first_seq) {
            let i = (s - self.first_seq) as usize;
            if self.key(&self.slots[i]) == key {
                return Some(&mut self.slots[i].value);
            }
            seq = self.slots[i].same_hash;
        }
        None
    }

    /// Adds a key that is not in the map (see [`KeyFifo::get_mut`]); returns the oldest
    /// value when the map was full and it was forgotten to make room.
    pub fn push(&mut self, key: &[u8], hash: u64, value: V) -> Option<V> {
        let evicted = if self.slots.len() >= self.cap { self.pop_oldest() } else { None };
        let seq = self.first_seq + self.slots.len() as u64;
        let key_at = self.arena_base + self.arena.len() as u64;
        self.arena.extend_from_slice(key);
        let same_hash = self.index.insert(hash, seq);
        self.slots.push_back(Slot { hash, key_at, key_len: key.len(), same_hash, value });
        evicted
    }

    /// The oldest value.
    pub fn oldest(&self) -> Option<&V> {
        self.slots.front().map(|s| &s.value)
    }

    /// Forgets the oldest entry; returns its value.
    pub fn pop_oldest(&mut self) -> Option<V> {
        let s = self.slots.pop_front()?;
        let seq = self.first_seq;
        self.first_seq += 1;
        // Only the newest entry of a hash is indexed; older ones are reached through it.
        if self.index.get(&s.hash) == Some(&seq) {
            self.index.remove(&s.hash);
        }
        let end = (s.key_at - self.arena_base) as usize + s.key_len;
        // The arena's dead front is dropped once it is most of the arena (amortised).
        if (end * 2 >= self.arena.len() && end >= 4096) || self.slots.is_empty() {
            self.arena.drain(..end);
            self.arena_base += end as u64;
        }
        Some(s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_one_hash_stay_apart_and_the_oldest_goes_first() {
        let mut f = KeyFifo::new(3);
        // Every key under the same hash: found by their bytes.
        for (k, v) in [(&b"a"[..], 1), (b"bb", 2), (b"", 3)] {
            assert!(f.get_mut(k, 7).is_none());
            assert!(f.push(k, 7, v).is_none());
        }
        assert_eq!(f.get_mut(b"bb", 7).copied(), Some(2));
        assert_eq!(f.get_mut(b"", 7).copied(), Some(3));
        assert!(f.get_mut(b"bb", 8).is_none(), "another hash is another key");
        assert_eq!(f.push(b"d", 7, 4), Some(1), "full: the oldest is forgotten");
        assert!(f.get_mut(b"a", 7).is_none());
        assert_eq!(f.get_mut(b"bb", 7).copied(), Some(2));
        assert_eq!(f.oldest(), Some(&2));
        let order: Vec<i32> = std::iter::from_fn(|| f.pop_oldest()).collect();
        assert_eq!(order, [2, 3, 4]);
        assert!(f.is_empty() && f.get_mut(b"d", 7).is_none());
    }

    #[test]
    fn many_keys_through_a_small_map() {
        let mut f = KeyFifo::new(100);
        for i in 0..10_000u32 {
            let k = format!("key-{i}-{}", "x".repeat((i % 90) as usize));
            let h = f.hash(k.as_bytes());
            assert!(f.get_mut(k.as_bytes(), h).is_none());
            f.push(k.as_bytes(), h, i);
            let old = format!("key-{}-{}", i.saturating_sub(50), "x".repeat((i.saturating_sub(50) % 90) as usize));
            let h = f.hash(old.as_bytes());
            assert_eq!(f.get_mut(old.as_bytes(), h).copied(), Some(i.saturating_sub(50)));
        }
        assert_eq!(f.len(), 100);
        assert!(f.arena.len() < 100 * 100 * 2 + 8192, "the arena is bounded: {}", f.arena.len());
    }
}
