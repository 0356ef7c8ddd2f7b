// The UI's client of the Prometheus-compatible API it is served with (relative URLs).

export const stats = { requests: 0, pending: 0, failed: 0, listeners: [] };

export class ApiError extends Error {
  constructor(message, status, url) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

function changed() {
  for (const f of stats.listeners) f(stats);
}

/** GET (or another method) returning parsed JSON; errors carry the server's message. */
export async function request(url, opts = {}) {
  stats.requests++;
  stats.pending++;
  changed();
  try {
    let r;
    try {
      r = await fetch(url, opts);
    } catch (e) {
      stats.failed++;
      throw new ApiError(`cannot reach the server: ${e.message}`, 0, url);
    }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (!r.ok || (body && body.status === 'error')) {
      const msg = (body && (body.error || body.message)) || text.trim() || r.statusText;
      throw new ApiError(msg, r.status, url);
    }
    return body;
  } finally {
    stats.pending--;
    changed();
  }
}

let configPromise = null;
/** The UI's settings from the server: metric resolution and retention, in ms. */
export function config() {
  if (!configPromise) {
    configPromise = request('ui/config.json').catch(() => ({ resolution_ms: 15000, retention_ms: 900000 }));
  }
  return configPromise;
}

/** Instant query: the `result` of a vector or scalar. */
export async function query(expr, timeSec) {
  const p = new URLSearchParams({ query: expr });
  if (timeSec !== undefined) p.set('time', String(timeSec));
  const body = await request(`api/v1/query?${p}`);
  return body.data;
}

/** Range query: the matrix. */
export async function queryRange(expr, startSec, endSec, stepSec) {
  const p = new URLSearchParams({ query: expr, start: String(startSec), end: String(endSec), step: String(stepSec) });
  const body = await request(`api/v1/query_range?${p}`);
  return body.data.result;
}

/** Vector result as a list of {metric, value:number}. */
export async function vector(expr) {
  const data = await query(expr);
  if (data.resultType === 'scalar') return [{ metric: {}, value: Number(data.result[1]) }];
  return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** PromQL string literal. */
export function str(s) {
  return JSON.stringify(String(s));
}

/** Regex matching exactly the given values (for `=~`). */
export function anyOf(values) {
  return values.map((v) => String(v).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
}
