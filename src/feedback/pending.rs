//! Predictions waiting for their label, by request id: at most `max`, each for at most
//! `retain`, the oldest forgotten first; and a memory of the ids forgotten last, so a
//! label that comes too late is told from one for a prediction never made.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;

/// A remembered prediction, in 16 bytes: what it said (a class by the hash of its
/// name, or a value), the (route, backend) it was for, whether it is a mirror's and
/// whether its id was seen on another exchange, and its place in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// The class hash, or the value's bits.
    guess: u64,
    /// The (route, backend) index, with [`VALUE`], [`MIRROR`] and [`AMBIGUOUS`] as flags.
    tag: u32,
    /// Which order item stands for it (items left by earlier predictions under the same id
    /// have another).
    seq: u32,
}

/// Marks an [`Entry`] whose guess is a value (route and backend indexes stay far below).
const VALUE: u32 = 1 << 31;

/// Marks an [`Entry`] whose request id was seen on more than one exchange: its label is
/// counted `ambiguous`, never scored.
const AMBIGUOUS: u32 = 1 << 30;

/// Marks an [`Entry`] that is a mirror's answer to the exchange, not the one served.
const MIRROR: u32 = 1 << 29;

/// The flags of an [`Entry`]'s tag.
const FLAGS: u32 = VALUE | AMBIGUOUS | MIRROR;

/// What a prediction said: a class by the hash of its name, or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Guess {
    Class(u64),
    Value(f64),
}

impl Entry {
    /// The (route, backend) it was for.
    pub(super) fn key(&self) -> u32 {
        self.tag & !FLAGS
    }

    /// Its request id was seen on more than one exchange.
    pub(super) fn ambiguous(&self) -> bool {
        self.tag & AMBIGUOUS != 0
    }

    /// It is a mirror's answer.
    pub(super) fn mirror(&self) -> bool {
        self.tag & MIRROR != 0
    }

    /// What it said.
    pub(super) fn guess(&self) -> Guess {
        if self.tag & VALUE == 0 {
            Guess::Class(self.guess)
        } else {
            Guess::Value(f64::from_bits(self.guess))
        }
    }
}

/// How a prediction is remembered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags {
    /// It is a mirror's answer to the exchange.
    pub(super) mirror: bool,
    /// Its id was seen on another exchange.
    pub(super) ambiguous: bool,
}

/// Why no prediction waits for a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    /// It was forgotten (by age or by count) before the label came: the (route, backend) it was for.
    Late(u32),
    /// None was remembered under that id (never made, not sampled, or labelled already).
    Unknown,
}

/// The waiting predictions, keyed by the hash of their request id.
pub(super) struct Pending {
    entries: HashMap<u64, Entry>,
    /// Ids in the order they were remembered, with when (ms) and their entry's `seq`. A
    /// prediction that was labelled or replaced leaves its item here, stale, until it
    /// reaches the front or a compaction drops it.
    order: VecDeque<Item>,
    /// The next entry's `seq` (wrapping: far more than the order ever holds).
    seq: u32,
    forgotten: Forgotten,
    max: usize,
    retain_ms: u64,
    /// Predictions forgotten unlabelled because they were older than `retain`.
    pub(super) expired: u64,
    /// Predictions forgotten unlabelled to make room (more than `max` waiting).
    pub(super) evicted: u64,
}

impl Pending {
    pub(super) fn new(max: usize, retain_ms: u64) -> Pending {
        Pending {
            entries: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            forgotten: Forgotten::new(max),
            max,
            retain_ms,
            expired: 0,
            evicted: 0,
        }
    }

    /// How many predictions wait.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a prediction waits under `id`, or one was forgotten unlabelled lately.
    pub(super) fn seen(&self, id: u64) -> bool {
        self.entries.contains_key(&id) || self.forgotten.key(id).is_some()
    }

