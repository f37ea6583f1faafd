//! The sequence slots not in use, each with the tokens its KV cache still
//! holds from the request it served last. A new prompt takes the slot
//! that shares the longest prefix with it, so a chat that continues an
//! earlier conversation prefills only what is new. When no slot shares
//! more than a few tokens (every prompt shares its start-of-text token),
//! it takes the slot that has been free longest, keeping the caches most
//! recently used for the conversations likely to come back.

/// A shared prefix shorter than this is not worth taking a recently
/// used cache for: prefilling a few tokens is cheap.
const WORTH_REUSING: usize = 4;

/// A sequence id and what its KV cache holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    pub seq: u32,
    /// Token ids at positions `0..` of the sequence's cache.
    pub holds: Vec<u32>,
}

/// Free slots, the longest free first.
#[derive(Debug, Default)]
pub(super) struct FreeSlots {
    slots: Vec<Slot>,
}

impl FreeSlots {
    /// Sequences `1..=n`, every cache empty. Sequence 0 is left to the
    /// workbench's own prompts, whose chat cache serving never touches.
    pub fn new(n: u32) -> Self {
        Self {
            slots: (1..=n)
                .map(|seq| Slot {
                    seq,
                    holds: Vec::new(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Hands back a slot whose cache holds `holds` (empty when its cache
    /// is in doubt).
    pub fn give_back(&mut self, slot: Slot) {
        self.slots.push(slot);
    }

    /// The slot for `prompt` and how many of its first tokens that slot's
    /// cache already holds.
    pub fn take_for(&mut self, prompt: &[u32]) -> Option<(Slot, usize)> {
        let (best, shared) = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i, shared_prefix(&s.holds, prompt)))
            // The first of equals: the longest free.
            .fold(None, |best: Option<(usize, usize)>, (i, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((i, n)),
            })?;
        let best = if shared >= WORTH_REUSING { best } else { 0 };
        let slot = self.slots.remove(best);
        let shared = shared_prefix(&slot.holds, prompt);
        Some((slot, shared))
    }
}

fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back(free: &mut FreeSlots, prompt: &[u32], holds: &[u32]) {
        let (slot, _) = free.take_for(prompt).unwrap();
        free.give_back(Slot {
            holds: holds.to_vec(),
            ..slot
        });
    }

    #[test]
    fn a_prompt_takes_the_slot_sharing_its_longest_prefix() {
        let mut free = FreeSlots::new(3);
        back(&mut free, &[1], &[1, 2, 3, 4, 5, 6]); // slot 1
        back(&mut free, &[1], &[1, 2, 3, 4, 9, 9, 9]); // slot 2
        let (slot, shared) = free.take_for(&[1, 2, 3, 4, 9, 9, 7]).unwrap();
        assert_eq!((slot.seq, shared), (2, 6));
        let (slot, shared) = free.take_for(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!((slot.seq, shared), (1, 6));
    }

    #[test]
    fn a_short_match_does_not_take_a_recent_cache() {
        let mut free = FreeSlots::new(2);
        back(&mut free, &[1], &[1, 2, 3, 4, 5, 6]); // slot 1, now the most recent
                                                    // Sharing only the first tokens: slot 2, free since the start, goes.
        let (slot, shared) = free.take_for(&[1, 2, 8]).unwrap();
        assert_eq!((slot.seq, shared), (2, 0));
        let (slot, shared) = free.take_for(&[1, 2, 8]).unwrap();
        assert_eq!((slot.seq, shared), (1, 2));
        assert!(free.take_for(&[9]).is_none());
        assert!(free.is_empty());
    }
}
