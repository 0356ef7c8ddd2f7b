//! One shard of the store: its entities by key, and by position, so the label index reaches an
//! entity without hashing its key.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::entity::Entity;

/// The entities of one shard. `by_key` always points at an occupied position of `slab`.
#[derive(Default)]
pub(super) struct Shard {
    by_key: FxHashMap<Arc<str>, u32>,
    /// Entities by position; `None` where one expired (reused by the next new entity).
    slab: Vec<Option<Entity>>,
    free: Vec<u32>,
}

impl Shard {
    pub fn get(&self, key: &str) -> Option<&Entity> {
        let pos = *self.by_key.get(key)?;
        self.slab[pos as usize].as_ref()
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entity> {
        let pos = *self.by_key.get(key)?;
        self.slab[pos as usize].as_mut()
    }

    /// The entity at `pos` (a position the label index holds), if any.
    pub fn at(&self, pos: u32) -> Option<&Entity> {
        self.slab.get(pos as usize).and_then(Option::as_ref)
    }

    /// The position the next [`Shard::insert`] will use.
    pub fn next_pos(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.slab.len() as u32)
    }

    /// Adds an entity under a key it does not have yet, at [`Shard::next_pos`].
    pub fn insert(&mut self, key: Arc<str>, e: Entity) -> &mut Entity {
        let pos = match self.free.pop() {
            Some(p) => p,
            None => {
                self.slab.push(None);
                (self.slab.len() - 1) as u32
            }
        };
        self.by_key.insert(key, pos);
        self.slab[pos as usize].insert(e)
    }

    /// Every entity with its key.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entity)> {
        self.by_key
            .iter()
            .filter_map(|(k, &pos)| self.slab[pos as usize].as_ref().map(|e| (k, e)))
    }

    /// Keeps the entities `keep` accepts (it may change them); frees the others' positions.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Entity) -> bool) {
        let Shard { by_key, slab, free } = self;
        by_key.retain(|_, pos| {
            let slot = &mut slab[*pos as usize];
            if slot.as_mut().is_some_and(&mut keep) {
                return true;
            }
            *slot = None;
            free.push(*pos);
            false
        });
        if slab.capacity() > 2 * slab.len() + 16 {
            slab.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::Slots;
    use super::*;

    #[test]
    fn positions_are_reused_and_keys_stay_consistent() {
        let mut s = Shard::default();
        let e = |id| Entity::new(Arc::default(), 0, Slots::default(), id, false);
        assert_eq!(s.next_pos(), 0);
        s.insert("a".into(), e(10));
        s.insert("b".into(), e(11));
        assert_eq!(s.get("b").map(|e| e.id), Some(11));
        assert_eq!(s.at(0).map(|e| e.id), Some(10));
        s.retain(|e| e.id != 10);
        assert!(s.get("a").is_none() && s.at(0).is_none());
        assert_eq!(s.next_pos(), 0, "a freed position is reused");
        s.insert("c".into(), e(12));
        assert_eq!(s.at(0).map(|e| e.id), Some(12));
        let mut keys: Vec<&str> = s.iter().map(|(k, _)| &**k).collect();
        keys.sort();
        assert_eq!(keys, ["b", "c"]);
        s.get_mut("c").unwrap().last_seen_ms = 5;
        assert_eq!(s.get("c").unwrap().last_seen_ms, 5);
    }
}
