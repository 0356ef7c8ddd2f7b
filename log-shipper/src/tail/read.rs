//! Reading: each container's files in order, plain or gzip, split into lines for the parser, entries encoded into
//! the batch with the safe position of their file; truncation and copytruncate refills detected.

use super::*;

impl Reader {
    /// The files of each container in reading order.
    pub(super) fn rebuild_groups(&mut self) {
        let mut by_group: BTreeMap<String, Vec<(OrderKey, u64)>> = BTreeMap::new();
        for (slot, t) in &mut self.files {
            let (group, order) = order_of(&t.ctx.meta, &t.path);
            t.order = order.clone();
            by_group.entry(group).or_default().push((order, *slot));
        }
        self.groups = by_group
            .into_values()
            .map(|mut v| {
                v.sort();
                v.into_iter().map(|(_, s)| s).collect()
            })
            .collect();
        self.groups_dirty = false;
    }

    /// One pass over every container: its files are read oldest first (older rotations, newer rotations, the live
    /// file), a newer one only while every older one has nothing to read. Returns whether any data was read.
    pub(super) fn poll_all(&mut self) -> bool {
        if self.groups_dirty {
            self.rebuild_groups();
        }
        let n = self.groups.len();
        if n == 0 {
            return false;
        }
        let mut progressed = false;
        let now = Instant::now();
        self.now_str = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        // Start after the container polled last, so a full batch never starves the containers after it.
        let start = (self.poll_cursor + 1) % n;
        for i in 0..n {
            let g = (start + i) % n;
            self.poll_cursor = g;
            for j in 0..self.groups.get(g).map_or(0, Vec::len) {
                let slot = self.groups[g][j];
                // A record cut by a rotation goes on in the next file (before an idle file would ship it as it is).
                if let Some(&next) = self.groups[g].get(j + 1) {
                    self.carry_over(slot, next);
                }
                if self.poll_file(slot, now) {
                    progressed = true;
                    break;
                }
            }
            if self.batch.buf.len() >= self.cfg.batch_bytes {
                break;
            }
        }
        progressed
    }

    pub(super) fn reset(&mut self, slot: u64, why: &str) {
        // Records carried in from an older file are shipped as they are (their older parts are not read again).
        if let Some(t) = self.files.get_mut(&slot) {
            if t.parser.carried_holds().next().is_some() {
                self.entries.clear();
                t.parser.flush_carried(&mut self.entries);
                self.emit(slot);
            }
        }
        let Some(mut t) = self.files.remove(&slot) else {
            return;
        };
        tracing::info!(path = %t.path.display(), reason = why, "file truncated or replaced; reading from offset 0");
        self.metrics.truncations.inc_by(1);
        let new_slot = self.next_slot;
        self.next_slot += 1;
        let pc = self.parser_config(&t.ctx.meta);
        t.slot = new_slot;
        t.generation = None;
        t.read_offset = 0;
        t.carry.clear();
        t.skip_from = None;
        t.kept.clear();
        t.near = 0;
        t.parser = FileParser::new(pc);
        t.committed = 0;
        t.lent = None;
        t.lost_from = None;
        // The new content has no compressed copy; the old content's copy (if any) is a file of its own now.
        if let Some((_, key, _)) = t.gz_copy.take() {
            if self.by_inode.get(&key) == Some(&slot) {
                self.by_inode.remove(&key);
            }
        }
        self.by_inode.insert((t.dev, t.ino), new_slot);
        self.files.insert(new_slot, t);
        self.groups_dirty = true;
        // A copytruncate copy of the old content may have just appeared: find it before reading the new content, so
        // the copy (an older file of the container) is read first.
        self.last_scan = Instant::now() - self.cfg.rescan_interval;
    }

