// vigil's web UI: hash routes, the time range, and the pages (cluster → node → pod → container,
// namespace, explore, alerts, problems). Every number comes from the PromQL API, aggregated there.

import { stats, request, config, queryRange, vector, str, anyOf, ApiError } from './api.js';
import { drawChart, formatValue, sparkline } from './plot.js';

// ---------- small DOM helpers (text is always set as text, never as HTML) ----------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'html') e.innerHTML = v; // only for markup built here (sparklines)
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const RANGES = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400 };

function parseHash() {
  const h = decodeURI(location.hash.slice(1)) || '/';
  const q = h.indexOf('?');
  const path = q < 0 ? h : h.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : location.hash.slice(location.hash.indexOf('?') + 1));
  return { path, params };
}

/** A link to `path` keeping the current time range. */
function link(path, extra = {}) {
  const { params } = parseHash();
  const p = new URLSearchParams();
  for (const k of ['range', 'from', 'to']) if (params.get(k)) p.set(k, params.get(k));
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  const qs = p.toString();
  return `#${path.split('/').map(encodeURIComponent).join('/')}${qs ? `?${qs}` : ''}`;
}

function setParams(changes) {
  const { path, params } = parseHash();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined) params.delete(k);
    else params.set(k, v);
  }
  location.hash = `${path}?${params}`;
}

// ---------- time range ----------

let cfg = { resolution_ms: 15000, retention_ms: 900000 };

function currentRange() {
  const { params } = parseHash();
  const res = Math.max(1, cfg.resolution_ms / 1000);
  const from = Number(params.get('from'));
  const to = Number(params.get('to'));
  let start, end, label, relative;
  if (params.get('range') === 'custom' && from && to && to > from) {
    start = from; end = to; label = 'custom'; relative = false;
  } else {
    label = RANGES[params.get('range')] ? params.get('range') : defaultRange();
    end = Date.now() / 1000; start = end - RANGES[label]; relative = true;
  }
  const step = Math.max(res, Math.ceil((end - start) / 400));
  return { start: Math.floor(start / step) * step, end: Math.ceil(end / step) * step, step, label, relative, res };
}

function defaultRange() {
  return cfg.retention_ms <= 900000 ? '15m' : '1h';
}

function syncRangeControls() {
  const r = currentRange();
  for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === r.label));
  const form = document.querySelector('.range .custom');
  if (r.label === 'custom') {
    form.from.value = toLocalInput(r.start);
    form.to.value = toLocalInput(r.end);
  }
}

