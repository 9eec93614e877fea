// Hand-drawn SVG charts: throughput over time (stacked areas), a duration histogram (bars) and
// horizontal bars (per-agent success rate and spend). Every chart has axes, labels, a <title>
// tooltip on each mark, an accessible name, and an empty state when there is nothing to draw.
//
// Charts are drawn at the container's real width (so text keeps its size on a phone) and
// redrawn when it changes; mountChart() returns a function that stops watching.

import { h, s, fmtNumber, fmtDuration } from './ui.js';

const FONT = 11;
const COLORS = {
  completed: '#4ade80',
  failed: '#f87171',
  timed_out: '#fb923c',
  canceled: '#aab2c8',
  bar: 'url(#zs-bar-grad)',
};

/**
 * Draw `draw(width)` into `container` now and whenever its width changes.
 * `draw` returns an element (an <svg> or an empty-state node).
 */
export function mountChart(container, draw) {
  let last = 0;
  const paint = () => {
    const w = Math.max(260, Math.floor(container.clientWidth || 640));
    if (w === last) return;
    last = w;
    container.replaceChildren(draw(w));
  };
  paint();
  if (typeof ResizeObserver === 'undefined') return () => {};
  const ro = new ResizeObserver(() => paint());
  ro.observe(container);
  return () => ro.disconnect();
}

function empty(message, testid) {
  return h('div', { class: 'chart-empty', 'data-testid': `${testid}-empty` },
    h('span', { class: 'chart-empty-icon', 'aria-hidden': 'true' }), message);
}

/**
 * A scale whose top and grid lines are round numbers: a step of 1, 2 or 5 × 10^n giving at
 * most `maxTicks` intervals; counts never get fractional steps.
 */