    pub(super) fn poll_file(&mut self, slot: u64, now: Instant) -> bool {
        let Some(t) = self.files.get_mut(&slot) else {
            return false;
        };
        if t.file.is_none() {
            if t.compressed && !t.done {
                return self.poll_gz(slot, now);
            }
            // A compressed file read to its end may still hold records waiting for the container's next file.
            return t.parser.has_pending() && self.idle(slot, now);
        }
        let file = t.file.as_ref().expect("checked");
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return false,
        };
        t.size = size;
        t.disk = size;
        // Identity of a file whose first line was not complete when it was found (or after truncation): its head.
        if t.generation.is_none() {
            match fingerprint::read_head(file) {
                Ok(Some(head)) => {
                    let g = fingerprint::generation(&t.ctx.meta.dir, &t.ctx.meta.base, &head);
                    self.identified(slot, g);
                }
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "reading file head failed");
                    return false;
                }
            }
        }
        let t = self.files.get_mut(&slot).expect("present");
        let file = t.file.as_ref().expect("checked");
        if size < t.read_offset {
            self.reset(slot, "size shrank");
            return true;
        }
        if size > t.read_offset {
            // Copytruncate refilled past the read position? The first line (it starts with a timestamp) tells
            // generations apart even when the bytes before the read position repeat (padded, fixed-width lines).
            // Checked at offset 0 too: a file identified while older files of its container were read first may
            // have been copied, truncated and refilled before its first read; reading the new content under the
            // old generation would give it the ids of the copy's records.
            if let Ok(Some(head)) = fingerprint::read_head(file) {
                if Some(fingerprint::generation(
                    &t.ctx.meta.dir,
                    &t.ctx.meta.base,
                    &head,
                )) != t.generation
                {
                    self.reset(slot, "first line changed");
                    return true;
                }
            }
            match fingerprint::near_hash(file, t.read_offset) {
                Ok(h) if t.read_offset > 0 && h != t.near => {
                    self.reset(slot, "content before the read position changed");
                    return true;
                }
                _ => {}
            }
        }
        if size == t.read_offset {
            return self.idle(slot, now);
        }
        // Read a chunk behind the carried incomplete line.
        let buf = &mut self.read_buf;
        buf.clear();
        if t.skip_from.is_none() {
            buf.extend_from_slice(&t.carry);
        }
        let carry_len = buf.len();
        let want = CHUNK.min((size - t.read_offset) as usize);
        buf.resize(carry_len + want, 0);
        let n = match file.read_at(&mut buf[carry_len..], t.read_offset) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %t.path.display(), error = %e, "read failed");
                return false;
            }
        };
        buf.truncate(carry_len + n);
        if n == 0 {
            return false;
        }
        let base = t.read_offset - carry_len as u64;
        t.read_offset += n as u64;
        t.near = if n >= fingerprint::NEAR_BYTES as usize {
            fingerprint::near_hash_of(buf)
        } else {
            fingerprint::near_hash(file, t.read_offset).unwrap_or(0)
        };
        self.split(slot, base, n, now);
        true
    }

    /// Reads the next chunk of a compressed file's decompressed stream (after decompressing up to a resumed offset).
    pub(super) fn poll_gz(&mut self, slot: u64, now: Instant) -> bool {
        let t = self.files.get_mut(&slot).expect("present");
        if t.generation.is_none() {
            return false;
        }
        if t.gz.is_none() {
            let discovery = &self.cfg.discovery;
            let opened = match t.gz_file.take() {
                Some(f) => Ok(gz::GzReader::from_file(f)),
                None => open::open(&t.path, Some((t.dev, t.ino)), |p| discovery.allows(p))
                    .map(gz::GzReader::from_file),
            };
            match opened {
                Ok(r) => t.gz = Some(r),
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "cannot open compressed file");
                    return false;
                }
            }
        }
        let r = t.gz.as_mut().expect("opened");
        let result = if r.pos() < t.read_offset {
            match r.skip_towards(t.read_offset) {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!(path = %t.path.display(), offset = t.read_offset, size = r.pos(), "compressed file shorter than its checkpoint; nothing more to read");
                    Ok(0)
                }
                Err(e) => Err(e),
            }
        } else {
            let buf = &mut self.read_buf;
            buf.clear();
            if t.skip_from.is_none() {
                buf.extend_from_slice(&t.carry);
            }
            let carry_len = buf.len();
            buf.resize(carry_len + CHUNK, 0);
            let got = r.read(&mut buf[carry_len..]);
            buf.truncate(carry_len + *got.as_ref().unwrap_or(&0));
            got
        };
        match result {
            Ok(0) => {
                // The end of a compressed file: nothing will ever follow, so a last line without `\n` is shipped as it
                // is. Pending partial lines and multiline records wait for the container's next file (`carry_over`),
                // or are shipped as they are once the file is dormant (`idle`).
                t.gz = None;
                t.done = true;
                t.size = t.read_offset;
                self.entries.clear();
                let end = t.read_offset;
                if let Some(skip_start) = t.skip_from.take() {
                    let kept = std::mem::take(&mut t.kept);
                    over_long(
                        &mut t.parser,
                        self.cfg.over_long,
                        &kept,
                        skip_start,
                        end,
                        now,
                        &mut self.entries,
                    );
                } else if !t.carry.is_empty() {
                    let line = std::mem::take(&mut t.carry);
                    let start = end - line.len() as u64;
                    let max = self.cfg.max_line_bytes;
                    if line.len() > max {
                        over_long(
                            &mut t.parser,
                            self.cfg.over_long,
                            &line[..max],
                            start,
                            end,
                            now,
                            &mut self.entries,
                        );
                    } else {
                        t.parser
                            .push_line(&line, start, end, false, now, &mut self.entries);
                    }
                    self.metrics.lines_read.inc_by(1);
                }
                tracing::info!(path = %t.path.display(), bytes = end, "compressed file read to its end");
                self.emit(slot);
                true
            }
            Ok(n) => {
                let base = t.read_offset - (self.read_buf.len() - n) as u64;
                t.read_offset += n as u64;
                self.split(slot, base, n, now);
                true
            }
            Err(e) => {
                // Corrupt or cut: what could not be decompressed is lost.
                tracing::warn!(path = %t.path.display(), error = %e, "decompressing failed");
                let from = t.consumed();
                let bytes = t.size.saturating_sub(from);
                let lines = bytes.div_ceil(t.line_bytes());
                t.gz = None;
                t.done = true;
                t.carry.clear();
                t.skip_from = None;
                t.read_offset = t.size.max(from);
                t.lost_from = Some(from);
                self.entries.clear();
                t.parser.flush_all(&mut self.entries);
                self.emit(slot);
                let t = self.files.get(&slot).expect("present");
                let (ctx, g, path) = (
                    t.ctx.clone(),
                    t.generation.unwrap_or(0),
                    t.path.to_string_lossy().into_owned(),
                );
                if bytes > 0 {
                    self.report_loss(&ctx, g, from, bytes, lines, &path, true);
                }
                true
            }
        }
    }

    /// Splits `self.read_buf` (the carried incomplete line, then `n` new bytes; it starts at file offset `base`)
    /// into lines for the slot's parser and emits the entries.
    pub(super) fn split(&mut self, slot: u64, base: u64, n: usize, now: Instant) {
        let t = self.files.get_mut(&slot).expect("present");
        let buf = &self.read_buf;
        t.last_data = now;
        self.metrics.bytes_read.inc_by(n as u64);
        t.carry.clear();
        let max = self.cfg.max_line_bytes;
        let policy = self.cfg.over_long;
        let mut pos = 0usize;
        let mut lines = 0u64;
        let entries = &mut self.entries;
        entries.clear();
        std::mem::swap(&mut t.parser.spare, &mut self.spare);
        while pos < buf.len() {
            let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
                break;
            };
            let line = &buf[pos..pos + nl];
            let start = base + pos as u64;
            let end = start + nl as u64 + 1;
            lines += 1;
            if let Some(skip_start) = t.skip_from.take() {
                // The end of an over-long line whose first part was kept in `kept`.
                let kept = std::mem::take(&mut t.kept);
                over_long(&mut t.parser, policy, &kept, skip_start, end, now, entries);
            } else if line.len() > max {
                over_long(
                    &mut t.parser,
                    policy,
                    &line[..max],
                    start,
                    end,
                    now,
                    entries,
                );
            } else {
                t.parser.push_line(line, start, end, false, now, entries);
            }
            pos += nl + 1;
        }
        // The incomplete rest: carried to the next read, or the start of an over-long line.
        let rest = &buf[pos..];
        if t.skip_from.is_none() {
            if rest.len() > max {
                t.kept.clear();
                if policy == OverLong::Truncate {
                    t.kept.extend_from_slice(&rest[..max]);
                }
                t.skip_from = Some(base + pos as u64);
            } else {
                t.carry.extend_from_slice(rest);
            }
        }
        t.lines_seen += lines;
        t.bytes_seen += pos as u64;
        t.parser.flush_expired(now, entries);
        std::mem::swap(&mut t.parser.spare, &mut self.spare);
        self.metrics.lines_read.inc_by(lines);
        self.emit(slot);
    }

    /// Nothing new in the file: flush timed-out multiline records, finish rotated or deleted files.
    pub(super) fn idle(&mut self, slot: u64, now: Instant) -> bool {
        let t = self.files.get_mut(&slot).expect("present");
        self.entries.clear();
        t.parser.flush_expired(now, &mut self.entries);
        let dormant = now.duration_since(t.last_data) >= DORMANT_AFTER;
        let finished = (t.deleted || t.rotated()) && dormant;
        if finished {
            // No more data will come (and no next file took the pending records): they are shipped as they are.
            t.parser.flush_all(&mut self.entries);
        } else if dormant && t.parser.has_partial() {
            // A partial line whose final part has not come for this long (the container died mid-line) is shipped
            // as it is, not held forever.
            t.parser.flush_partials(&mut self.entries);
        }
        let had = !self.entries.is_empty();
        if had {
            self.emit(slot);
        }
        let t = self.files.get_mut(&slot).expect("present");
        if finished && t.carry.is_empty() && t.skip_from.is_none() {
            if t.deleted {
                if t.committed >= t.read_offset {
                    tracing::info!(path = %t.path.display(), "deleted file fully shipped; released");
                    self.forget(slot);
                    self.checkpoint_dirty = true;
                    self.groups_dirty = true;
                }
            } else if t.committed >= t.read_offset {
                // Rotated and fully shipped: close it; a rescan reopens it if it grows (a compressed one never does).
                t.file = None;
                t.done = t.compressed;
            }
        }
        had
    }

    /// Encodes the parsed entries of `slot` into the batch and records its safe position. A record that began in an
    /// older file of the container keeps that file's id and path, and lets that file be committed again.
    pub(super) fn emit(&mut self, slot: u64) {
        let t = self.files.get_mut(&slot).expect("present");
        if let Some(cache) = &self.cfg.pod_metadata {
            t.ctx.refresh_metadata(cache, &self.metrics);
        }
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        let mut notes = std::mem::take(&mut t.parser.carried_out).into_iter().peekable();
        let mut released = Vec::new();
        let t = &self.files[&slot];
        for (i, e) in self.entries.iter().enumerate() {
            let (ctx, generation) = match notes.next_if(|(at, _)| *at == i) {
                Some((_, c)) => {
                    released.extend(c.holds.iter().map(|&(s, _)| s));
                    let origin = c.holds.first().and_then(|&(s, _)| self.files.get(&s));
                    (origin.map_or(&t.ctx, |o| &o.ctx), c.generation)
                }
                None => (&t.ctx, t.generation.expect("identified before reading")),
            };
            let item =
                self.cfg
                    .encoder
                    .encode(e, ctx, generation, &self.now_str, &mut self.batch.buf);
            self.batch.items.push(item);
        }
        debug_assert!(notes.next().is_none(), "a carried-record note without its entry");
        // Keep the entries' buffers for the next lines (not those grown by huge records, and not without bound).
        for e in self.entries.drain(..) {
            if self.spare.len() < SPARE_ENTRIES && e.message.capacity() <= SPARE_MESSAGE_BYTES {
                self.spare.push(e);
            }
        }
        let t = self.files.get_mut(&slot).expect("present");
        let c = t.parser.counts;
        self.metrics.add_parse_counts(c);
        t.parser.counts = Default::default();
        let safe = t.safe();
        self.push_position(slot, safe);
        if !released.is_empty() {
            self.release(released);
        }
    }
}

fn over_long(
    parser: &mut FileParser,
    policy: OverLong,
    kept: &[u8],
    start: u64,
    end: u64,
    now: Instant,
    entries: &mut Vec<Entry>,
) {
    match policy {
        OverLong::Truncate => parser.push_line(kept, start, end, true, now, entries),
        OverLong::Drop => parser.dropped_line(),
    }
}