function toLocalInput(sec) {
  const d = new Date(sec * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function setupRangeControls() {
  const form = document.querySelector('.range .custom');
  const customBtn = document.querySelector('[data-range="custom"]');
  for (const b of document.querySelectorAll('[data-range]')) {
    b.addEventListener('click', () => {
      if (b.dataset.range === 'custom') {
        form.hidden = !form.hidden;
        customBtn.setAttribute('aria-expanded', String(!form.hidden));
        if (!form.hidden) {
          const r = currentRange();
          form.from.value = toLocalInput(r.start);
          form.to.value = toLocalInput(r.end);
          form.from.focus();
        }
        return;
      }
      form.hidden = true;
      setParams({ range: b.dataset.range, from: null, to: null });
    });
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const from = new Date(form.from.value).getTime() / 1000;
    const to = new Date(form.to.value).getTime() / 1000;
    if (!(to > from)) { form.to.setCustomValidity('"to" must be after "from"'); form.reportValidity(); return; }
    form.to.setCustomValidity('');
    form.hidden = true;
    setParams({ range: 'custom', from: String(Math.floor(from)), to: String(Math.floor(to)) });
  });
}

// ---------- PromQL building blocks ----------

/** `label_replace(e1,"series","a","","") or ...`: several expressions in one query, told apart by `series`. */
function tagged(pairs, tag = 'series') {
  return pairs.map(([expr, name]) => `label_replace(${expr}, ${str(tag)}, ${str(name)}, "", "")`).join(' or ');
}

function sel(matchers) {
  return `{${Object.entries(matchers).map(([k, v]) => `${k}=${str(v)}`).join(',')}}`;
}

// ---------- cards ----------

/** A page context: its main element, its cards' loaders, and whether it is still shown. */
class Page {
  constructor(main) {
    this.main = main;
    this.loaders = [];
    this.alive = true;
  }
  add(loader) { this.loaders.push(loader); return loader; }
  async loadAll() {
    await Promise.all(this.loaders.map((l) => l().catch((e) => console.warn(e))));
  }
}

function card(title, ...children) {
  return el('section', { class: 'card', 'aria-label': title }, el('header', {}, el('h2', {}, title)), ...children);
}

function errorText(e) {
  if (e instanceof ApiError) return e.status ? `${e.message} (HTTP ${e.status})` : e.message;
  return String(e && e.message ? e.message : e);
}

/**
 * Several charts fed by one range query: each chart lists [expr, seriesName, {ref}] parts;
 * the legend of a part is its name, or the value of `by` labels for per-entity expressions.
 */
function chartGroup(page, parent, charts) {
  const boxes = charts.map((c) => {
    const chartEl = el('div', { class: 'chart', 'data-chart': c.id });
    const explore = c.explore || c.parts[0][0];
    const note = el('p', { class: 'note' });
    const box = card(c.title, chartEl, note);
    box.querySelector('header').append(el('a', { href: link('/explore', { expr: explore }), class: 'explore-link' }, 'open in explore'));
    parent.append(box);
    return { c, chartEl, note, plot: null };
  });
  const exprParts = [];
  boxes.forEach((b, i) => b.c.parts.forEach((p, j) => exprParts.push([p[0], `${i}:${j}`])));
  const expr = tagged(exprParts, '__vigil_part');
  return page.add(async () => {
    const r = currentRange();
    let result;
    try {
      result = await queryRange(expr, r.start, r.end, r.step);
    } catch (e) {
      for (const b of boxes) showMsg(b.chartEl, `Query failed: ${errorText(e)}`, true);
      throw e;
    }
    boxes.forEach((b, i) => {
      const lines = [];
      for (const s of result) {
        const [ci, pj] = (s.metric.__vigil_part || '').split(':').map(Number);
        if (ci !== i) continue;
        const part = b.c.parts[pj];
        const opts = part[2] || {};
        const name = opts.by ? opts.by.map((k) => s.metric[k]).filter(Boolean).join(' ') + (part[1] ? ` ${part[1]}` : '') : part[1];
        lines.push({ label: name || '{}', ref: opts.ref, order: pj, points: s.values.map(([t, v]) => [t, Number(v)]) });
      }
      lines.sort((a, b2) => a.order - b2.order || a.label.localeCompare(b2.label));
      if (b.plot) { b.plot.vigilObserver.disconnect(); b.plot.destroy(); b.plot = null; }
      const usage = lines.filter((l) => !l.ref);
      if (!usage.length) {
        showMsg(b.chartEl, b.c.empty || 'No data in this time range.');
        b.chartEl.dataset.series = '0';
      } else {
        b.plot = drawChart(b.chartEl, lines, { unit: b.c.unit, startSec: r.start, endSec: r.end });
      }
      const missingRefs = (b.c.refsNote && !lines.some((l) => l.ref)) ? b.c.refsNote : '';
      const first = Math.min(...lines.flatMap((l) => (l.points.length ? [l.points[0][0]] : [])));
      const late = Number.isFinite(first) && first - r.start > 2 * r.step;
      const beyond = (r.end - r.start) * 1000 > cfg.retention_ms;
      const coverage = !late ? '' : `No data before ${new Date(first * 1000).toLocaleTimeString()}${beyond ? `: the aggregator keeps ${fmtDuration(cfg.retention_ms / 1000)} (--retention)` : ''}.`;
      b.note.textContent = [missingRefs, coverage].filter(Boolean).join(' ');
    });
  });
}

function showMsg(chartEl, text, isErr = false) {
  chartEl.textContent = '';
  chartEl.append(el('p', { class: isErr ? 'msg err' : 'msg', role: isErr ? 'alert' : undefined }, text));
}

function fmtDuration(sec) {
  if (sec >= 86400 && sec % 86400 === 0) return `${sec / 86400}d`;
  if (sec >= 3600 && sec % 3600 === 0) return `${sec / 3600}h`;
  if (sec >= 60 && sec % 60 === 0) return `${sec / 60}m`;
  return `${Math.round(sec)}s`;
}

function fmtAgo(sec) {
  if (sec < 90) return `${Math.round(sec)}s`;
  if (sec < 5400) return `${Math.round(sec / 60)}m`;
  return `${Math.round(sec / 3600)}h`;
}

/** Rows of per-entity values from one tagged instant query, keyed by `keyLabels`. */
async function entityTable(parts, keyLabels) {
  const res = await vector(tagged(parts.map(([e, n]) => [e, n]), '__vigil_col'));
  const rows = new Map();
  for (const { metric, value } of res) {
    const key = keyLabels.map((k) => metric[k] || '').join('\u0000');
    if (!rows.has(key)) rows.set(key, { labels: Object.fromEntries(keyLabels.map((k) => [k, metric[k] || ''])) });
    rows.get(key)[metric.__vigil_col] = value;
  }
  return [...rows.values()];
}

/** A sortable, filterable, paged table. cols: [{key, label, num, fmt(row), sort(row)}]. */
function dataTable(parent, cols, { pageSize = 50, filterLabel, sortKey, sortDesc = true, onPage, empty = 'Nothing to show.' } = {}) {
  const wrap = el('div', { class: 'tablewrap' });
  const pager = el('div', { class: 'pager' });
  const filter = filterLabel ? el('input', { type: 'search', placeholder: filterLabel, 'aria-label': filterLabel }) : null;
  if (filter) parent.append(el('div', { class: 'pager' }, filter));
  parent.append(wrap, pager);
  let rows = [], page = 0, key = sortKey, desc = sortDesc;
  filter?.addEventListener('input', () => { page = 0; render(); });
  function sorted() {
    const q = filter ? filter.value.trim().toLowerCase() : '';
    const col = cols.find((c) => c.key === key) || cols[0];
    const v = (r) => (col.sort ? col.sort(r) : r[col.key] ?? r.labels?.[col.key]);
    return rows
      .filter((r) => !q || Object.values(r.labels || {}).some((x) => String(x).toLowerCase().includes(q)))
      .sort((a, b) => {
        const x = v(a), y = v(b);
        const c = typeof x === 'number' || typeof y === 'number' ? (x ?? -Infinity) - (y ?? -Infinity) : String(x ?? '').localeCompare(String(y ?? ''));
        if (c) return desc ? -c : c;
        return Object.values(a.labels || {}).join().localeCompare(Object.values(b.labels || {}).join());
      });
  }
  function render() {
    const all = sorted();
    const pages = Math.max(1, Math.ceil(all.length / pageSize));
    page = Math.min(page, pages - 1);
    const shown = all.slice(page * pageSize, (page + 1) * pageSize);
    const thead = el('thead', {}, el('tr', {}, cols.map((c) => el('th', { class: c.num ? 'num' : '', scope: 'col', 'aria-sort': c.key === key ? (desc ? 'descending' : 'ascending') : undefined },
      el('button', { type: 'button', onclick: () => { desc = key === c.key ? !desc : !!c.num; key = c.key; render(); } }, c.label + (c.key === key ? (desc ? ' ▼' : ' ▲') : ''))))));
    const tbody = el('tbody', {}, shown.map((r) => el('tr', {}, cols.map((c) => el('td', { class: c.num ? 'num' : '' }, c.fmt ? c.fmt(r) : (r[c.key] ?? r.labels?.[c.key] ?? '–'))))));
    wrap.textContent = '';
    if (!all.length) wrap.append(el('p', { class: 'empty' }, rows.length ? 'No row matches the filter.' : empty));
    else wrap.append(el('table', {}, thead, tbody));
    pager.textContent = '';
    if (pages > 1) {
      pager.append(
        el('button', { type: 'button', class: 'btn light', disabled: page === 0 ? true : undefined, onclick: () => { page--; render(); } }, '‹ previous'),
        el('span', {}, `page ${page + 1} of ${pages} (${all.length} rows)`),
        el('button', { type: 'button', class: 'btn light', disabled: page >= pages - 1 ? true : undefined, onclick: () => { page++; render(); } }, 'next ›'));
    }
    if (onPage) onPage(shown);
  }
  return { set(r, emptyText) { rows = r; if (emptyText) empty = emptyText; render(); }, rerender: render };
}

function bar(frac) {
  const pct = Math.max(0, Math.min(100, frac * 100));
  return el('span', {}, el('span', { class: 'bar', 'aria-hidden': 'true' }, el('i', { style: `width:${pct.toFixed(0)}%` })), `${pct.toFixed(0)}%`);
}

// ---------- pages ----------

const CPU = (m) => `cpu_usage_rate${sel(m)} / 1000`;

async function overview(page) {
  const main = page.main;
  main.append(el('h1', {}, 'Cluster overview'));
  const tiles = el('div', { class: 'tiles', 'aria-label': 'Cluster summary' });
  main.append(tiles);
  page.add(async () => {
    const rows = await vector(tagged([
      ['count(memory_working_set{type="node"})', 'nodes'],
      ['count(memory_working_set{type="pod"})', 'pods'],
      ['count(count by (namespace_name) (memory_working_set{type="pod"}))', 'namespaces'],
      ['count(memory_working_set{type="pod_container"})', 'containers'],
      [`count(time() - timestamp(memory_working_set{type="node"}) > ${3 * cfg.resolution_ms / 1000})`, 'stale'],
      ['sum(cpu_usage_rate{type="node"}) / 1000', 'cpu'],
      ['sum(memory_working_set{type="node"})', 'memory'],
    ]));
    const v = Object.fromEntries(rows.map((r) => [r.metric.series, r.value]));
    tiles.textContent = '';
    const tile = (k, val, cls) => tiles.append(el('div', { class: `tile ${cls || ''}` }, el('div', { class: 'v' }, val), el('div', { class: 'k' }, k)));
    tile('nodes', v.nodes ?? 0);
    tile('stale nodes', v.stale ?? 0, v.stale ? 'bad' : '');
    tile('namespaces', v.namespaces ?? 0);
    tile('pods', v.pods ?? 0);
    tile('containers', v.containers ?? 0);
    tile('CPU in use (cores)', v.cpu === undefined ? '–' : formatValue(v.cpu, 'cores'));
    tile('memory in use', formatValue(v.memory, 'bytes'));
    if (!rows.length) tiles.append(el('p', { class: 'empty' }, 'No node has reported yet: the aggregator has no samples (check its --nodes / --source and the collectors).'));
  });

  const charts = el('div', { class: 'grid' });
  main.append(charts);
  const node = '{type="node"}';
  chartGroup(page, charts, [
    { id: 'cpu', title: 'CPU (cores)', unit: 'cores', parts: [
      [`sum(cpu_usage_rate${node}) / 1000`, 'usage'],
      [`sum(cpu_node_allocatable${node}) / 1000`, 'allocatable', { ref: 'allocatable' }],
      [`sum(cpu_node_capacity${node}) / 1000`, 'capacity', { ref: 'capacity' }]],
      refsNote: 'CPU capacity and allocatable come from the Kubernetes API source (--source); not known here.',
      empty: 'No CPU samples in this range.' },
    { id: 'memory', title: 'Memory', unit: 'bytes', parts: [
      [`sum(memory_working_set${node})`, 'working set'],
      [`sum(memory_usage${node})`, 'usage'],
      [`sum(memory_node_allocatable${node})`, 'allocatable', { ref: 'allocatable' }],
      [`sum(memory_node_capacity${node})`, 'capacity', { ref: 'capacity' }]],
      empty: 'No memory samples in this range.' },
    { id: 'filesystem', title: 'Filesystem', unit: 'bytes', parts: [
      [`sum(filesystem_usage${node})`, 'usage'],
      [`sum(filesystem_limit${node})`, 'capacity', { ref: 'capacity' }]],
      empty: 'No filesystem samples in this range.' },
  ]);

  const lower = el('div', { class: 'grid' });
  main.append(lower);
  const nodesCard = card('Nodes');
  nodesCard.style.gridColumn = '1 / -1';
  lower.append(nodesCard);
  const stale = 3 * cfg.resolution_ms / 1000;
  let sparkRows = [];
  let sparks = Promise.resolve();
  const table = dataTable(nodesCard, [
    { key: 'nodename', label: 'node', fmt: (r) => el('a', { href: link(`/node/${r.labels.nodename}`) }, r.labels.nodename) },
    { key: 'age', label: 'status', num: false, sort: (r) => r.age ?? 1e12, fmt: (r) => (r.age === undefined ? el('span', { class: 'status-bad' }, 'no samples')
      : r.age > stale ? el('span', { class: 'status-stale' }, `stale since ${fmtAgo(r.age)} ago`) : el('span', { class: 'status-ok' }, 'reporting')) },
    { key: 'cpu', label: 'CPU', num: true, fmt: (r) => `${formatValue(r.cpu, 'cores')}${r.cpucap ? ` / ${formatValue(r.cpucap, 'cores')}` : ''}` },
    { key: 'spark', label: currentRange().relative ? `CPU, last ${currentRange().label}` : 'CPU trend', sort: (r) => r.cpu, fmt: (r) => el('span', { class: 'sparkcell', 'data-node': r.labels.nodename }) },
    { key: 'mem', label: 'memory', num: true, fmt: (r) => formatValue(r.mem, 'bytes') },
    { key: 'memfrac', label: 'of capacity', sort: (r) => (r.memcap ? r.mem / r.memcap : -1), fmt: (r) => (r.memcap ? bar(r.mem / r.memcap) : '–') },
    { key: 'fsfrac', label: 'filesystem', sort: (r) => (r.fslim ? r.fs / r.fslim : -1), fmt: (r) => (r.fslim ? bar(r.fs / r.fslim) : '–') },
    { key: 'pods', label: 'pods', num: true },
  ], { pageSize: 25, filterLabel: 'Filter nodes', sortKey: 'cpu', onPage: (shown) => { sparkRows = shown; sparks = loadSparks().catch((e) => console.warn(e)); },
    empty: 'No nodes: none has reported to this aggregator yet.' });
  const by = (e) => `max by (nodename) (${e})`;
  page.add(async () => {
    const rows = await entityTable([
      [by(CPU({ type: 'node' })), 'cpu'],
      [by('cpu_node_capacity{type="node"} / 1000'), 'cpucap'],
      [by('memory_working_set{type="node"}'), 'mem'],
      [by('memory_node_capacity{type="node"}'), 'memcap'],
      [by('filesystem_usage{type="node"}'), 'fs'],
      [by('filesystem_limit{type="node"}'), 'fslim'],
      ['count by (nodename) (memory_working_set{type="pod"})', 'pods'],
      [by('time() - timestamp(memory_working_set{type="node"})'), 'age'],
    ], ['nodename']);
    table.set(rows.filter((r) => r.labels.nodename));
    await sparks;
  });
  async function loadSparks() {
    const names = sparkRows.map((r) => r.labels.nodename);
    if (!names.length) return;
    const r = currentRange();
    const res = await queryRange(`max by (nodename) (cpu_usage_rate{type="node",nodename=~${str(anyOf(names))}}) / 1000`, r.start, r.end, Math.max(r.step, (r.end - r.start) / 60));
    const byNode = new Map(res.map((s) => [s.metric.nodename, s.values.map(([t, v]) => [t, Number(v)])]));
    for (const cell of nodesCard.querySelectorAll('.sparkcell')) cell.innerHTML = sparkline(byNode.get(cell.dataset.node));
  }

  const top = card('Top pods');
  lower.append(top);
  const topBody = el('div');
  top.append(topBody);
  page.add(async () => {
    const rows = await vector(tagged([
      ['topk(10, cpu_usage_rate{type="pod"}) / 1000', 'cpu'],
      ['topk(10, memory_working_set{type="pod"})', 'mem'],
    ]));
    topBody.textContent = '';
    if (!rows.length) { topBody.append(el('p', { class: 'empty' }, 'No pods have reported.')); return; }
    for (const [kind, title, unit] of [['cpu', 'by CPU', 'cores'], ['mem', 'by memory', 'bytes']]) {
      const list = rows.filter((r) => r.metric.series === kind).sort((a, b) => b.value - a.value);
      topBody.append(el('h3', { class: 'note' }, title), el('div', { class: 'tablewrap' }, el('table', {}, el('tbody', {}, list.map((r) => el('tr', {},
        el('td', {}, el('a', { href: link(`/pod/${r.metric.namespace_name}/${r.metric.pod_name}`) }, `${r.metric.namespace_name}/${r.metric.pod_name}`)),
        el('td', {}, el('a', { href: link(`/node/${r.metric.nodename}`) }, r.metric.nodename || '')),
        el('td', { class: 'num' }, formatValue(r.value, unit))))))));
    }
  });

  const alertsCard = card('Firing alerts');
  lower.append(alertsCard);
  const alertsBody = el('div');
  alertsCard.append(alertsBody);
  page.add(async () => { alertsBody.textContent = ''; alertsBody.append(await alertList({ compact: true })); });

  const probCard = card('Node problems');
  lower.append(probCard);
  const probBody = el('div');
  probCard.append(probBody);
  page.add(async () => { probBody.textContent = ''; probBody.append(await problemsTable({ compact: true })); });
}

async function nodePage(page, name) {
  const main = page.main;
  main.append(el('div', { class: 'crumbs' }, el('a', { href: link('/') }, 'cluster'), ' › node'));
  main.append(el('h1', {}, `Node ${name}`));
  const status = el('p', { class: 'note', 'aria-live': 'polite' });
  main.append(status);
  const n = { type: 'node', nodename: name };
  const charts = el('div', { class: 'grid' });
  main.append(charts);
  chartGroup(page, charts, [
    { id: 'cpu', title: 'CPU (cores)', unit: 'cores', explore: CPU(n), parts: [
      [CPU(n), 'usage'], [`cpu_node_allocatable${sel(n)} / 1000`, 'allocatable', { ref: 'allocatable' }], [`cpu_node_capacity${sel(n)} / 1000`, 'capacity', { ref: 'capacity' }]],
      refsNote: 'CPU capacity comes from the Kubernetes API source; not known here.', empty: `No CPU samples from ${name} in this range.` },
    { id: 'memory', title: 'Memory', unit: 'bytes', parts: [
      [`memory_working_set${sel(n)}`, 'working set'], [`memory_usage${sel(n)}`, 'usage'], [`memory_rss${sel(n)}`, 'rss'],
      [`memory_node_allocatable${sel(n)}`, 'allocatable', { ref: 'allocatable' }], [`memory_node_capacity${sel(n)}`, 'capacity', { ref: 'capacity' }]],
      empty: `No memory samples from ${name} in this range.` },
    { id: 'network', title: 'Network', unit: 'bytes/s', parts: [[`network_rx_rate${sel(n)}`, 'received'], [`network_tx_rate${sel(n)}`, 'sent']],
      empty: 'No network samples in this range.' },
    { id: 'filesystem', title: 'Filesystem', unit: 'bytes', parts: [
      [`filesystem_usage${sel(n)}`, 'usage', { by: ['resource_id'] }], [`filesystem_limit${sel(n)}`, 'limit', { ref: 'limit', by: ['resource_id'] }]],
      empty: 'No filesystem samples in this range.' },
  ]);
  page.add(async () => {
    const v = await vector(`time() - timestamp(memory_working_set${sel(n)})`);
    const stale = 3 * cfg.resolution_ms / 1000;
    if (!v.length) status.textContent = `No recent sample from ${name}: its collector has not reported in the last 5 minutes (or the node does not exist).`;
    else status.textContent = v[0].value > stale ? `Collector stale since ${fmtAgo(v[0].value)} ago.` : `Reporting: last sample ${fmtAgo(v[0].value)} ago.`;
  });
  const lower = el('div', { class: 'grid' });
  main.append(lower);
  const podsCard = card('Pods on this node');
  podsCard.style.gridColumn = '1 / -1';
  lower.append(podsCard);
  const table = podTable(podsCard, true);
  const p = { type: 'pod', nodename: name };
  page.add(async () => table.set(await podRows(p), `No pods on ${name}.`));
  const sysCard = card('System containers');
  lower.append(sysCard);
  const sysTable = dataTable(sysCard, [
    { key: 'container_name', label: 'container' },
    { key: 'cpu', label: 'CPU', num: true, fmt: (r) => formatValue(r.cpu, 'cores') },
    { key: 'mem', label: 'memory', num: true, fmt: (r) => formatValue(r.mem, 'bytes') },
  ], { sortKey: 'cpu', empty: 'No system containers reported.' });
  const s = { type: 'sys_container', nodename: name };
  page.add(async () => sysTable.set(await entityTable([[CPU(s), 'cpu'], [`memory_working_set${sel(s)}`, 'mem']], ['container_name'])));
  const probCard = card('Conditions and problem events');
  lower.append(probCard);
  const probBody = el('div');
  probCard.append(probBody);
  page.add(async () => { probBody.textContent = ''; probBody.append(await problemsTable({ node: name })); });
}

function podTable(parent, showNamespace) {
  return dataTable(parent, [
    { key: 'pod_name', label: 'pod', fmt: (r) => el('a', { href: link(`/pod/${r.labels.namespace_name}/${r.labels.pod_name}`) }, r.labels.pod_name) },
    showNamespace ? { key: 'namespace_name', label: 'namespace', fmt: (r) => el('a', { href: link(`/namespace/${r.labels.namespace_name}`) }, r.labels.namespace_name) }
      : { key: 'nodename', label: 'node', fmt: (r) => el('a', { href: link(`/node/${r.labels.nodename}`) }, r.labels.nodename) },
    { key: 'cpu', label: 'CPU', num: true, fmt: (r) => formatValue(r.cpu, 'cores') },
    { key: 'mem', label: 'memory', num: true, fmt: (r) => formatValue(r.mem, 'bytes') },
    { key: 'rx', label: 'network in', num: true, fmt: (r) => formatValue(r.rx, 'bytes/s') },
    { key: 'restarts', label: 'restarts', num: true, fmt: (r) => (r.restarts === undefined ? '–' : String(r.restarts)) },
  ], { pageSize: 50, filterLabel: 'Filter pods', sortKey: 'cpu' });
}

async function podRows(m) {
  const k = ['namespace_name', 'pod_name', 'nodename'];
  const by = (e) => `max by (namespace_name, pod_name, nodename) (${e})`;
  return entityTable([
    [by(CPU(m)), 'cpu'], [by(`memory_working_set${sel(m)}`), 'mem'], [by(`network_rx_rate${sel(m)}`), 'rx'],
    [by(`restart_count_total${sel(m)}`), 'restarts'],
  ], k);
}

async function namespacePage(page, ns) {
  const main = page.main;
  main.append(el('div', { class: 'crumbs' }, el('a', { href: link('/') }, 'cluster'), ' › namespace'));
  main.append(el('h1', {}, `Namespace ${ns}`));
  const p = { type: 'pod', namespace_name: ns };
  const n = { type: 'ns', namespace_name: ns };
  const charts = el('div', { class: 'grid' });
  main.append(charts);
  chartGroup(page, charts, [
    { id: 'cpu', title: 'CPU by pod (top 10)', unit: 'cores', explore: `topk(10, ${CPU(p)})`, parts: [[CPU(n), 'namespace total'], [`topk(10, ${CPU(p)})`, '', { by: ['pod_name'] }]],
      empty: `No pods of ${ns} reported CPU in this range.` },
    { id: 'memory', title: 'Memory by pod (top 10)', unit: 'bytes', explore: `topk(10, memory_working_set${sel(p)})`, parts: [[`memory_working_set${sel(n)}`, 'namespace total'], [`topk(10, memory_working_set${sel(p)})`, '', { by: ['pod_name'] }]],
      empty: `No pods of ${ns} reported memory in this range.` },
  ]);
  const podsCard = card('Pods');
  main.append(podsCard);
  const table = podTable(podsCard, false);
  page.add(async () => table.set(await podRows(p), `No pods in namespace ${ns}.`));
}

async function podPage(page, ns, pod) {
  const main = page.main;
  main.append(el('div', { class: 'crumbs' }, el('a', { href: link('/') }, 'cluster'), ' › ', el('a', { href: link(`/namespace/${ns}`) }, ns), ' › pod'));
  const h = el('h1', {}, `Pod ${ns}/${pod}`);
  main.append(h);
  const where = el('p', { class: 'note' });
  main.append(where);
  const c = { type: 'pod_container', namespace_name: ns, pod_name: pod };
  const p = { type: 'pod', namespace_name: ns, pod_name: pod };
  const by = { by: ['container_name'] };
  const charts = el('div', { class: 'grid' });
  main.append(charts);
  chartGroup(page, charts, [
    { id: 'cpu', title: 'CPU by container (cores)', unit: 'cores', explore: CPU(c), parts: [
      [CPU(c), '', by], [`cpu_request${sel(c)} / 1000`, 'request', { ref: 'request', ...by }], [`cpu_limit${sel(c)} / 1000`, 'limit', { ref: 'limit', ...by }]],
      refsNote: 'No CPU requests or limits are known for these containers.', empty: 'No container of this pod reported CPU in this range.' },
    { id: 'memory', title: 'Memory by container', unit: 'bytes', explore: `memory_working_set${sel(c)}`, parts: [
      [`memory_working_set${sel(c)}`, '', by], [`memory_request${sel(c)}`, 'request', { ref: 'request', ...by }], [`memory_limit${sel(c)}`, 'limit', { ref: 'limit', ...by }]],
      refsNote: 'No memory requests or limits are known for these containers.', empty: 'No container of this pod reported memory in this range.' },
    { id: 'network', title: 'Network (pod)', unit: 'bytes/s', parts: [[`network_rx_rate${sel(p)}`, 'received'], [`network_tx_rate${sel(p)}`, 'sent']],
      empty: 'No network samples for this pod (host-network pods have none).' },
    { id: 'filesystem', title: 'Filesystem by container', unit: 'bytes', explore: `ephemeral_storage_usage${sel(c)}`, parts: [[`ephemeral_storage_usage${sel(c)}`, '', by]],
      empty: 'No filesystem samples for this pod.' },
  ]);
  const cCard = card('Containers');
  main.append(cCard);
  const table = dataTable(cCard, [
    { key: 'container_name', label: 'container', fmt: (r) => el('a', { href: link(`/container/${ns}/${pod}/${r.labels.container_name}`) }, r.labels.container_name) },
    { key: 'cpu', label: 'CPU', num: true, fmt: (r) => formatValue(r.cpu, 'cores') },
    { key: 'cpulim', label: 'CPU limit', num: true, fmt: (r) => formatValue(r.cpulim, 'cores') },
    { key: 'mem', label: 'memory', num: true, fmt: (r) => formatValue(r.mem, 'bytes') },
    { key: 'memlim', label: 'memory limit', num: true, fmt: (r) => formatValue(r.memlim, 'bytes') },
    { key: 'restarts', label: 'restarts', num: true, fmt: (r) => (r.restarts === undefined ? '–' : String(r.restarts)) },
    { key: 'uptime', label: 'up for', num: true, fmt: (r) => (r.uptime === undefined ? '–' : fmtAgo(r.uptime / 1000)) },
  ], { sortKey: 'container_name', sortDesc: false });
  const b = (e) => `max by (container_name, nodename) (${e})`;
  page.add(async () => {
    const rows = await entityTable([
      [b(CPU(c)), 'cpu'], [b(`cpu_limit${sel(c)} / 1000`), 'cpulim'], [b(`memory_working_set${sel(c)}`), 'mem'], [b(`memory_limit${sel(c)}`), 'memlim'],
      [b(`restart_count_total${sel(c)}`), 'restarts'], [b(`uptime_total${sel(c)}`), 'uptime'],
    ], ['container_name', 'nodename']);
    table.set(rows, `No containers of ${ns}/${pod} have reported in the last 5 minutes.`);
    const node = rows.find((r) => r.labels.nodename)?.labels.nodename;
    where.textContent = '';
    if (node) where.append('on node ', el('a', { href: link(`/node/${node}`) }, node));
  });
}

async function containerPage(page, ns, pod, container) {
  const main = page.main;
  main.append(el('div', { class: 'crumbs' }, el('a', { href: link('/') }, 'cluster'), ' › ', el('a', { href: link(`/namespace/${ns}`) }, ns), ' › ',
    el('a', { href: link(`/pod/${ns}/${pod}`) }, pod), ' › container'));
  main.append(el('h1', {}, `Container ${container}`));
  main.append(el('p', { class: 'note' }, `in pod ${ns}/${pod}`));
  const c = { type: 'pod_container', namespace_name: ns, pod_name: pod, container_name: container };
  const charts = el('div', { class: 'grid' });
  main.append(charts);
  chartGroup(page, charts, [
    { id: 'cpu', title: 'CPU (cores)', unit: 'cores', explore: CPU(c), parts: [
      [CPU(c), 'usage'], [`cpu_request${sel(c)} / 1000`, 'request', { ref: 'request' }], [`cpu_limit${sel(c)} / 1000`, 'limit', { ref: 'limit' }]],
      refsNote: 'No CPU request or limit is known for this container.', empty: 'No CPU samples for this container in this range.' },
    { id: 'memory', title: 'Memory', unit: 'bytes', parts: [
      [`memory_working_set${sel(c)}`, 'working set'], [`memory_usage${sel(c)}`, 'usage'], [`memory_rss${sel(c)}`, 'rss'],
      [`memory_request${sel(c)}`, 'request', { ref: 'request' }], [`memory_limit${sel(c)}`, 'limit', { ref: 'limit' }]],
      refsNote: 'No memory request or limit is known for this container.', empty: 'No memory samples for this container in this range.' },
    { id: 'filesystem', title: 'Filesystem', unit: 'bytes', parts: [[`filesystem_usage${sel(c)}`, '', { by: ['resource_id'] }], [`ephemeral_storage_usage${sel(c)}`, 'ephemeral storage']],
      empty: 'No filesystem samples for this container.' },
    { id: 'restarts', title: 'Restarts', unit: '', parts: [[`restart_count_total${sel(c)}`, 'restarts']], empty: 'No restart count for this container.' },
  ]);
}

async function explore(page) {
  const main = page.main;
  const { params } = parseHash();
  const expr = params.get('expr') || '';
  const tab = params.get('tab') === 'table' ? 'table' : 'graph';
  main.append(el('h1', {}, 'Explore'));
  const box = el('textarea', { id: 'expr', 'aria-label': 'PromQL expression', placeholder: 'PromQL, e.g. topk(5, cpu_usage_rate{type="pod"})', spellcheck: 'false' });
  box.value = expr;
  const run = () => setParams({ expr: box.value.trim() || null });
  box.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); run(); } });
  const tabs = el('div', { class: 'tabs', role: 'tablist' },
    ['graph', 'table'].map((t) => el('button', { type: 'button', role: 'tab', 'aria-selected': String(t === tab), onclick: () => setParams({ tab: t }) }, t)));
  const out = el('div', { class: 'card', role: 'tabpanel' });
  const render = el('a', { href: '#', class: 'note' }, 'as an image (/render)');
  const unit = UNITS.includes(params.get('unit')) ? params.get('unit') : guessUnit(expr);
  const unitSel = el('select', { 'aria-label': 'Unit', onchange: (e) => setParams({ unit: e.target.value }) },
    UNITS.map((u) => el('option', { value: u, selected: u === unit ? true : undefined }, u === '' ? 'no unit' : u)));
  main.append(el('div', { class: 'explore' }, box, el('div', { class: 'bar2' },
    el('button', { type: 'button', class: 'btn', onclick: run }, 'Run'), el('span', { class: 'note' }, 'Enter runs, Shift+Enter adds a line.'),
    el('label', { class: 'note' }, 'unit ', unitSel), render), tabs, out));
  if (!expr) {
    out.append(el('p', { class: 'empty' }, 'Type a PromQL expression and press Enter. Metric names: cpu_usage_rate, memory_working_set, network_rx_rate, filesystem_usage, … with labels type, nodename, namespace_name, pod_name, container_name.'));
    return;
  }
  const r0 = currentRange();
  const renderParams = new URLSearchParams({ query: expr, start: r0.start, end: r0.end, step: r0.step, width: 1000, height: 400 });
  if (['bytes', 'cores', 'percent', 'seconds'].includes(unit)) renderParams.set('unit', unit);
  render.href = `render?${renderParams}`;
  if (tab === 'graph') {
    const chartEl = el('div', { class: 'chart', 'data-chart': 'explore' });
    out.append(chartEl);
    let plot = null;
    page.add(async () => {
      const r = currentRange();
      let res;
      try { res = await queryRange(expr, r.start, r.end, r.step); } catch (e) { showMsg(chartEl, `Error: ${errorText(e)}`, true); throw e; }
      if (plot) { plot.vigilObserver.disconnect(); plot.destroy(); plot = null; }
      if (!res.length) { showMsg(chartEl, 'The query returned no series in this time range.'); chartEl.dataset.series = '0'; return; }
      const shown = res.slice(0, 50);
      plot = drawChart(chartEl, shown.map((s) => ({ label: metricText(s.metric), points: s.values.map(([t, v]) => [t, Number(v)]) })), { unit, startSec: r.start, endSec: r.end, height: 320 });
      if (res.length > shown.length) out.append(el('p', { class: 'note' }, `Showing 50 of ${res.length} series: aggregate (sum by, topk) to see them all.`));
    });
  } else {
    const body = el('div');
    out.append(body);
    page.add(async () => {
      body.textContent = '';
      let data;
      try { data = (await request(`api/v1/query?${new URLSearchParams({ query: expr })}`)).data; } catch (e) { body.append(el('p', { class: 'err', role: 'alert' }, `Error: ${errorText(e)}`)); throw e; }
      let rows;
      if (data.resultType === 'scalar' || data.resultType === 'string') rows = [{ metric: {}, value: data.result[1] }];
      else if (data.resultType === 'matrix') rows = data.result.map((s) => ({ metric: s.metric, value: s.values.map((v) => `${v[1]} @${v[0]}`).join('\n') }));
      else rows = data.result.map((s) => ({ metric: s.metric, value: s.value[1] }));
      if (!rows.length) { body.append(el('p', { class: 'empty' }, 'The query returned no series at this time.')); return; }
      body.append(el('div', { class: 'tablewrap' }, el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'series'), el('th', { class: 'num' }, 'value'))),
        el('tbody', {}, rows.slice(0, 1000).map((r) => el('tr', {}, el('td', {}, metricText(r.metric)), el('td', { class: 'num' }, r.value)))))));
      if (rows.length > 1000) body.append(el('p', { class: 'note' }, `Showing 1000 of ${rows.length} series.`));
    });
  }
}

