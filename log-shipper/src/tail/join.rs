//! Records cut by a rotation: a file's pending partial lines and multiline records handed to the next file of its
//! container, and the older file held at the record's start until the joined record is shipped.

use super::*;

impl Reader {
    /// Hands the pending records of `from` (read to its end) to `to`, the next file of the same container run, once
    /// `to` has data and has read nothing yet: the kubelet rotated between a CRI `P` line and its `F` line, or inside a
    /// multiline record. `from` is then not committed past the records' start until they are shipped (see
    /// [`Reader::release`]), so a restart reads them again from there and joins them the same way.
    pub(super) fn carry_over(&mut self, from: u64, to: u64) {
        let Some(a) = self.files.get(&from) else {
            return;
        };
        if !a.parser.has_pending() || !a.carry.is_empty() || a.skip_from.is_some() {
            return;
        }
        let Some(generation) = a.generation else {
            return;
        };
        let Some(b) = self.files.get(&to) else {
            return;
        };
        // Only within one run of the container (`<n>.log` and its rotations): a restarted container's first line
        // never continues the last one of the run before.
        if a.order.0 != b.order.0 || a.ctx.meta.base != b.ctx.meta.base {
            return;
        }
        let untouched = b.read_offset == b.committed
            && b.carry.is_empty()
            && b.skip_from.is_none()
            && !b.parser.has_pending();
        if !untouched || !read_to_end(a) || !has_data(b) {
            return;
        }
        let mut b = self.files.remove(&to).expect("present");
        let a = self.files.get_mut(&from).expect("present");
        let at = b.consumed();
        if let Some(held) = a.parser.hand_over(&mut b.parser, generation, from, at) {
            a.lent = Some(a.lent.map_or(held, |l| l.min(held)));
            tracing::debug!(from = %a.path.display(), to = %b.path.display(), offset = held, "a record cut by a rotation continues in the next file");
        }
        self.files.insert(to, b);
    }

    /// Records that began in the files `slots` were shipped (put in the batch): each file is committed up to what its
    /// remaining carried records still hold.
    pub(super) fn release(&mut self, mut slots: Vec<u64>) {
        slots.sort_unstable();
        slots.dedup();
        for h in slots {
            let still = self
                .files
                .values()
                .flat_map(|t| t.parser.carried_holds())
                .filter(|&(s, _)| s == h)
                .map(|(_, off)| off)
                .min();
            let Some(t) = self.files.get_mut(&h) else {
                continue;
            };
            t.lent = still;
            let safe = t.safe();
            self.push_position(h, safe);
        }
    }

    /// Records in the open batch that `slot` may be committed up to `safe` once the batch is acknowledged.
    pub(super) fn push_position(&mut self, slot: u64, safe: u64) {
        match self.batch.positions.last_mut() {
            Some((s, off)) if *s == slot => *off = safe,
            _ => self.batch.positions.push((slot, safe)),
        }
    }
}

/// Whether everything in the file has been read (a compressed file: to the end of its stream).
fn read_to_end(t: &Tracked) -> bool {
    match &t.file {
        Some(f) => f.metadata().is_ok_and(|m| m.len() <= t.read_offset),
        None => !t.compressed || t.done,
    }
}

/// Whether the file has bytes not read yet.
fn has_data(t: &Tracked) -> bool {
    match &t.file {
        Some(f) => f.metadata().is_ok_and(|m| m.len() > t.read_offset),
        None => t.compressed && !t.done,
    }
}
