// Charts in the browser (uPlot), sparklines (inline SVG) and unit formatting.

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
export const REF_COLORS = { capacity: '#b3261e', allocatable: '#9a5b00', limit: '#b3261e', request: '#2c7a2c' };

function trim(v) {
  const a = Math.abs(v);
  let s;
  if (a === 0) return '0';
  if (a >= 100) s = v.toFixed(0);
  else if (a >= 10) s = v.toFixed(1);
  else if (a >= 1) s = v.toFixed(2);
  else s = v.toFixed(3);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

function binary(v, suffix) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${trim(v)} ${units[i]}${suffix}`;
}

/** `1.5 GiB`, `250m`, `42%`, `3.2 ms`, `12.3k`, `1.2 KiB/s`. */
export function formatValue(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return String(v);
  switch (unit) {
    case 'bytes': return binary(v, '');
    case 'bytes/s': return binary(v, '/s');
    case 'cores': return v !== 0 && Math.abs(v) < 1 ? `${trim(v * 1000)}m` : trim(v);
    case 'percent': return `${trim(v)}%`;
    case 'seconds': {
      const a = Math.abs(v);
      if (a === 0) return '0 s';
      if (a < 1e-3) return `${trim(v * 1e6)} µs`;
      if (a < 1) return `${trim(v * 1e3)} ms`;
      if (a < 120) return `${trim(v)} s`;
      if (a < 7200) return `${trim(v / 60)} min`;
      return `${trim(v / 3600)} h`;
    }
    default: {
      const a = Math.abs(v);
      if (a >= 1e9) return `${trim(v / 1e9)}G`;
      if (a >= 1e6) return `${trim(v / 1e6)}M`;
      if (a >= 1e4) return `${trim(v / 1e3)}k`;
      return trim(v);
    }
  }
}

// Axis steps for bytes: 1, 2, 5, 10, 20, 50, 100, 200, 500 of B, KiB, MiB, ...
const BYTE_INCRS = [];
for (let k = 0; k < 6; k++) for (const m of [1, 2, 5, 10, 20, 50, 100, 200, 500]) BYTE_INCRS.push(m * 1024 ** k);

export function color(i) {
  return PALETTE[i % PALETTE.length];
}

/**
 * Draws lines into `el` (replacing what was there). `lines`: [{label, points: [[tSec, v]...],
 * ref?: 'capacity'|'allocatable'|'limit'|'request'}]. Returns the uPlot instance.
 */
export function drawChart(el, lines, { unit = '', height = 220, startSec, endSec } = {}) {
  // One x grid: the union of every line's timestamps (range queries share a step).
  const xs = [...new Set(lines.flatMap((l) => l.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((t, i) => [t, i]));
  const data = [xs];
  let plain = 0;
  const series = [{}];
  for (const l of lines) {
    const ys = new Array(xs.length).fill(null);
    for (const [t, v] of l.points) ys[index.get(t)] = Number.isFinite(v) ? v : null;
    data.push(ys);
    const stroke = l.ref ? (REF_COLORS[l.ref] || '#555') : color(plain++);
    series.push({
      label: l.label,
      stroke,
      width: l.ref ? 1.5 : 1.6,
      dash: l.ref ? [6, 4] : undefined,
      spanGaps: false,
      points: { show: xs.length < 3 },
      value: (u, v) => formatValue(v, unit),
    });
  }
  el.textContent = '';
  const width = Math.max(200, el.clientWidth || 480);
  const opts = {
    width,
    height,
    series,
    scales: { x: { time: true, range: startSec !== undefined ? () => [startSec, endSec] : undefined }, y: { range: (u, min, max) => [Math.min(0, min ?? 0), (max ?? 1) > 0 ? max * 1.08 : 1] } },
    axes: [
      { stroke: '#4f5868', grid: { stroke: '#eceff3' } },
      { stroke: '#4f5868', grid: { stroke: '#eceff3' }, size: 76, incrs: unit.startsWith('bytes') ? BYTE_INCRS : undefined, values: (u, vals) => vals.map((v) => formatValue(v, unit)) },
    ],
    legend: { live: true },
    cursor: { focus: { prox: 16 } },
    // Without the pointer over the chart, the legend shows the newest values.
    hooks: {
      ready: [(u) => u.setLegend({ idx: lastIndex(data) })],
      setCursor: [(u) => { if (u.cursor.idx == null) u.setLegend({ idx: lastIndex(data) }); }],
    },
  };
  // eslint-disable-next-line no-undef
  const u = new uPlot(opts, data, el);
  const ro = new ResizeObserver(() => {
    const w = el.clientWidth;
    if (w && Math.abs(w - u.width) > 2) u.setSize({ width: w, height });
  });
  ro.observe(el);
  u.vigilObserver = ro;
  el.dataset.series = String(lines.length);
  el.dataset.points = String(lines.reduce((n, l) => n + l.points.length, 0));
  return u;
}

/** The last x index at which any series has a value. */
function lastIndex(data) {
  for (let i = data[0].length - 1; i >= 0; i--) {
    for (let k = 1; k < data.length; k++) if (data[k][i] !== null) return i;
  }
  return data[0].length - 1;
}

/** A small inline SVG line of `points` ([[t, v]...]). */
export function sparkline(points, stroke = '#1f5fbf') {
  if (!points || points.length < 2) return '<span class="note">–</span>';
  const ts = points.map((p) => p[0]);
  const vs = points.map((p) => p[1]).filter(Number.isFinite);
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  const v1 = Math.max(...vs, 0), v0 = Math.min(...vs, 0);
  const x = (t) => ((t - t0) / (t1 - t0 || 1)) * 118 + 1;
  const y = (v) => 27 - ((v - v0) / (v1 - v0 || 1)) * 25;
  const d = points.filter((p) => Number.isFinite(p[1])).map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
  return `<svg class="spark" viewBox="0 0 120 28" role="img" aria-label="trend"><path d="${d}" fill="none" stroke="${stroke}" stroke-width="1.5"/></svg>`;
}