const UNITS = ['', 'bytes', 'bytes/s', 'cores', 'percent', 'seconds'];

/** The unit vigil's metric names imply (Heapster's units: bytes, bytes/s; CPU in millicores has none). */
function guessUnit(expr) {
  if (/network_[a-z]*_rate|_bytes_per_second/.test(expr)) return 'bytes/s';
  if (/memory_(working_set|usage|rss|node_)|filesystem_(usage|limit|available)|ephemeral_storage|_bytes\b/.test(expr)) return 'bytes';
  if (/_seconds\b/.test(expr)) return 'seconds';
  return '';
}

function metricText(m) {
  const name = m.__name__ || '';
  const rest = Object.entries(m).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return rest.length || !name ? `${name}{${rest.join(', ')}}` : name;
}

// ---------- alerts and silences ----------

async function optional(url) {
  try { return { body: await request(url) }; } catch (e) { return { error: e }; }
}

function unavailable(what, e) {
  if (e.status === 404) return `${what}: this server has no alerting yet (GET ${e.url} answered 404).`;
  return `${what}: ${errorText(e)}`;
}

function labelsEl(labels) {
  return el('span', { class: 'labels' }, Object.entries(labels || {}).map(([k, v]) => el('code', {}, `${k}=${v}`)));
}

async function alertList({ compact = false, onSilence } = {}) {
  const { body, error } = await optional('api/v1/alerts');
  if (error) return el('p', { class: 'empty' }, unavailable('Alerts', error));
  const alerts = (body.data && body.data.alerts) || [];
  const wanted = compact ? alerts.filter((a) => a.state === 'firing') : alerts;
  if (!wanted.length) return el('p', { class: 'empty' }, compact ? 'No alert is firing.' : 'No alert is firing or pending.');
  wanted.sort((a, b) => (a.state === b.state ? 0 : a.state === 'firing' ? -1 : 1));
  return el('div', { class: 'tablewrap' }, el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'alert'), el('th', {}, 'state'), el('th', {}, 'since'),
    compact ? null : el('th', {}, 'labels'), compact ? null : el('th', {}, 'annotations'), compact ? null : el('th', {}, ''))),
  el('tbody', {}, wanted.slice(0, compact ? 10 : 500).map((a) => el('tr', {},
    el('td', {}, compact ? el('a', { href: link('/alerts') }, a.labels.alertname || '') : (a.labels.alertname || '')),
    el('td', {}, el('span', { class: `status-${a.state}` }, a.state)),
    el('td', {}, a.activeAt ? new Date(a.activeAt).toLocaleString() : ''),
    compact ? null : el('td', {}, labelsEl(a.labels)),
    compact ? null : el('td', {}, Object.entries(a.annotations || {}).map(([k, v]) => el('div', {}, el('strong', {}, `${k}: `), v))),
    compact ? null : el('td', {}, el('button', { type: 'button', class: 'btn light', onclick: () => onSilence(a) }, 'Silence')))))));
}

