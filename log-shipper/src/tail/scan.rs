//! Discovery of files into the reader's registry: new, renamed, compressed, reused and deleted files, and
//! resuming a file identified by its content from its saved position.

use super::*;

impl Reader {
    /// Discovers new, renamed, compressed and deleted files; reports saved positions whose file is gone; lets go
    /// of the oldest deleted files past the held-bytes cap.
    pub(super) fn scan(&mut self) {
        self.last_scan = Instant::now();
        // Every removal of a slot drops its index entries (checked here, after all the work since the last scan).
        debug_assert!(
            self.by_inode.values().all(|s| self.files.contains_key(s)),
            "an inode index entry points at a removed file"
        );
        let found = self.cfg.discovery.scan();
        // Slots seen under their own identity, and slots whose `.gz` copy was seen.
        let mut seen: HashSet<u64> = HashSet::new();
        let mut seen_gz: HashSet<u64> = HashSet::new();
        for mut f in found {
            let md = match std::fs::metadata(&f.path) {
                Ok(md) => md,
                Err(_) if !gz::is_gz(&f.path) => {
                    // Compressed between the listing and now: its `.gz` stands in its place.
                    let gz_path = PathBuf::from(format!("{}.gz", f.path.display()));
                    match std::fs::metadata(&gz_path) {
                        Ok(md) => {
                            f.path = gz_path;
                            md
                        }
                        Err(_) => continue,
                    }
                }
                Err(_) => continue,
            };
            if !md.is_file() {
                continue;
            }
            let key = (md.dev(), md.ino());
            if let Some(&slot) = self.by_inode.get(&key) {
                if seen.contains(&slot) {
                    continue;
                }
                let Some(t) = self.files.get_mut(&slot) else {
                    // Never expected (every removal of a slot drops its index entries), but an index entry must
                    // not stop the reader: the file is looked at as a new one.
                    tracing::warn!(path = %f.path.display(), slot, "inode index pointed at a removed file; re-identifying");
                    self.by_inode.remove(&key);
                    self.scan_new(f, key, &md, &mut seen, &mut seen_gz);
                    continue;
                };
                if t.gz_copy.as_ref().is_some_and(|(_, k, _)| *k == key) {
                    let stat = (md.len(), md.mtime());
                    if t.gz_copy.as_ref().is_some_and(|(_, _, s)| *s == stat) {
                        seen_gz.insert(slot);
                        continue;
                    }
                    // The copy's inode now holds something else: forget the link and look at it as a new file.
                    t.gz_copy = None;
                    self.by_inode.remove(&key);
                } else {
                    // A closed (dormant) file's inode may have been freed and reused by a new file: same inode,
                    // different content. Open files cannot be reused (we hold them), so only closed ones are checked;
                    // a `.gz` is written once, so its size and mtime tell.
                    let reused = !t.holds_identity()
                        && if t.compressed {
                            t.gz_stat != (md.len(), md.mtime())
                        } else {
                            let discovery = &self.cfg.discovery;
                            let g = open::open(&f.path, Some(key), |p| discovery.allows(p))
                                .ok()
                                .and_then(|file| fingerprint::read_head(&file).ok().flatten())
                                .map(|h| fingerprint::generation(&f.meta.dir, &f.meta.base, &h));
                            g != t.generation
                        };
                    if !reused {
                        seen.insert(slot);
                        if t.generation.is_none() {
                            // Identify it now, even if reading is held up (backpressure, older files first): a
                            // `.gz` of it must be recognised, and a checkpoint must name it.
                            let head = t.file.as_ref().map(fingerprint::read_head);
                            if let Some(Ok(Some(h))) = head {
                                let g =
                                    fingerprint::generation(&t.ctx.meta.dir, &t.ctx.meta.base, &h);
                                self.identified(slot, g);
                            }
                        }
                        let t = self.files.get_mut(&slot).expect("indexed");
                        if t.path != f.path {
                            tracing::debug!(from = %t.path.display(), to = %f.path.display(), "file renamed");
                            t.path = f.path.clone();
                            self.groups_dirty = true;
                        }
                        t.deleted = false;
                        if !t.compressed {
                            t.size = md.len();
                            t.disk = md.len();
                        }
                        if !t.held() && !t.compressed && md.len() != t.read_offset {
                            let discovery = &self.cfg.discovery;
                            match open::open(&f.path, Some(key), |p| discovery.allows(p)) {
                                Ok(file) => t.file = Some(file),
                                Err(e) => refused(&self.metrics, &mut self.refused, &f.path, &e),
                            }
                        }
                        continue;
                    }
                    // The old slot keeps what it still holds (a deleted file read through another handle) and
                    // is forgotten like any deleted file; only its inode number goes to the new file.
                    tracing::debug!(path = %f.path.display(), "inode number reused by a new file");
                    self.by_inode.remove(&key);
                }
            }
            self.scan_new(f, key, &md, &mut seen, &mut seen_gz);
        }
        let mut gone = Vec::new();
        for (slot, t) in self.files.iter_mut() {
            if seen.contains(slot) {
                continue;
            }
            if seen_gz.contains(slot) {
                // The original is gone; its `.gz` carries the identity from now on (same content, same offsets).
                let (path, key, stat) = t.gz_copy.take().expect("seen through its copy");
                tracing::debug!(path = %path.display(), "original of a compressed file removed");
                if self.by_inode.get(&(t.dev, t.ino)) == Some(slot) {
                    self.by_inode.remove(&(t.dev, t.ino));
                }
                (t.dev, t.ino) = key;
                t.path = path;
                t.gz_stat = stat;
                t.compressed = true;
                t.deleted = false;
                // Finished through the original handle: nothing left to decompress.
                t.done = t.file.is_none();
                self.groups_dirty = true;
                self.checkpoint_dirty = true;
                continue;
            }
            t.deleted = true;
            if !t.held() && (t.committed >= t.read_offset || t.generation.is_none()) {
                // Closed, fully shipped and now deleted: forget it.
                gone.push(*slot);
            }
        }
        for slot in gone {
            self.forget(slot);
            self.checkpoint_dirty = true;
            self.groups_dirty = true;
        }
        if !self.saved_checked && !self.cfg.discovery.watch_roots().is_empty() {
            self.saved_checked = true;
            self.report_lost_saved();
        }
        self.enforce_deleted_cap();
    }

