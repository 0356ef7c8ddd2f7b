//! Benchmark mode (`Options::store_documents: false`): the framing checked cheaply, ids remembered
//! by hash, nothing stored, so a throughput benchmark measures the shipper rather than the server.

use super::*;

/// Action line of benchmark mode: exactly one of `create`/`index` with known metadata keys.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchAction<'a> {
    #[serde(borrow)]
    create: Option<BenchMeta<'a>>,
    #[serde(borrow)]
    index: Option<BenchMeta<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchMeta<'a> {
    #[serde(borrow, rename = "_index")]
    index: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, rename = "_id")]
    id: Option<std::borrow::Cow<'a, str>>,
}

/// Benchmark mode (`store_documents: false`): the same transport checks as normal mode ran before (content type,
/// gzip, size, final newline); here every action line must be a JSON object with exactly one `create` or `index`
/// (known keys only, `_type` refused; parsed with a borrowing deserializer, no allocation for plain strings), an
/// index must be named, every source line must be non-empty and framed as an object (`{...}`; its inside is not
/// parsed), ids are remembered by a 64-bit hash (409 on a repeated `create`), injected 429/500 failures still
/// apply, and the answer has the same per-item shape, written straight into one buffer and cut down by
/// `filter_path` like the normal mode's. Nothing is stored.
pub(super) fn bulk_bench(
    s: &Shared,
    url_index: Option<&str>,
    filter: Option<&FilterPath>,
    body: &[u8],
) -> Response {
    let bad = |line_no: usize, what: &str| {
        reject(
            s,
            error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                format!("Malformed action/metadata line [{line_no}]: {what}"),
            ),
        )
    };
    // (create?, index, id, hash of index + id) per item, checked before anything is applied.
    type Op<'a> = (bool, Cow<'a, str>, Option<Cow<'a, str>>, u64);
    let mut ops: Vec<Op<'_>> = Vec::with_capacity(body.len() / 256);
    let mut rest = &body[..body.len() - 1];
    let mut line_no = 0;
    while let Some(line) = next_line(&mut rest) {
        line_no += 1;
        // The compact form every shipper writes takes a byte-level fast path that accepts only what the strict
        // parse below accepts the same way; anything else (other keys or order, escapes, spaces) goes through it.
        let (create, index, id) = match compact_create(line) {
            Some((index, id)) => (true, Cow::Borrowed(index), Some(Cow::Borrowed(id))),
            None => {
                let act: BenchAction = match serde_json::from_slice(line) {
                    Ok(a) => a,
                    Err(e) => return bad(line_no, &e.to_string()),
                };
                let (create, meta) = match (act.create, act.index) {
                    (Some(m), None) => (true, m),
                    (None, Some(m)) => (false, m),
                    _ => return bad(line_no, "expected exactly one of create/index"),
                };
                let Some(index) = meta.index.or(url_index.map(Cow::Borrowed)) else {
                    return bad(line_no, "index is missing");
                };
                (create, index, meta.id)
            }
        };
        line_no += 1;
        match next_line(&mut rest) {
            Some(src) if src.len() >= 2 && src[0] == b'{' && src[src.len() - 1] == b'}' => {}
            _ => return bad(line_no - 1, "source line missing or not a JSON object"),
        }
        let h = fnv1a(
            fnv1a(0xcbf2_9ce4_8422_2325, index.as_bytes()) ^ 0xff,
            id.as_deref().unwrap_or("").as_bytes(),
        );
        ops.push((create, index, id, h));
    }
    // Which item fields the filter keeps (`None`: no filter), per action.
    let fields: [&str; 8] = [
        "_index",
        "_id",
        "_version",
        "result",
        "_shards",
        "_seq_no",
        "_primary_term",
        "status",
    ];
    let keep_for = |action: &str| -> ([Keep; 8], Keep) {
        let mut k = [Keep::All; 8];
        let mut err = Keep::All;
        if let Some(f) = filter {
            for (i, name) in fields.iter().enumerate() {
                k[i] = f.keep(&["items", action, name]);
            }
            err = f.keep(&["items", action, "error"]);
        }
        (k, err)
    };
    let keeps = [keep_for("create"), keep_for("index")];
    // A scalar is kept only when its own path matches; `items` also when a path below it does.
    let top = |name: &str| filter.is_none_or(|f| f.keep(&[name]) == Keep::All);
    let top_items = filter.is_none_or(|f| f.keep(&["items"]) != Keep::None);
    // Under the lock only each item's status is decided; the answer is written after it is released, so requests
    // handled on the server's other threads do not wait on it.
    let mut statuses: Vec<u16> = Vec::with_capacity(ops.len());
    {
        let mut g = s.inner.lock().unwrap();
        let (f429, f500) = (g.fail_429, g.fail_500);
        g.bench_ids.reserve(ops.len());
        for (create, _, id, h) in &ops {
            g.stats.items += 1;
            let r = if f429 + f500 > 0.0 {
                next_f64(&mut g.rng)
            } else {
                1.0
            };
            statuses.push(if r < f429 {
                g.stats.injected_429 += 1;
                429
            } else if r < f429 + f500 {
                g.stats.injected_500 += 1;
                500
            } else if id.is_none() || g.bench_ids.insert(*h) || !*create {
                g.stats.created += 1;
                201
            } else {
                g.stats.conflicts += 1;
                409
            });
        }
    }
    let mut items = Vec::with_capacity(ops.len() * 40 + 32);
    let mut errors = false;
    let mut shown = 0usize;
    for ((create, index, id, _), &status) in ops.iter().zip(&statuses) {
        // The error type and reason of a failed item.
        let err: Option<(&str, &str)> = match status {
            429 => Some(("es_rejected_execution_exception", "rejected execution")),
            500 => Some(("internal_server_error", "injected failure")),
            409 => Some((
                "version_conflict_engine_exception",
                "document already exists",
            )),
            _ => None,
        };
        errors |= err.is_some();
        let (action, (keep, keep_err)) = if *create {
            ("create", &keeps[0])
        } else {
            ("index", &keeps[1])
        };
        let mark = items.len();
        if shown > 0 {
            items.push(b',');
        }
        items.extend_from_slice(b"{\"");
        items.extend_from_slice(action.as_bytes());
        items.extend_from_slice(b"\":{");
        let inner = items.len();
        let field = |items: &mut Vec<u8>, i: usize, value: &dyn Fn(&mut Vec<u8>)| {
            if keep[i] == Keep::All {
                if items.len() > inner {
                    items.push(b',');
                }
                items.push(b'"');
                items.extend_from_slice(fields[i].as_bytes());
                items.extend_from_slice(b"\":");
                value(items);
            }
        };
        field(&mut items, 0, &|o| json_str(o, index));
        field(&mut items, 1, &|o| json_str(o, id.as_deref().unwrap_or("")));
        if err.is_none() {
            field(&mut items, 2, &|o| o.push(b'1'));
            field(&mut items, 3, &|o| o.extend_from_slice(b"\"created\""));
            field(&mut items, 4, &|o| {
                o.extend_from_slice(b"{\"total\":1,\"successful\":1,\"failed\":0}")
            });
            field(&mut items, 5, &|o| o.push(b'0'));
            field(&mut items, 6, &|o| o.push(b'1'));
        }
        field(&mut items, 7, &|o| {
            let code = [
                b'0' + (status / 100) as u8,
                b'0' + (status / 10 % 10) as u8,
                b'0' + (status % 10) as u8,
            ];
            o.extend_from_slice(&code)
        });
        if let Some((kind, reason)) = err {
            if *keep_err == Keep::All {
                if items.len() > inner {
                    items.push(b',');
                }
                items.extend_from_slice(b"\"error\":{\"type\":\"");
                items.extend_from_slice(kind.as_bytes());
                items.extend_from_slice(b"\",\"reason\":\"");
                items.extend_from_slice(reason.as_bytes());
                items.extend_from_slice(b"\"}");
            }
        }
        if items.len() == inner {
            // Everything of this item was filtered out: Elasticsearch leaves the empty item out.
            items.truncate(mark);
        } else {
            items.extend_from_slice(b"}}");
            shown += 1;
        }
    }
    let mut out = Vec::with_capacity(items.len() + 40);
    out.push(b'{');
    if top("took") {
        out.extend_from_slice(b"\"took\":1");
    }
    if top("errors") {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(if errors {
            b"\"errors\":true"
        } else {
            b"\"errors\":false"
        });
    }
    if shown > 0 && top_items {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"items\":[");
        out.extend_from_slice(&items);
        out.push(b']');
    }
    out.push(b'}');
    (StatusCode::OK, [("content-type", "application/json")], out).into_response()
}

/// The next `\n`-terminated line of `rest` (without the `\n`), advancing `rest` past it.
fn next_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    if rest.is_empty() {
        return None;
    }
    let (line, after) = match memchr::memchr(b'\n', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (*rest, &[][..]),
    };
    *rest = after;
    Some(line)
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("vec write");
}

/// A hasher for keys that are already 64-bit hashes.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// FNV-1a over `bytes`, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