async function alertsPage(page) {
  const main = page.main;
  main.append(el('h1', {}, 'Alerts'));
  const grid = el('div', { class: 'grid' });
  main.append(grid);
  const alertsCard = card('Firing and pending');
  alertsCard.style.gridColumn = '1 / -1';
  const alertsBody = el('div');
  alertsCard.append(alertsBody);
  const formCard = card('New silence');
  formCard.hidden = true;
  const rulesCard = card('Alerting rules');
  const rulesBody = el('div');
  rulesCard.append(rulesBody);
  const silCard = card('Silences');
  const silBody = el('div');
  silCard.append(silBody);
  grid.append(alertsCard, formCard, silCard, rulesCard);
  const ruleCharts = el('div', { class: 'grid' });
  main.append(ruleCharts);

  const form = el('form', { class: 'silence' });
  formCard.append(form);
  function openForm(alert) {
    formCard.hidden = false;
    form.textContent = '';
    const matchers = Object.entries(alert ? alert.labels : {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
    const now = new Date();
    form.append(
      el('label', {}, 'Matchers (name="value", comma separated)', el('input', { name: 'matchers', required: true, value: matchers })),
      el('label', {}, 'Duration', el('input', { name: 'duration', required: true, value: '2h', pattern: '[0-9]+[smhd]' })),
      el('label', {}, 'Created by', el('input', { name: 'createdBy', required: true, value: 'vigil-ui' })),
      el('label', {}, 'Comment', el('textarea', { name: 'comment', required: true }, alert ? `Silenced from the UI at ${now.toLocaleString()}` : '')),
      el('div', {}, el('button', { type: 'submit', class: 'btn' }, 'Create silence'), ' ', el('button', { type: 'button', class: 'btn light', onclick: () => { formCard.hidden = true; } }, 'Cancel')),
      el('p', { class: 'note', role: 'status' }));
    form.matchers.focus();
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const status = form.querySelector('[role=status]');
    try {
      const matchers = parseMatchers(form.matchers.value);
      const dur = parseDur(form.duration.value);
      const startsAt = new Date();
      const body = { matchers, startsAt: startsAt.toISOString(), endsAt: new Date(startsAt.getTime() + dur * 1000).toISOString(), createdBy: form.createdBy.value, comment: form.comment.value };
      const res = await request('api/v2/silences', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      status.textContent = `Silence ${res.silenceID} created.`;
      await loadSilences();
    } catch (err) {
      status.textContent = err.status === 404 ? 'This server has no silences API yet (POST api/v2/silences answered 404).' : `Not created: ${errorText(err)}`;
      status.className = 'err';
    }
  });
  async function loadSilences() {
    const { body, error } = await optional('api/v2/silences');
    silBody.textContent = '';
    silBody.append(el('button', { type: 'button', class: 'btn light', onclick: () => openForm(null) }, 'New silence'));
    if (error) { silBody.append(el('p', { class: 'empty' }, unavailable('Silences', error))); return; }
    const list = (body || []).filter((s) => s.status?.state !== 'expired' || Date.parse(s.endsAt) > Date.now() - 3600e3);
    if (!list.length) { silBody.append(el('p', { class: 'empty' }, 'No silences.')); return; }
    silBody.append(el('div', { class: 'tablewrap' }, el('table', {}, el('thead', {}, el('tr', {}, ['matchers', 'state', 'ends', 'by', 'comment', ''].map((t) => el('th', {}, t)))),
      el('tbody', {}, list.map((s) => el('tr', {},
        el('td', {}, el('span', { class: 'labels' }, s.matchers.map((m) => el('code', {}, `${m.name}${m.isEqual === false ? '!' : ''}${m.isRegex ? '=~' : '='}${m.value}`)))),
        el('td', {}, s.status?.state || ''),
        el('td', {}, new Date(s.endsAt).toLocaleString()),
        el('td', {}, s.createdBy || ''), el('td', {}, s.comment || ''),
        el('td', {}, s.status?.state === 'expired' ? '' : el('button', { type: 'button', class: 'btn danger', onclick: async () => {
          try { await request(`api/v2/silence/${encodeURIComponent(s.id)}`, { method: 'DELETE' }); } catch (err) { alert(`Could not expire: ${errorText(err)}`); }
          await loadSilences();
        } }, 'Expire'))))))));
  }
  page.add(async () => { alertsBody.textContent = ''; alertsBody.append(await alertList({ onSilence: openForm })); });
  page.add(loadSilences);
  page.add(async () => {
    const { body, error } = await optional('api/v1/rules');
    rulesBody.textContent = '';
    ruleCharts.textContent = '';
    if (error) { rulesBody.append(el('p', { class: 'empty' }, unavailable('Rules', error))); return; }
    const rules = (body.data?.groups || []).flatMap((g) => g.rules.filter((r) => r.type === 'alerting').map((r) => ({ ...r, group: g.name })));
    if (!rules.length) { rulesBody.append(el('p', { class: 'empty' }, 'No alerting rules are loaded.')); return; }
    rulesBody.append(el('div', { class: 'tablewrap' }, el('table', {}, el('thead', {}, el('tr', {}, ['rule', 'group', 'state', 'health', 'query'].map((t) => el('th', {}, t)))),
      el('tbody', {}, rules.map((r) => el('tr', {}, el('td', {}, r.name), el('td', {}, r.group), el('td', {}, el('span', { class: `status-${r.state}` }, r.state || '')),
        el('td', {}, r.health || ''), el('td', {}, el('a', { href: link('/explore', { expr: r.query }) }, el('code', { class: 'l' }, r.query)))))))));
    const active = rules.filter((r) => r.state === 'firing' || r.state === 'pending').slice(0, 6);
    if (active.length) {
      const sub = new Page(ruleCharts);
      chartGroup(sub, ruleCharts, active.map((r, i) => ({ id: `rule${i}`, title: `${r.name} (${r.state})`, unit: '', parts: [[r.query, '', { by: Object.keys(r.alerts?.[0]?.labels || {}).filter((k) => k !== 'alertname').slice(0, 3) }]] })));
      await sub.loadAll();
    }
  });
}

function parseMatchers(text) {
  const out = [];
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(,|$)/y;
  let m;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    const value = m[3].startsWith('"') ? JSON.parse(m[3]) : m[3].trim();
    out.push({ name: m[1], value, isRegex: m[2].includes('~'), isEqual: !m[2].startsWith('!') });
    if (!m[4]) break;
  }
  if (!out.length) throw new Error('give at least one matcher, e.g. alertname="HighCPU"');
  return out;
}

function parseDur(s) {
  const m = /^(\d+)([smhd])$/.exec(s.trim());
  if (!m) throw new Error(`duration ${JSON.stringify(s)}: use e.g. 30m, 2h, 1d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

// ---------- problems ----------

async function problemsTable({ node, compact = false } = {}) {
  const r = currentRange();
  const m = node ? `{nodename=${str(node)}}` : '';
  const span = fmtDuration(Math.max(60, Math.round((r.end - r.start) / 60) * 60));
  let rows;
  try {
    // The aggregator pulls each collector's /conditions and /problems/events into
    // node-problem-detector's series: problem_gauge{type,reason,nodename} (1 while the condition
    // is True with that reason) and problem_counter{reason,nodename} (events).
    rows = await vector(tagged([
      [`problem_gauge${m} > 0`, 'condition'],
      [`increase(problem_counter${m}[${span}]) > 0`, 'events'],
      [`count(problem_gauge${m}) or count(problem_counter${m})`, 'known'],
      ...(node ? [[`max by (type) (problem_gauge${m})`, 'types']] : []),
    ]));
  } catch (e) {
    return el('p', { class: 'err' }, `Problems query failed: ${errorText(e)}`);
  }
  const known = rows.some((x) => x.metric.series === 'known');
  const list = rows.filter((x) => x.metric.series === 'condition' || x.metric.series === 'events');
  if (!known) {
    return el('p', { class: 'empty' }, `No node problem detector reports to this aggregator${node ? ` for ${node}` : ''} in the last 5 minutes: run the collectors with --problem-detector-config (node-problem-detector's monitor files); the aggregator pulls their /conditions and /problems/events every round.`);
  }
  const out = el('div');
  if (node) {
    // Every condition type the node's detector watches, problem or not.
    const types = rows.filter((x) => x.metric.series === 'types').sort((a, b) => a.metric.type.localeCompare(b.metric.type));
    out.append(el('p', { class: 'conditions' }, 'Conditions: ', ...types.flatMap((x, i) => [i ? ', ' : '',
      el('span', { class: x.value > 0 ? 'status-bad' : 'status-ok' }, `${x.metric.type} ${x.value > 0 ? 'True' : 'False'}`)])));
  }
  if (!list.length) {
    out.append(el('p', { class: 'empty' }, `No node reports a problem condition or event in the last ${span}.`));
    return out;
  }
  list.sort((a, b) => (a.metric.series === b.metric.series ? 0 : a.metric.series === 'condition' ? -1 : 1) || (a.metric.nodename || '').localeCompare(b.metric.nodename || ''));
  const shown = compact ? list.slice(0, 10) : list;
  // A node's page leaves its own name out.
  const head = node ? ['kind', 'type', 'reason', 'value'] : ['node', 'kind', 'type', 'reason', 'value'];
  out.append(el('div', { class: 'tablewrap' }, el('table', { class: 'problems' }, el('thead', {}, el('tr', {}, head.map((t) => el('th', {}, t)))),
    el('tbody', {}, shown.map((x) => el('tr', {},
      node ? null : el('td', {}, x.metric.nodename ? el('a', { href: link(`/node/${x.metric.nodename}`) }, x.metric.nodename) : '–'),
      el('td', {}, x.metric.series === 'condition' ? el('span', { class: 'status-bad' }, 'condition') : `events in ${span}`),
      el('td', {}, x.metric.type || ''), el('td', {}, x.metric.reason || ''), el('td', { class: 'num' }, formatValue(x.value, ''))))))));
  if (compact && list.length > shown.length) out.append(el('p', { class: 'note' }, el('a', { href: link('/problems') }, `${list.length - shown.length} more on the problems page`)));
  return out;
}

async function problemsPage(page) {
  const main = page.main;
  main.append(el('h1', {}, 'Problems'));
  const grid = el('div', { class: 'grid' });
  main.append(grid);
  const probCard = card('Node conditions and problem events');
  const probBody = el('div');
  probCard.append(probBody);
  const staleCard = card('Nodes not reporting');
  const staleBody = el('div');
  staleCard.append(staleBody);
  grid.append(probCard, staleCard);
  page.add(async () => { probBody.textContent = ''; probBody.append(await problemsTable()); });
  page.add(async () => {
    const stale = 3 * cfg.resolution_ms / 1000;
    const rows = await vector(`max by (nodename) (time() - timestamp(memory_working_set{type="node"})) > ${stale}`);
    staleBody.textContent = '';
    if (!rows.length) { staleBody.append(el('p', { class: 'empty' }, `Every node reported within the last ${fmtDuration(stale)} (3 × the metric resolution).`)); return; }
    staleBody.append(el('table', {}, el('tbody', {}, rows.sort((a, b) => b.value - a.value).map((x) => el('tr', {},
      el('td', {}, el('a', { href: link(`/node/${x.metric.nodename}`) }, x.metric.nodename)), el('td', { class: 'status-stale' }, `stale since ${fmtAgo(x.value)} ago`))))));
  });
}

// ---------- router ----------

const ROUTES = [
  [/^\/$/, overview, 'overview'],
  [/^\/node\/([^/]+)$/, nodePage, 'overview'],
  [/^\/namespace\/([^/]+)$/, namespacePage, 'overview'],
  [/^\/pod\/([^/]+)\/([^/]+)$/, podPage, 'overview'],
  [/^\/container\/([^/]+)\/([^/]+)\/([^/]+)$/, containerPage, 'overview'],
  [/^\/explore$/, explore, 'explore'],
  [/^\/alerts$/, alertsPage, 'alerts'],
  [/^\/problems$/, problemsPage, 'problems'],
];

let current = null;
let timer = null;

async function route() {
  const started = performance.now();
  document.body.dataset.ready = '0';
  if (current) current.alive = false;
  const { path } = parseHash();
  syncRangeControls();
  const old = document.getElementById('main');
  const main = el('main', { id: 'main', tabindex: '-1' });
  old.replaceWith(main);
  const page = new Page(main);
  current = page;
  const match = ROUTES.map(([re, fn, nav]) => [re.exec(path), fn, nav]).find(([m]) => m);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (match && a.dataset.nav === match[2]) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!match) {
    main.append(el('h1', {}, 'Not found'), el('p', {}, `No page ${path}. `, el('a', { href: '#/' }, 'Back to the overview')));
  } else {
    const [m, fn] = match;
    await fn(page, ...m.slice(1).map(decodeURIComponent));
  }
  await page.loadAll();
  if (page !== current) return;
  window.vigil.renderMs = performance.now() - started;
  // From the navigation's start (performance.timeOrigin) to the first page fully drawn.
  if (window.vigil.firstReadyMs === null) window.vigil.firstReadyMs = performance.now();
  window.vigil.loads++;
  document.body.dataset.ready = '1';
  stamp();
  schedule();
}

function stamp() {
  const r = currentRange();
  const el2 = document.querySelector('.refresh');
  el2.textContent = r.relative ? `updated ${new Date().toLocaleTimeString()} · every ${fmtDuration(Math.max(5, r.res))}` : 'fixed range';
}

function schedule() {
  clearTimeout(timer);
  const r = currentRange();
  if (!r.relative) return;
  timer = setTimeout(async () => {
    const page = current;
    if (!document.hidden && page) {
      await page.loadAll();
      if (page === current) stamp();
    }
    schedule();
  }, Math.max(5000, cfg.resolution_ms));
}

window.vigil = { stats, renderMs: null, firstReadyMs: null, loads: 0 };

async function start() {
  cfg = await config();
  setupRangeControls();
  window.addEventListener('hashchange', route);
  await route();
}

start();