    /// Drops a slot and the inode numbers that still point to it (a number reused by another file stays with it).
    pub(super) fn forget(&mut self, slot: u64) {
        let Some(t) = self.files.remove(&slot) else {
            return;
        };
        let mut keys = vec![(t.dev, t.ino)];
        keys.extend(t.gz_copy.map(|(_, k, _)| k));
        for k in keys {
            if self.by_inode.get(&k) == Some(&slot) {
                self.by_inode.remove(&k);
            }
        }
        self.groups_dirty = true;
    }

    /// A file's generation is known: resume from its saved position (found by inode, else by generation: a file
    /// compressed or renamed while the shipper was down has a new inode but the same first line).
    pub(super) fn identified(&mut self, slot: u64, g: u64) {
        let t = self.files.get_mut(&slot).expect("present");
        t.generation = Some(g);
        let key = (t.dev, t.ino);
        let by_inode = self.saved.get(&key).is_some_and(|p| p.generation == g);
        let saved_key = if by_inode {
            Some(key)
        } else {
            self.saved
                .iter()
                .find(|(_, p)| p.generation == g)
                .map(|(k, _)| *k)
        };
        let Some(p) = saved_key.and_then(|k| self.saved.remove(&k)) else {
            return;
        };
        if t.compressed || p.offset <= t.size {
            t.read_offset = p.offset;
            t.committed = p.offset;
            // A compressed file read to its end before: nothing to decompress (and nothing to hold).
            t.done = t.compressed && t.size > 0 && p.offset >= t.size;
            if t.done {
                t.gz_file = None;
            }
            if let Some(file) = &t.file {
                t.near = fingerprint::near_hash(file, p.offset).unwrap_or(0);
            }
            tracing::info!(path = %t.path.display(), offset = p.offset, compressed = t.compressed, "resuming from checkpoint");
        } else {
            tracing::warn!(path = %t.path.display(), offset = p.offset, size = t.size, "checkpoint beyond the end of the file; reading from offset 0");
        }
    }

