// Small DOM and formatting helpers shared by the UI modules.
//
// Safety rule for the whole UI: user-supplied text only ever reaches the page
// through text nodes / textContent (h() turns string children into text
// nodes). Nothing here uses innerHTML.

/** Shorthand for document.getElementById that fails loudly on typos. */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/**
 * Create an element.
 *   h('button', { class: 'btn', type: 'button', onclick: fn }, 'Label')
 * Props: `class`, `text`, `on<event>` (function) are special; everything
 * else becomes an attribute (true → empty attribute, null/false/undefined →
 * omitted). Children may be nodes, strings/numbers (→ text nodes), arrays,
 * or null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  appendChildren(el, children);
  return el;
}

function appendChildren(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendChildren(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Show an error message (string or Error) in an inline element. */
export function showMessage(el, message, kind = 'error') {
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = !message;
}

export function clearMessage(el) {
  el.textContent = '';
  el.hidden = true;
}

/** Human-readable text for anything thrown by the API layer or the browser. */
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  if (typeof err === 'string') return err;
  return err.message || String(err);
}

/**
 * Put a submit button into a busy state (disabled, different label) and
 * back. Returns a function that restores it.
 */
export function busy(button, label) {
  const original = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  if (label) button.textContent = label;
  return () => {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = original;
  };
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

// ---------------------------------------------------------------- toasts --

const MAX_TOASTS = 5;

/**
 * Show a transient notification. level: info | success | warning | error.
 * The container (#toasts) is an aria-live region, so screen readers
 * announce new toasts. Hovering or focusing a toast pauses its timer.
 */
export function toast(message, level = 'info', { timeout } = {}) {
  const box = document.getElementById('toasts');
  if (!box) return;
  const lvl = ['info', 'success', 'warning', 'error'].includes(level) ? level : 'info';
  const ms = timeout ?? (lvl === 'error' || lvl === 'warning' ? 8000 : 5000);

  let timer = null;
  const dismiss = () => {
    clearTimeout(timer);
    el.classList.add('toast-leaving');
    // Remove after the fade; also fine if animations are disabled.
    setTimeout(() => el.remove(), 200);
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(dismiss, ms);
  };

  const el = h(
    'div',
    { class: `toast toast-${lvl}`, 'data-testid': 'toast', 'data-level': lvl },
    h('span', { class: 'toast-icon', 'aria-hidden': 'true' }),
    h('span', { class: 'toast-msg' }, message),
    h('button', {
      type: 'button',
      class: 'toast-close',
      'aria-label': 'Dismiss notification',
      onclick: dismiss,
    }, '×'),
  );
  el.addEventListener('mouseenter', () => clearTimeout(timer));
  el.addEventListener('mouseleave', arm);
  el.addEventListener('focusin', () => clearTimeout(timer));
  el.addEventListener('focusout', arm);

  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  arm();
}

// ------------------------------------------------------------ formatting --

/** "—" for missing values so empty cells never look broken. */
export const DASH = '—';

export function fmtNumber(n, maxDigits = 4) {
  if (n === null || n === undefined || n === '' || Number.isNaN(Number(n))) return DASH;
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: maxDigits });
}

export const fmtPrice = (p) => fmtNumber(p, 4);

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms === '' || Number.isNaN(Number(ms))) return DASH;
  const v = Number(ms);
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(v / 60_000);
  const s = Math.round((v % 60_000) / 1000);
  return `${m} min ${s} s`;
}

export function fmtPercent(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(Number(ratio))) return DASH;
  return `${Math.round(Number(ratio) * 1000) / 10}%`;
}

function toDate(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** Compact time: clock time for today, short date + time otherwise. */
export function fmtTime(iso) {
  const d = toDate(iso);
  if (!d) return iso ? String(iso) : DASH;
  const today = d.toDateString() === new Date().toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** Full local date + time, for detail views and tooltips. */
export function fmtDateTime(iso) {
  const d = toDate(iso);
  if (!d) return iso ? String(iso) : DASH;
  return d.toLocaleString([], {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** Milliseconds since epoch for sorting; unknown dates sort last. */
export function timeValue(iso) {
  const d = toDate(iso);
  return d ? d.getTime() : 0;
}

export function truncate(text, max) {
  const s = String(text ?? '');
  return s.length > max ? `${s.slice(0, max - 1).trimEnd()}…` : s;
}

export function shortId(id) {
  const s = String(id ?? '');
  return s.length > 10 ? `${s.slice(0, 8)}…` : s;
}

/** "a, b ,, c" → ["a", "b", "c"] (trimmed, de-duplicated, empties dropped). */
export function parseList(text) {
  const out = [];
  for (const part of String(text ?? '').split(',')) {
    const v = part.trim();
    if (v && !out.includes(v)) out.push(v);
  }
  return out;
}

export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return DASH;
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1024 / 1024).toFixed(2)} MiB`;
}

/** True when the user asked the OS to minimise motion. */
export function prefersReducedMotion() {
  return window.matchMedia?.('(prefers-reduced-motion: reduce)').matches ?? false;
}
