// DOM building, notifications, dialogs and number/time formatting shared by every page.
//
// Safety rule for the whole UI: text that came from a person or the server only ever reaches
// the page through text nodes / textContent (h() turns string children into text nodes).
// Nothing in the UI uses innerHTML.

/** document.getElementById that fails loudly on typos. */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/**
 * Create an element.
 *   h('button', { class: 'btn', type: 'button', onclick: fn }, 'Label')
 * Props: `class`, `text`, `value`, `style`, `on<event>` (function) are special; everything else
 * becomes an attribute (true → empty attribute, null/false/undefined → omitted). Children may be nodes,
 * strings/numbers (→ text nodes), arrays, or null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendChildren(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** h() for SVG elements (charts); every prop is an attribute. */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  appendChildren(el, children);
  return el;
}

// Attributes that load or navigate to a URL: only safeUrl() values get through.
const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'poster', 'xlink:href', 'srcset', 'ping']);

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'value' && 'value' in el) el.value = String(value);
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (key === 'style') el.style.cssText = String(value);
    else if (/^on/i.test(key)) {
      // Listeners only: a string here would become inline script.
      if (typeof value === 'function') el.addEventListener(key.slice(2), value);
    } else if (URL_ATTRS.has(key.toLowerCase())) {
      const url = safeUrl(value);
      if (url !== null) el.setAttribute(key, url);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
}

/**
 * `value` when it is safe as a link or source: an app path ("/tasks/1", "?q=", "#main"), or an
 * absolute http(s) or mailto URL. Anything else (javascript:, data:, vbscript:, "//other.host",
 * unparsable) gives null.
 */
export function safeUrl(value) {
  const str = String(value ?? '').trim();
  if (!str) return null;
  if ((str.startsWith('/') && !/^\/[\/\\]/.test(str)) || str.startsWith('#') || str.startsWith('?')) {
    return /[\u0000-\u001f\\]/.test(str) ? null : str;
  }
  let url;
  try {
    url = new URL(str);
  } catch {
    return null; // relative paths other than the forms above are not used by the UI
  }
  return ['http:', 'https:', 'mailto:'].includes(url.protocol) ? url.href : null;
}

/** The path segment for an id in an app URL (`/agents/${seg(id)}`). */
export const seg = (id) => encodeURIComponent(String(id ?? ''));