    /// A file not known by its inode: the `.gz` of a tracked file (linked to it), or a new file to track,
    /// identified by its head (of the decompressed stream for a `.gz`).
    fn scan_new(
        &mut self,
        f: crate::discovery::Found,
        key: (u64, u64),
        md: &std::fs::Metadata,
        seen: &mut HashSet<u64>,
        seen_gz: &mut HashSet<u64>,
    ) {
        let is_gz = gz::is_gz(&f.path);
        // A new file: identify it by its head (of the decompressed stream for a `.gz`).
        let discovery = &self.cfg.discovery;
        let file = match open::open(&f.path, Some(key), |p| discovery.allows(p)) {
            Ok(file) => file,
            Err(e) => {
                refused(&self.metrics, &mut self.refused, &f.path, &e);
                return;
            }
        };
        let head = if is_gz {
            gz::read_head(&file)
        } else {
            fingerprint::read_head(&file)
        };
        let generation = match head {
            Ok(h) => h.map(|h| fingerprint::generation(&f.meta.dir, &f.meta.base, &h)),
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "reading the file's head failed");
                None
            }
        };
        // A `.gz` is complete when it appears: one that cannot be decompressed never will be.
        let broken_gz = is_gz && generation.is_none();
        if is_gz {
            // The compressed copy of a file being tracked: the slot goes on (through its open handle if any)
            // and takes the `.gz` as its identity once the original is gone.
            let original = generation.and_then(|g| self.original_of(&f.path, g));
            if let Some(slot) = original {
                let t = self.files.get_mut(&slot).expect("found");
                tracing::debug!(path = %t.path.display(), gz = %f.path.display(), "file compressed");
                t.gz_copy = Some((f.path.clone(), key, (md.len(), md.mtime())));
                self.by_inode.insert(key, slot);
                seen_gz.insert(slot);
                return;
            }
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        let pc = self.parser_config(&f.meta);
        let path_str = f.path.to_string_lossy().into_owned();
        let (_, order) = order_of(&f.meta, &f.path);
        let size = if is_gz {
            gz::trailer_size(&file).unwrap_or(0)
        } else {
            md.len()
        };
        let t = Tracked {
            slot,
            path: f.path.clone(),
            ctx: FileContext::new(f.meta, &path_str),
            gz_file: is_gz.then(|| file.try_clone().ok()).flatten(),
            file: (!is_gz).then_some(file),
            dev: key.0,
            ino: key.1,
            generation: None,
            compressed: is_gz,
            gz: None,
            gz_copy: None,
            gz_stat: (md.len(), md.mtime()),
            done: false,
            size,
            disk: md.len(),
            lost_from: None,
            lines_seen: 0,
            bytes_seen: 0,
            order,
            read_offset: 0,
            carry: Vec::new(),
            skip_from: None,
            kept: Vec::new(),
            near: 0,
            parser: FileParser::new(pc),
            committed: 0,
            lent: None,
            deleted: false,
            last_data: Instant::now(),
        };
        tracing::info!(path = %f.path.display(), "tailing");
        seen.insert(slot);
        self.by_inode.insert(key, slot);
        self.files.insert(slot, t);
        self.groups_dirty = true;
        if let Some(g) = generation {
            self.identified(slot, g);
        } else if broken_gz {
            self.unreadable_gz(slot);
        }
    }

    /// The tracked plain file a new `.gz` is the compressed copy of: the file it was made from (`<path>.gz`), else
    /// one with the same content that is no longer at a live file's name (renamed, then compressed between two
    /// scans). Never the live file itself: after copytruncate the live file may still hold the copy's content for a
    /// moment, and pairing the copy's `.gz` with it would mix the two files.
    fn original_of(&self, gz_path: &std::path::Path, g: u64) -> Option<u64> {
        let plain = gz_path.with_extension("");
        let mut renamed = None;
        for (slot, t) in &self.files {
            if t.generation != Some(g) || t.compressed || t.gz_copy.is_some() {
                continue;
            }
            if t.path == plain {
                return Some(*slot);
            }
            let live = !t.rotated()
                && std::fs::metadata(&t.path).is_ok_and(|m| (m.dev(), m.ino()) == (t.dev, t.ino));
            if !live {
                renamed.get_or_insert(*slot);
            }
        }
        renamed
    }
}

/// Logs a file that could not be opened; one refused on purpose (see [`open::OpenError::refused`]) is counted, and
/// logged once per path.
fn refused(
    metrics: &Metrics,
    seen: &mut HashSet<PathBuf>,
    path: &std::path::Path,
    e: &open::OpenError,
) {
    if !e.refused() {
        tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
        return;
    }
    metrics.files_refused.inc();
    if seen.len() < 10_000 && seen.insert(path.to_path_buf()) {
        tracing::warn!(error = %e, "log file refused");
    }
}
