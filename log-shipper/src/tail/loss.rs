//! Log data that can no longer be shipped: saved positions whose file is gone, unreadable `.gz` files and deleted
//! files let go past the held-bytes cap — each logged, counted and recorded as a gap.

use super::*;

impl Reader {
    /// Saved positions whose file no longer exists (deleted while the shipper was down): their unread bytes are lost.
    pub(super) fn report_lost_saved(&mut self) {
        let lost: Vec<Position> = self.saved.drain().map(|(_, p)| p).collect();
        // The same content under another inode (a copytruncate copy of a file that was then truncated) is not lost.
        let tracked: HashSet<u64> = self.files.values().filter_map(|t| t.generation).collect();
        for p in lost {
            let bytes = p.size.saturating_sub(p.offset);
            if bytes == 0 || tracked.contains(&p.generation) {
                continue;
            }
            let path = PathBuf::from(&p.path);
            let Some(meta) = self.cfg.discovery.meta_of(&path) else {
                tracing::warn!(path = %p.path, bytes, "a checkpointed file outside the log roots is gone; its unread bytes are lost");
                continue;
            };
            let lines = bytes.div_ceil(p.line_bytes.max(1));
            let ctx = FileContext::new(meta, &p.path);
            self.report_loss(&ctx, p.generation, p.offset, bytes, lines, &p.path, true);
        }
        self.checkpoint_dirty = true;
    }

    /// Logs, counts and records (a gap record in the output) bytes of a file that can no longer be shipped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn report_loss(
        &mut self,
        ctx: &FileContext,
        generation: u64,
        offset: u64,
        bytes: u64,
        lines: u64,
        file: &str,
        estimated: bool,
    ) {
        let m = &ctx.meta;
        tracing::warn!(
            namespace = %m.namespace, pod = %m.pod, container = %m.container, file, offset, bytes, lines,
            lines_estimated = estimated,
            "log data deleted before it was shipped: lost"
        );
        self.metrics
            .lost(&m.namespace, &m.pod, &m.container, bytes, lines);
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        self.now_str = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let item = self.cfg.encoder.encode_gap(
            ctx,
            generation,
            offset,
            bytes,
            lines,
            file,
            &self.now_str,
            &mut self.batch.buf,
        );
        self.batch.items.push(item);
    }

    /// A `.gz` that cannot be decompressed (or holds no full line): its content is unknown, so the loss is its
    /// trailer's size and the lines are estimated. It stays tracked (by inode) so this is reported once.
    pub(super) fn unreadable_gz(&mut self, slot: u64) {
        let t = self.files.get_mut(&slot).expect("present");
        let path = t.path.to_string_lossy().into_owned();
        let g = fingerprint::hash64(0x67, &[path.as_bytes()]);
        t.generation = Some(g);
        t.done = true;
        t.gz_file = None;
        t.lost_from = Some(0);
        let bytes = t.size;
        let ctx = t.ctx.clone();
        if bytes > 0 {
            self.report_loss(
                &ctx,
                g,
                0,
                bytes,
                bytes.div_ceil(DEFAULT_LINE_BYTES),
                &path,
                true,
            );
        }
    }

    /// Past the cap on bytes held in deleted files, lets go of the oldest (their unread rest is lost and reported).
    pub(super) fn enforce_deleted_cap(&mut self) {
        loop {
            let mut held = 0u64;
            let mut oldest = None;
            for (slot, t) in &self.files {
                if t.deleted && t.held() {
                    held += t.disk;
                    oldest.get_or_insert(*slot);
                }
            }
            if held <= self.cfg.deleted_files_max_bytes {
                return;
            }
            let Some(slot) = oldest else { return };
            self.let_go(slot);
        }
    }

    /// Closes a deleted file before its end: pending records are shipped as they are, the rest is lost.
    pub(super) fn let_go(&mut self, slot: u64) {
        let max = self.cfg.deleted_files_max_bytes;
        let t = self.files.get_mut(&slot).expect("present");
        if t.generation.is_none() {
            // Never identified (no full first line was ever seen): the gap record's id comes from the path.
            t.generation = Some(fingerprint::hash64(
                0x67,
                &[t.path.to_string_lossy().as_bytes()],
            ));
        }
        let from = t.consumed();
        if t.file.is_none() && t.gz.is_none() {
            // A compressed file held but not read yet: decompress up to where reading stopped.
            if let Some(f) = t.gz_file.take() {
                let mut r = gz::GzReader::from_file(f);
                while r.pos() < t.read_offset && r.skip_towards(t.read_offset).unwrap_or(false) {}
                t.gz = Some(r);
            }
        }
        // Count the lines that will not be read from the file still held (a last line without `\n` counts too).
        let mut lines = 0u64;
        let mut end = from;
        let mut last = b'\n';
        let buf = &mut self.read_buf;
        buf.resize(CHUNK, 0);
        if let Some(file) = &t.file {
            loop {
                match file.read_at(buf, end) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                        last = buf[n - 1];
                        end += n as u64;
                    }
                }
            }
        } else if let Some(r) = &mut t.gz {
            // The gzip reader is at `read_offset`; the carried (or skipped) bytes before it count too.
            end = t.read_offset;
            if end > from {
                last = 0;
            }
            loop {
                match r.read(buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                        last = buf[n - 1];
                        end += n as u64;
                    }
                }
            }
        }
        if last != b'\n' && end > from {
            lines += 1;
        }
        let bytes = end - from;
        tracing::warn!(path = %t.path.display(), max_bytes = max, "deleted files held past deleted_files_max_bytes: letting go of the oldest");
        t.file = None;
        t.gz = None;
        t.gz_file = None;
        t.done = true;
        t.carry.clear();
        t.skip_from = None;
        t.kept.clear();
        t.read_offset = end;
        t.size = end;
        t.lost_from = Some(from);
        self.entries.clear();
        t.parser.flush_all(&mut self.entries);
        self.emit(slot);
        let t = self.files.get(&slot).expect("present");
        let (ctx, generation, path) = (
            t.ctx.clone(),
            t.generation.unwrap_or(0),
            t.path.to_string_lossy().into_owned(),
        );
        if bytes > 0 {
            self.report_loss(&ctx, generation, from, bytes, lines, &path, false);
        }
        self.checkpoint_dirty = true;
    }
}