    /// Marks the prediction waiting under `id`, if any, as ambiguous; `false` if none waits.
    pub(super) fn mark_ambiguous(&mut self, id: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) => {
                e.tag |= AMBIGUOUS;
                true
            }
            None => false,
        }
    }

    /// Remembers what `key`'s backend predicted under `id` at `at_ms` (a `mirror`'s
    /// answer, or an `ambiguous` one, as the caller says), forgetting what is too old,
    /// then the oldest while more than `max` wait. A prediction already waiting under
    /// `id` is replaced: the caller decides whether one may be.
    pub(super) fn insert(&mut self, id: u64, key: u32, guess: Guess, at_ms: u64, flags: Flags) {
        self.expire(at_ms);
        self.seq = self.seq.wrapping_add(1);
        let mut tag = key & !FLAGS;
        if flags.mirror {
            tag |= MIRROR;
        }
        if flags.ambiguous {
            tag |= AMBIGUOUS;
        }
        let entry = match guess {
            Guess::Class(h) => Entry {
                guess: h,
                tag,
                seq: self.seq,
            },
            Guess::Value(v) => Entry {
                guess: v.to_bits(),
                tag: tag | VALUE,
                seq: self.seq,
            },
        };
        self.entries.insert(id, entry);
        self.order.push_back(Item {
            id,
            at_ms,
            seq: self.seq,
        });
        while self.entries.len() > self.max && self.forget_oldest() {}
        if self.order.len() > self.max + self.max / 4 + 64 {
            let entries = &self.entries;
            self.order.retain(|item| item.is_live(entries));
        }
    }

    /// Takes the prediction made under `id` for its label, after forgetting what is too old.
    pub(super) fn take(&mut self, id: u64, now_ms: u64) -> Result<Entry, Missing> {
        self.expire(now_ms);
        self.entries
            .remove(&id)
            .ok_or_else(|| match self.forgotten.key(id) {
                Some(key) => Missing::Late(key),
                None => Missing::Unknown,
            })
    }

    /// Takes the prediction waiting under `id`, if any (without forgetting old ones first:
    /// for the mirror's answer of an exchange whose served answer was just looked up).
    pub(super) fn take_also(&mut self, id: u64) -> Option<Entry> {
        self.entries.remove(&id)
    }

    /// Forgets the predictions remembered `retain` or longer before `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64) {
        while let Some(&item) = self.order.front() {
            if now_ms.saturating_sub(item.at_ms) < self.retain_ms {
                break;
            }
            self.order.pop_front();
            if let Some(e) = self.remove_live(item) {
                self.forgotten.push(item.id, e.key());
                self.expired += 1;
            }
        }
    }

    /// Forgets the oldest waiting prediction; `false` if none waits.
    fn forget_oldest(&mut self) -> bool {
        while let Some(item) = self.order.pop_front() {
            if let Some(e) = self.remove_live(item) {
                self.forgotten.push(item.id, e.key());
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    /// Removes the prediction an order item stands for, unless that item is stale.
    fn remove_live(&mut self, item: Item) -> Option<Entry> {
        if item.is_live(&self.entries) {
            self.entries.remove(&item.id)
        } else {
            None
        }
    }

    /// The heap this holds, in bytes, from its tables' capacities.
    pub(super) fn heap_bytes(&self) -> usize {
        table_bytes(&self.entries)
            + self.order.capacity() * size_of::<Item>()
            + self.forgotten.heap_bytes()
    }
}

/// One prediction's place in the order.
#[derive(Debug, Clone, Copy)]
struct Item {
    id: u64,
    at_ms: u64,
    seq: u32,
}

impl Item {
    /// Tells whether it stands for a waiting prediction (not a labelled or replaced one).
    fn is_live(&self, entries: &HashMap<u64, Entry>) -> bool {
        entries.get(&self.id).is_some_and(|e| e.seq == self.seq)
    }
}

/// The ids of the last predictions forgotten unlabelled (as many as may wait), with the
/// (route, backend) each was for.
struct Forgotten {
    keys: HashMap<u64, u32>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Forgotten {
    fn new(cap: usize) -> Forgotten {
        Forgotten {
            keys: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn push(&mut self, id: u64, key: u32) {
        if self.keys.insert(id, key).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }

    fn key(&self, id: u64) -> Option<u32> {
        self.keys.get(&id).copied()
    }

    fn heap_bytes(&self) -> usize {
        table_bytes(&self.keys) + self.order.capacity() * size_of::<u64>()
    }
}

/// The heap a `HashMap` holds for its capacity: a power of two of buckets at most 7/8
/// full, each an item and a control byte, plus a group of control bytes.
fn table_bytes<K, V>(m: &HashMap<K, V>) -> usize {
    match m.capacity() {
        0 => 0,
        cap => {
            let buckets = (cap * 8 / 7).next_power_of_two();
            buckets * (size_of::<(K, V)>() + 1) + 16
        }
    }
}