function appendChildren(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendChildren(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Show a message (string) in an inline element; an empty one hides it. */
export function showMessage(el, message, kind = 'error') {
  el.textContent = message || '';
  el.dataset.kind = kind;
  el.hidden = !message;
}

export function clearMessage(el) {
  el.textContent = '';
  el.hidden = true;
}

/** An inline message element, hidden until showMessage() fills it. */
export function messageBox(testid) {
  return h('p', { class: 'form-msg', role: 'alert', 'data-testid': testid, hidden: true });
}

/** Human-readable text for anything thrown by the API layer or the browser. */
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  if (typeof err === 'string') return err;
  return err.message || String(err);
}

/**
 * What to say when loading `what` failed: a server without the route (an older build) gets a
 * sentence saying so instead of the bare "no API route" text.
 */
export function loadError(what, err) {
  return notAvailable(what, err) || `Could not load ${what.toLowerCase()}: ${errorText(err)}`;
}

/** The words for an action the server does not offer (an older build), else errorText(). */
export function actionError(what, err) {
  return notAvailable(what, err) || errorText(err);
}

function notAvailable(what, err) {
  if (err && (err.code === 'route_not_found' || err.code === 'method_not_allowed')) {
    return `${what} is not available on this server yet (it answered: ${errorText(err)}). Update ZeroState to use it.`;
  }
  return null;
}

/** Put a button into a busy state (disabled, other label); returns the restore function. */
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

/**
 * Run `fn` once calls have paused for `ms`. With `maxWait`, a steady stream of calls (live
 * updates on a busy server) still runs it at least that often instead of never.
 */
export function debounce(fn, ms, { maxWait = Infinity } = {}) {
  let timer = null;
  let first = 0; // time of the first call not yet served
  const run = (args) => {
    clearTimeout(timer);
    timer = null;
    first = 0;
    fn(...args);
  };
  const wrapped = (...args) => {
    const now = Date.now();
    if (!first) first = now;
    clearTimeout(timer);
    const wait = Math.max(0, Math.min(ms, first + maxWait - now));
    timer = setTimeout(() => run(args), wait);
  };
  wrapped.cancel = () => {
    clearTimeout(timer);
    timer = null;
    first = 0;
  };
  return wrapped;
}

// ---------------------------------------------------------------- toasts --

const MAX_TOASTS = 5;

/**
 * Show a transient notification. level: info | success | warning | error. The container
 * (#toasts) is an aria-live region. Hovering or focusing a toast pauses its timer.
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
    setTimeout(() => el.remove(), 200);
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(dismiss, ms);
  };

  const el = h(
    'div',
    { class: `toast toast-${lvl}`, 'data-testid': 'toast', 'data-level': lvl, role: lvl === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-icon', 'aria-hidden': 'true' }),
    h('span', { class: 'toast-msg' }, message),
    h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss notification', onclick: dismiss }, '×'),
  );
  el.addEventListener('mouseenter', () => clearTimeout(timer));
  el.addEventListener('mouseleave', arm);
  el.addEventListener('focusin', () => clearTimeout(timer));
  el.addEventListener('focusout', arm);

  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  arm();
}

// --------------------------------------------------------------- dialogs --

/**
 * A modal <dialog> appended to <body>: showModal() traps focus and Esc closes it; focus
 * returns to the control that opened it. `onClose` runs once it is closed; the element is
 * removed then.
 */
export function modal({ title, testid, body, onClose, wide = false }) {
  const opener = document.activeElement;
  const titleId = `dlg-${Math.random().toString(36).slice(2, 9)}`;
  const close = () => dialog.close();
  const dialog = h('dialog', { class: wide ? 'dialog dialog-wide' : 'dialog', 'aria-labelledby': titleId, 'data-testid': testid },
    h('div', { class: 'dialog-head' },
      h('h2', { id: titleId, class: 'gradient-text' }, title),
      h('button', { type: 'button', class: 'dialog-close', 'aria-label': 'Close', 'data-testid': `${testid}-close`, onclick: close }, '×'),
    ),
    h('div', { class: 'dialog-body' }, body),
  );
  dialog.addEventListener('close', () => {
    dialog.remove();
    onClose?.();
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
  });
  // A click on the backdrop (outside the box) closes it too.
  dialog.addEventListener('mousedown', (e) => {
    if (e.target === dialog) {
      const r = dialog.getBoundingClientRect();
      const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
      if (!inside) close();
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

/** Ask before something that cannot be undone. Resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = true, testid = 'confirm-dialog' }) {
  return new Promise((resolve) => {
    let answer = false;
    const ok = h('button', {
      type: 'button',
      class: danger ? 'btn btn-danger' : 'btn btn-primary',
      'data-testid': 'confirm-ok',
      onclick: () => { answer = true; dlg.close(); },
    }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'btn btn-ghost', 'data-testid': 'confirm-cancel', onclick: () => dlg.close() }, 'Cancel');
    const messageId = `dlg-msg-${Math.random().toString(36).slice(2, 9)}`;
    const dlg = modal({
      title,
      testid,
      body: [h('p', { id: messageId }, message), h('div', { class: 'dialog-actions' }, cancel, ok)],
      onClose: () => resolve(answer),
    });
    dlg.dialog.setAttribute('role', 'alertdialog');
    dlg.dialog.setAttribute('aria-describedby', messageId);
    cancel.focus();
  });
}

// ---------------------------------------------------------------- pieces --

/** A status pill (task or agent status); data-status picks the colour. */
export function statusBadge(status, testid = 'status-badge') {
  const el = h('span', { class: 'badge', 'data-testid': testid });
  setBadge(el, status);
  return el;
}

/** Change a badge made by statusBadge() in place. */
export function setBadge(el, status) {
  const st = String(status || 'unknown');
  el.dataset.status = st;
  el.replaceChildren(h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), st.replace(/_/g, ' '));
}

/** One <dt>/<dd> pair of a key/value grid; wide ones (ids, hashes) span the row. */
export function kv(label, value, testid, wide = false) {
  return h('div', { class: wide ? 'kv kv-wide' : 'kv' },
    h('dt', null, label), h('dd', { 'data-testid': testid }, value));
}

/**
 * JSON values as pretty-printed <pre>; plain strings as wrapped text. Long values (a task
 * result of several MB) show only their beginning — laying out megabytes of wrapped text
 * freezes the page — with Copy all and Download for the whole text.
 */
export function valueBlock(value, testid, { name = 'result' } = {}) {
  if (typeof value === 'string') {
    return longText(value, { testid, className: 'result result-text', filename: `${name}.txt`, type: 'text/plain' });
  }
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return longText(text, { testid, className: 'result result-json', filename: `${name}.json`, type: 'application/json' });
}

/** Characters of a long text shown on the page; the rest is behind Copy all / Download. */
export const SHOWN_CHARS = 20_000;

/**
 * A <pre> (data-testid=testid) with `text`, cut after SHOWN_CHARS characters. A cut one has
 * data-truncated and is followed by a note with "Copy all" and "Download" for the whole text.
 */
export function longText(text, { testid, className = 'result result-text', filename = 'result.txt', type = 'text/plain', limit = SHOWN_CHARS } = {}) {
  const str = String(text ?? '');
  if (str.length <= limit) return h('pre', { class: className, 'data-testid': testid, tabindex: '0' }, str);

  // Cut at a line end near the limit when there is one, so JSON stays readable.
  let cut = str.lastIndexOf('\n', limit);
  if (cut < limit * 0.8) cut = limit;
  const pre = h('pre', { class: className, 'data-testid': testid, 'data-truncated': 'true', tabindex: '0' }, str.slice(0, cut), '\n…');
  const status = h('span', { class: 'hint', role: 'status', 'data-testid': `${testid}-copy-status` });
  const copy = h('button', {
    type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': `${testid}-copy`,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(str);
        status.textContent = `Copied all ${fmtNumber(str.length, 0)} characters.`;
      } catch {
        status.textContent = 'Copying is blocked in this browser; use Download instead.';
      }
    },
  }, 'Copy all');
  const download = h('button', {
    type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': `${testid}-download`,
    onclick: () => {
      const url = URL.createObjectURL(new Blob([str], { type }));
      const a = document.createElement('a');
      a.href = url;
      a.download = filename;
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    },
  }, 'Download');
  return h('div', { class: 'long-text', 'data-testid': `${testid}-long` },
    pre,
    h('p', { class: 'long-text-note small', 'data-testid': `${testid}-truncated` },
      h('span', { class: 'muted' }, `Showing the first ${fmtNumber(cut, 0)} of ${fmtNumber(str.length, 0)} characters (about ${fmtBytes(str.length)}). `),
      copy, ' ', download, ' ', status));
}

/** Five stars, filled to the mean (screen readers get the words). */
export function stars(mean, count) {
  const n = Number(count) || 0;
  const m = mean == null ? 0 : Number(mean);
  const label = n ? `${m.toFixed(1)} out of 5 stars from ${n} review${n === 1 ? '' : 's'}` : 'No reviews yet';
  return h('span', { class: 'stars', role: 'img', 'aria-label': label, title: label, 'data-testid': 'stars' },
    h('span', { class: 'stars-fill', style: `width:${Math.max(0, Math.min(5, m)) * 20}%`, 'aria-hidden': 'true' }, '★★★★★'),
    h('span', { class: 'stars-empty', 'aria-hidden': 'true' }, '★★★★★'));
}

/** "4.5 ★ (12)", or a dash without reviews. */
export function fmtRating(r) {
  const count = Number(r?.count) || 0;
  if (!count || r.mean == null) return DASH;
  return `${Number(r.mean).toFixed(1)} ★ (${fmtNumber(count, 0)})`;
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
  if (v >= 3_600_000) {
    const hrs = Math.floor(v / 3_600_000);
    const min = Math.round((v % 3_600_000) / 60_000);
    return min ? `${hrs} h ${min} min` : `${hrs} h`;
  }
  const m = Math.floor(v / 60_000);
  const sec = Math.round((v % 60_000) / 1000);
  return sec ? `${m} min ${sec} s` : `${m} min`;
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

/** A <time> element with the full date as tooltip. */
export function timeEl(iso, testid) {
  return h('time', { datetime: iso || null, title: fmtDateTime(iso), 'data-testid': testid }, fmtTime(iso));
}

export function truncate(text, max) {
  const str = String(text ?? '');
  return str.length > max ? `${str.slice(0, max - 1).trimEnd()}…` : str;
}

export function shortId(id) {
  const str = String(id ?? '');
  return str.length > 10 ? `${str.slice(0, 8)}…` : str;
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

export const TERMINAL = new Set(['completed', 'failed', 'canceled', 'timed_out']);
export const TASK_STATUSES = ['queued', 'running', 'completed', 'failed', 'timed_out', 'canceled'];
export const PRIORITIES = ['low', 'normal', 'high', 'critical'];