function niceScale(value, { maxTicks = 5, integer = false } = {}) {
  const v = value > 0 ? value : 1;
  let step = v / maxTicks;
  const p = 10 ** Math.floor(Math.log10(step));
  step = [1, 2, 5, 10].map((m) => m * p).find((c) => c >= step) ?? 10 * p;
  if (integer) step = Math.max(1, Math.round(step));
  const max = Math.ceil(v / step - 1e-9) * step;
  const ticks = [];
  for (let t = 0; t <= max + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
  return { max, ticks };
}

function defs() {
  return s('defs', null,
    s('linearGradient', { id: 'zs-bar-grad', x1: '0', y1: '0', x2: '1', y2: '0' },
      s('stop', { offset: '0', 'stop-color': '#8b5cf6' }),
      s('stop', { offset: '1', 'stop-color': '#06b6d4' })),
    s('linearGradient', { id: 'zs-area-ok', x1: '0', y1: '0', x2: '0', y2: '1' },
      s('stop', { offset: '0', 'stop-color': COLORS.completed, 'stop-opacity': '0.55' }),
      s('stop', { offset: '1', 'stop-color': COLORS.completed, 'stop-opacity': '0.08' })),
    s('linearGradient', { id: 'zs-area-bad', x1: '0', y1: '0', x2: '0', y2: '1' },
      s('stop', { offset: '0', 'stop-color': COLORS.failed, 'stop-opacity': '0.7' }),
      s('stop', { offset: '1', 'stop-color': COLORS.failed, 'stop-opacity': '0.2' })));
}

function svgRoot(width, height, label, testid) {
  return s('svg', {
    class: 'chart', width: String(width), height: String(height), viewBox: `0 0 ${width} ${height}`,
    role: 'img', 'aria-label': label, 'data-testid': testid,
  }, s('title', null, label), defs());
}

function yAxis(svg, { left, right, top, bottom, max, ticks, format }) {
  const height = bottom - top;
  for (const t of ticks) {
    const y = bottom - (t / max) * height;
    svg.append(
      s('line', { class: 'chart-grid', x1: String(left), x2: String(right), y1: y.toFixed(1), y2: y.toFixed(1) }),
      s('text', { class: 'chart-label', x: String(left - 6), y: (y + FONT / 3).toFixed(1), 'text-anchor': 'end' }, format(t)),
    );
  }
  svg.append(s('line', { class: 'chart-axis', x1: String(left), x2: String(left), y1: String(top), y2: String(bottom) }));
}

function clockLabel(iso, withDate) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return withDate
    ? d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
    : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * Completed (green) and failed + timed out (red) per bucket, stacked, oldest on the left.
 * buckets: [{start, completed, failed, timed_out, canceled}]
 */
export function throughputChart(buckets, { width, height = 220, bucketSecs = 60, testid = 'chart-throughput' } = {}) {
  const rows = Array.isArray(buckets) ? buckets : [];
  const total = rows.reduce((a, b) => a + (b.completed || 0) + (b.failed || 0) + (b.timed_out || 0) + (b.canceled || 0), 0);
  if (!rows.length || total === 0) return empty('No finished tasks in this window yet.', testid);

  const pad = { left: 40, right: 12, top: 12, bottom: 30 };
  const x0 = pad.left;
  const x1 = width - pad.right;
  const y1 = height - pad.bottom;
  const { max, ticks } = niceScale(Math.max(...rows.map((b) => (b.completed || 0) + (b.failed || 0) + (b.timed_out || 0))), { integer: true });
  const n = rows.length;
  const step = (x1 - x0) / n;
  const xAt = (i) => x0 + step * (i + 0.5);
  const yAt = (v) => y1 - (v / max) * (y1 - pad.top);
  const finished = rows.reduce((a, b) => a + (b.completed || 0), 0);
  const svg = svgRoot(width, height, `Throughput: ${finished} completed and ${total - finished} not completed tasks over ${n} intervals`, testid);
  yAxis(svg, { left: x0, right: x1, top: pad.top, bottom: y1, max, ticks, format: (t) => fmtNumber(t, 0) });

  const ok = rows.map((b) => b.completed || 0);
  const bad = rows.map((b) => (b.completed || 0) + (b.failed || 0) + (b.timed_out || 0));
  const line = (vals) => vals.map((v, i) => `${i ? 'L' : 'M'}${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`).join('');
  const area = (top, base) => `${line(top)}${base.map((v, i) => `L${xAt(n - 1 - i).toFixed(1)},${yAt(base[n - 1 - i]).toFixed(1)}`).join('')}Z`;
  const zero = rows.map(() => 0);
  svg.append(
    s('path', { d: area(bad, ok), fill: 'url(#zs-area-bad)', stroke: 'none' }),
    s('path', { d: area(ok, zero), fill: 'url(#zs-area-ok)', stroke: 'none' }),
    s('path', { d: line(bad), fill: 'none', stroke: COLORS.failed, 'stroke-width': '1.5', 'stroke-linejoin': 'round', opacity: '0.9' }),
    s('path', { d: line(ok), fill: 'none', stroke: COLORS.completed, 'stroke-width': '2', 'stroke-linejoin': 'round' }),
  );

  const withDate = n * bucketSecs > 86_400;
  const labelEvery = Math.max(1, Math.ceil(n / Math.max(2, Math.floor((x1 - x0) / (withDate ? 110 : 64)))));
  rows.forEach((b, i) => {
    const x = xAt(i);
    const tip = `${clockLabel(b.start, true)}: ${b.completed || 0} completed, ${b.failed || 0} failed, ${b.timed_out || 0} timed out, ${b.canceled || 0} canceled`;
    svg.append(s('rect', { class: 'chart-hit', x: (x - step / 2).toFixed(1), y: String(pad.top), width: step.toFixed(1), height: String(y1 - pad.top), 'data-testid': 'throughput-bucket' },
      s('title', null, tip)));
    if (b.completed || b.failed || b.timed_out) {
      svg.append(s('circle', { cx: x.toFixed(1), cy: yAt(bad[i]).toFixed(1), r: '2.5', fill: bad[i] > ok[i] ? COLORS.failed : COLORS.completed, 'pointer-events': 'none' }));
    }
    if (i % labelEvery === 0) {
      svg.append(s('text', { class: 'chart-label', x: x.toFixed(1), y: String(y1 + 18), 'text-anchor': 'middle' }, clockLabel(b.start, withDate)));
    }
  });
  svg.append(s('line', { class: 'chart-axis', x1: String(x0), x2: String(x1), y1: String(y1), y2: String(y1) }));
  return svg;
}

/** Legend entries for the throughput chart, as HTML. */
export function throughputLegend() {
  return h('ul', { class: 'chart-legend', 'aria-hidden': 'true' },
    h('li', null, h('span', { class: 'swatch', style: `background:${COLORS.completed}` }), 'Completed'),
    h('li', null, h('span', { class: 'swatch', style: `background:${COLORS.failed}` }), 'Failed or timed out'));
}

/** Short axis label for a duration bound: 5ms, 2s, 1.5s, 1m. */
function boundLabel(ms) {
  const v = Number(ms) || 0;
  if (v < 1000) return `${v}ms`;
  if (v < 60_000) return `${Number((v / 1000).toFixed(1))}s`;
  return `${Number((v / 60_000).toFixed(1))}m`;
}

/**
 * Completed runs per duration bucket. counts.length = bounds_ms.length + 1; counts[i] are runs
 * ≤ bounds_ms[i] (and > the previous bound), the last one runs longer than the last bound.
 */
export function histogramChart({ bounds_ms: bounds = [], counts = [] } = {}, { width, height = 220, testid = 'chart-durations' } = {}) {
  const total = counts.reduce((a, c) => a + (Number(c) || 0), 0);
  if (!counts.length || total === 0) return empty('No completed runs to measure yet.', testid);

  const pad = { left: 40, right: 12, top: 12, bottom: 30 };
  const x0 = pad.left;
  const x1 = width - pad.right;
  const y1 = height - pad.bottom;
  const { max, ticks } = niceScale(Math.max(...counts), { integer: true });
  const n = counts.length;
  const step = (x1 - x0) / n;
  const gap = Math.min(6, step * 0.2);
  const svg = svgRoot(width, height, `Duration histogram of ${total} completed runs`, testid);
  yAxis(svg, { left: x0, right: x1, top: pad.top, bottom: y1, max, ticks, format: (t) => fmtNumber(t, 0) });

  const labelEvery = Math.max(1, Math.ceil(n / Math.max(2, Math.floor((x1 - x0) / 52))));
  counts.forEach((c, i) => {
    const label = i < bounds.length ? `≤ ${boundLabel(bounds[i])}` : `> ${boundLabel(bounds[bounds.length - 1] ?? 0)}`;
    const range = i === 0
      ? `up to ${fmtDuration(bounds[0])}`
      : i < bounds.length ? `${fmtDuration(bounds[i - 1])} to ${fmtDuration(bounds[i])}` : `over ${fmtDuration(bounds[bounds.length - 1])}`;
    const hgt = ((Number(c) || 0) / max) * (y1 - pad.top);
    const x = x0 + step * i + gap / 2;
    svg.append(s('rect', {
      class: 'chart-bar', x: x.toFixed(1), y: (y1 - hgt).toFixed(1), width: Math.max(1, step - gap).toFixed(1), height: Math.max(c ? 1 : 0, hgt).toFixed(1),
      rx: '3', fill: COLORS.bar, 'data-testid': 'histogram-bar',
    }, s('title', null, `${fmtNumber(c, 0)} run${c === 1 ? '' : 's'} ${range}`)));
    if (i % labelEvery === 0) {
      svg.append(s('text', { class: 'chart-label', x: (x0 + step * (i + 0.5)).toFixed(1), y: String(y1 + 18), 'text-anchor': 'middle' }, label));
    }
  });
  svg.append(s('line', { class: 'chart-axis', x1: String(x0), x2: String(x1), y1: String(y1), y2: String(y1) }));
  return svg;
}

/**
 * One horizontal bar per row, longest scale = `max` (or the largest value).
 * rows: [{label, value (null = no data), text, tip}]
 */
export function barChart(rows, { width, max, format = (v) => fmtNumber(v), testid = 'chart-bars', label = 'Bar chart', emptyText = 'Nothing to show yet.' } = {}) {
  const data = (rows || []).filter((r) => r.value !== null && r.value !== undefined && !Number.isNaN(Number(r.value)));
  if (!data.length) return empty(emptyText, testid);

  const rowH = 30;
  const pad = { top: 6, bottom: 26 };
  const labelW = Math.min(170, Math.max(90, Math.floor(width * 0.3)));
  const valueW = 64;
  const x0 = labelW + 10;
  const x1 = width - valueW;
  const height = pad.top + data.length * rowH + pad.bottom;
  const nice = niceScale(max ?? Math.max(...data.map((r) => Number(r.value))));
  const scale = nice.max;
  const svg = svgRoot(width, height, label, testid);
  const yEnd = pad.top + data.length * rowH;

  for (const t of nice.ticks) {
    const x = x0 + (t / scale) * (x1 - x0);
    svg.append(
      s('line', { class: 'chart-grid', x1: x.toFixed(1), x2: x.toFixed(1), y1: String(pad.top), y2: String(yEnd) }),
      s('text', { class: 'chart-label', x: x.toFixed(1), y: String(yEnd + 16), 'text-anchor': 'middle' }, format(t)),
    );
  }
  const maxChars = Math.max(6, Math.floor(labelW / 7));
  data.forEach((r, i) => {
    const y = pad.top + i * rowH;
    const v = Number(r.value);
    const w = Math.max(v > 0 ? 2 : 0, (v / scale) * (x1 - x0));
    const name = String(r.label ?? '');
    svg.append(
      s('text', { class: 'chart-label chart-label-strong', x: String(labelW), y: (y + rowH / 2 + 4).toFixed(1), 'text-anchor': 'end' },
        name.length > maxChars ? `${name.slice(0, maxChars - 1)}…` : name),
      s('rect', { class: 'chart-bar', x: String(x0), y: (y + 6).toFixed(1), width: w.toFixed(1), height: String(rowH - 12), rx: '4', fill: COLORS.bar, 'data-testid': `${testid}-bar` },
        s('title', null, r.tip || `${name}: ${r.text ?? format(v)}`)),
      s('text', { class: 'chart-value', x: (x0 + w + 6).toFixed(1), y: (y + rowH / 2 + 4).toFixed(1) }, r.text ?? format(v)),
    );
  });
  svg.append(s('line', { class: 'chart-axis', x1: String(x0), x2: String(x0), y1: String(pad.top), y2: String(yEnd) }));
  return svg;
}
