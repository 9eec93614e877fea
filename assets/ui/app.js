// ZeroState web UI — entry point.
//
// One page with two top-level views: the auth card (#auth-section) and the
// dashboard (#app-section). The dashboard holds the stats bar, the task form,
// the task list, the agent marketplace and the upload form. Live updates come
// over a WebSocket (ws.js); all HTTP goes through api.js.

import * as api from './api.js';
import { LiveSocket } from './ws.js';
import {
  $, h, toast, debounce, busy, showMessage, clearMessage, errorText,
  fmtPrice, fmtDuration, fmtPercent, fmtTime, fmtDateTime, fmtNumber, fmtBytes,
  timeValue, truncate, shortId, parseList, DASH, prefersReducedMotion,
} from './ui.js';

const AGENT_PAGE = 20;
const TASK_PAGE = 20;
const SEARCH_DEBOUNCE_MS = 250;
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'canceled', 'timeout', 'timed_out']);

// ------------------------------------------------------------------ state --

const state = {
  // Bumped on every log-in / log-out. Async work started under an older
  // session checks this and drops its result instead of rendering it.
  session: 0,
  inApp: false,
  me: null,
  agents: new Map(),     // id → Agent (every agent seen; feeds the agent <select>)
  tasks: new Map(),      // id → Task (merged from list, detail and live updates)
  taskEls: new Map(),    // id → { li, row, panel }
  expanded: new Set(),   // task ids whose detail panel is open
  loadingDetail: new Set(),
  detailErrors: new Map(), // id → message from the last failed detail fetch
  notified: new Set(),   // task ids we already toasted a final status for
  taskOffset: 0,
  taskTotal: 0,
  searchSeq: 0,
  everConnected: false,
  wsProbed: false,       // checked the token after a failed ws attempt this outage
  wsHideTimer: null,
};

const socket = new LiveSocket({
  url: api.wsUrl,
  onMessage: handleWsMessage,
  onStatus: renderWsStatus,
  onClose: handleWsClose,
});

// ---------------------------------------------------------- view switching --

function showAuth(notice) {
  state.inApp = false;
  $('app-section').hidden = true;
  $('user-box').hidden = true;
  $('ws-status').hidden = true;
  $('auth-section').hidden = false;
  const n = $('auth-notice');
  n.textContent = notice || '';
  n.hidden = !notice;
  selectAuthTab('login', { focus: false });
  $('login-email').focus();
}

function enterApp() {
  state.session += 1;
  state.inApp = true;
  resetData();
  $('auth-section').hidden = true;
  $('app-section').hidden = false;
  $('user-box').hidden = false;
  $('user-email').textContent = state.me?.email || '';
  $('main').focus({ preventScroll: true });

  loadMe();
  loadAgents();
  loadTasks({ reset: true });
  loadStats();
  state.everConnected = false;
  state.wsProbed = false;
  socket.start();
}

/** Forget the session and return to the auth card. */
function signOut(notice) {
  state.session += 1;
  api.clearToken();
  socket.stop();
  state.me = null;
  resetData();
  showAuth(notice);
}

/** Clear everything that belongs to the previous user. */
function resetData() {
  state.agents.clear();
  state.tasks.clear();
  state.taskEls.clear();
  state.expanded.clear();
  state.loadingDetail.clear();
  state.detailErrors.clear();
  state.notified.clear();
  state.taskOffset = 0;
  state.taskTotal = 0;
  $('task-list').replaceChildren();
  $('agent-list').replaceChildren();
  $('upload-result').replaceChildren();
  $('agents-summary').textContent = '';
  $('user-email').textContent = '';
  for (const id of ['tasks-error', 'agents-error', 'task-msg', 'upload-msg']) clearMessage($(id));
  for (const k of ['queued', 'running', 'completed', 'failed', 'total']) $(`stat-${k}`).textContent = '–';
  refreshAgentSelect();
}

// Any authenticated call answering 401 ends the session.
api.onUnauthorized(() => {
  if (!state.inApp) return;
  signOut('Your session has expired. Please log in again.');
});

// -------------------------------------------------------------------- auth --

function selectAuthTab(which, { focus = true } = {}) {
  const tabs = { login: $('tab-login'), signup: $('tab-signup') };
  const panels = { login: $('login-form'), signup: $('signup-form') };
  for (const key of Object.keys(tabs)) {
    const on = key === which;
    tabs[key].setAttribute('aria-selected', String(on));
    tabs[key].tabIndex = on ? 0 : -1;
    panels[key].hidden = !on;
  }
  clearMessage($('login-error'));
  clearMessage($('signup-error'));
  if (focus) tabs[which].focus();
}

function wireAuth() {
  $('tab-login').addEventListener('click', () => selectAuthTab('login'));
  $('tab-signup').addEventListener('click', () => selectAuthTab('signup'));
  // Arrow keys move between tabs (WAI-ARIA tabs pattern).
  for (const tab of [$('tab-login'), $('tab-signup')]) {
    tab.addEventListener('keydown', (e) => {
      if (!['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) return;
      e.preventDefault();
      const next = tab.id === 'tab-login' ? 'signup' : 'login';
      const target = e.key === 'Home' ? 'login' : e.key === 'End' ? 'signup' : next;
      selectAuthTab(target);
    });
  }

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.currentTarget;
    authenticate(f, $('login-error'), 'Logging in…', () =>
      api.login({ email: f.email.value.trim(), password: f.password.value }));
  });

  $('signup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.currentTarget;
    if (f.password.value.length < 8) {
      showMessage($('signup-error'), 'The password needs at least 8 characters.');
      f.password.focus();
      return;
    }
    authenticate(f, $('signup-error'), 'Creating account…', () =>
      api.register({
        email: f.email.value.trim(),
        full_name: f.full_name.value.trim(),
        password: f.password.value,
      }));
  });
}

async function authenticate(form, errorEl, busyLabel, call) {
  clearMessage(errorEl);
  const restore = busy(form.querySelector('button[type="submit"]'), busyLabel);
  try {
    const res = await call();
    if (!res || typeof res.token !== 'string' || !res.token) {
      throw new Error('The server did not return a session. Please try again.');
    }
    api.setToken(res.token);
    state.me = res.user || null;
    form.reset();
    enterApp();
  } catch (err) {
    showMessage(errorEl, errorText(err));
  } finally {
    restore();
  }
}

async function loadMe() {
  const session = state.session;
  try {
    const me = await api.me();
    if (session !== state.session) return;
    state.me = me;
    $('user-email').textContent = me?.email || '';
    $('user-email').title = me?.full_name ? `${me.full_name} <${me.email}>` : me?.email || '';
  } catch (err) {
    if (session !== state.session || err.status === 401) return; // 401 handled globally
    toast(`Could not load your profile: ${errorText(err)}`, 'error');
  }
}

// ------------------------------------------------------------------- stats --

async function loadStats() {
  const session = state.session;
  try {
    const s = await api.taskStats();
    if (session !== state.session) return;
    for (const k of ['queued', 'running', 'completed', 'failed', 'total']) {
      $(`stat-${k}`).textContent = fmtNumber(s?.[k] ?? null, 0);
    }
  } catch (err) {
    if (session !== state.session || err.status === 401) return;
    toast(`Could not load task counts: ${errorText(err)}`, 'error');
  }
}
// Live updates can arrive in bursts; coalesce them into one stats request.
const scheduleStats = debounce(loadStats, 300);

// ------------------------------------------------------------------ agents --

async function loadAgents() {
  const session = state.session;
  const seq = ++state.searchSeq; // only the newest search may render
  const q = $('agent-search').value.trim();
  const list = $('agent-list');
  list.setAttribute('aria-busy', 'true');
  try {
    const res = await api.listAgents({ q, limit: AGENT_PAGE });
    if (session !== state.session || seq !== state.searchSeq) return;
    const agents = Array.isArray(res?.agents) ? res.agents : [];
    for (const a of agents) state.agents.set(a.id, a);
    clearMessage($('agents-error'));
    renderAgents(agents, res?.total ?? agents.length, q);
    refreshAgentSelect();
    refreshTaskRows(); // rows may now be able to show agent names
  } catch (err) {
    if (session !== state.session || seq !== state.searchSeq || err.status === 401) return;
    showMessage($('agents-error'), `Could not load agents: ${errorText(err)}`);
  } finally {
    if (seq === state.searchSeq) list.removeAttribute('aria-busy');
  }
}

function renderAgents(agents, total, q) {
  const list = $('agent-list');
  const summary = $('agents-summary');
  if (!agents.length) {
    summary.textContent = '';
    list.replaceChildren(h('p', { class: 'empty', 'data-testid': 'agents-empty' },
      q ? `No agents match “${q}”.` : 'No agents yet — upload the first one below.'));
    return;
  }
  summary.textContent = total > agents.length
    ? `Showing ${agents.length} of ${total} agents — refine the search to narrow it down.`
    : `${total} agent${total === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}`;
  list.replaceChildren(...agents.map(agentCard));
}

/** Mean stars and review count, e.g. "4.5 ★ (12)"; a dash without reviews. */
function fmtRating(r) {
  const count = Number(r?.count) || 0;
  if (!count || r.mean == null) return DASH;
  return `${Number(r.mean).toFixed(1)} ★ (${fmtNumber(count, 0)})`;
}

function agentCard(a) {
  const s = a.stats || {};
  const runs = (Number(s.tasks_completed) || 0) + (Number(s.tasks_failed) || 0);
  const caps = Array.isArray(a.capabilities) ? a.capabilities : [];
  const stat = (label, value, testid) =>
    h('div', { class: 'kv' }, h('dt', null, label), h('dd', { 'data-testid': testid }, value));

  return h('article', { class: 'agent-card', 'data-agent-id': a.id, 'data-testid': 'agent-card' },
    h('header', { class: 'agent-head' },
      h('h3', { class: 'agent-name', 'data-testid': 'agent-name' }, a.name || shortId(a.id)),
      a.version ? h('span', { class: 'chip chip-version', 'data-testid': 'agent-version' }, `v${a.version}`) : null,
      a.status ? statusBadge(a.status, 'agent-status') : null,
    ),
    h('p', { class: 'agent-desc', 'data-testid': 'agent-description' }, a.description || 'No description provided.'),
    buildNote(a),
    caps.length
      ? h('ul', { class: 'chips', 'aria-label': 'Capabilities', 'data-testid': 'agent-capabilities' },
        caps.map((c) => h('li', { class: 'chip' }, c)))
      : null,
    h('dl', { class: 'agent-stats' },
      stat('Price', fmtPrice(a.price), 'agent-price'),
      stat('Rating', fmtRating(a.rating), 'agent-rating'),
      stat('Completed', fmtNumber(s.tasks_completed ?? 0, 0), 'agent-completed'),
      stat('Failed', fmtNumber(s.tasks_failed ?? 0, 0), 'agent-failed'),
      stat('Success', runs ? fmtPercent(s.success_rate) : DASH, 'agent-success'),
      stat('Avg time', runs ? fmtDuration(s.avg_duration_ms) : DASH, 'agent-avg'),
    ),
    h('div', { class: 'agent-actions' },
      h('button', {
        type: 'button',
        class: 'btn btn-primary btn-small',
        'data-testid': 'run-task',
        disabled: a.status && a.status !== 'ready' ? true : null,
        title: a.status && a.status !== 'ready' ? 'The agent runs once its build is ready.' : null,
        'aria-label': `Run task with ${a.name || 'this agent'}`,
        onclick: () => chooseAgent(a.id),
      }, 'Run task'),
    ),
  );
}

/** "Run task" on a card: preselect the agent and jump to the task form. */
function chooseAgent(id) {
  refreshAgentSelect();
  const select = $('task-agent');
  select.value = id;
  updateAgentHint();
  $('submit-section').scrollIntoView({ behavior: prefersReducedMotion() ? 'auto' : 'smooth', block: 'start' });
  const field = $('task-query');
  field.focus({ preventScroll: true });
  select.classList.remove('flash');
  void select.offsetWidth; // restart the highlight animation
  select.classList.add('flash');
}

/** Rebuild the agent <select> from every agent seen, keeping the choice. */
function refreshAgentSelect() {
  const select = $('task-agent');
  const current = select.value;
  const agents = [...state.agents.values()].sort((x, y) =>
    String(x.name || '').localeCompare(String(y.name || '')));
  const options = [h('option', { value: '' }, 'Auction decides (best offer within budget)')];
  for (const a of agents) {
    const label = `${a.name || shortId(a.id)}${a.version ? ` v${a.version}` : ''} — price ${fmtPrice(a.price)}`;
    options.push(h('option', { value: a.id }, label));
  }
  select.replaceChildren(...options);
  select.value = state.agents.has(current) ? current : '';
  updateAgentHint();
}

/** Warn when the chosen agent costs more than the budget. */
function updateAgentHint() {
  const hint = $('task-agent-hint');
  const agent = state.agents.get($('task-agent').value);
  const budget = Number($('task-budget').value);
  hint.classList.remove('hint-warn');
  if (!agent) {
    hint.textContent = 'Leave on “Auction decides” unless you want a specific agent.';
  } else if (Number.isFinite(budget) && Number(agent.price) > budget) {
    hint.textContent = `${agent.name} charges ${fmtPrice(agent.price)} per task, more than your budget of ${fmtPrice(budget)}. Raise the budget or the task may be rejected.`;
    hint.classList.add('hint-warn');
  } else {
    hint.textContent = `${agent.name} will run this task for ${fmtPrice(agent.price)}.`;
  }
}

function wireAgents() {
  const search = $('agent-search');
  const debounced = debounce(loadAgents, SEARCH_DEBOUNCE_MS);
  search.addEventListener('input', debounced);
  // Enter searches right away.
  $('agent-search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    debounced.cancel();
    loadAgents();
  });
  $('task-agent').addEventListener('change', updateAgentHint);
  $('task-budget').addEventListener('input', updateAgentHint);
}

// ------------------------------------------------------------------ upload --

function wireUpload() {
  const form = $('upload-form');
  const file = $('upload-file');

  // Suggest a name from the file name when the name field is still empty.
  file.addEventListener('change', () => {
    const f = file.files?.[0];
    const name = $('upload-name');
    if (f && !name.value.trim()) name.value = f.name.replace(/\.wasm$/i, '');
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const msg = $('upload-msg');
    clearMessage(msg);
    $('upload-result').replaceChildren();
    const f = file.files?.[0];
    if (!f) {
      showMessage(msg, 'Choose a .wasm file to upload.');
      file.focus();
      return;
    }
    // Catch the obvious mistake before sending megabytes: every wasm module
    // starts with the bytes "\0asm".
    try {
      const magic = new Uint8Array(await f.slice(0, 4).arrayBuffer());
      if (magic.length < 4 || magic[0] !== 0x00 || magic[1] !== 0x61 || magic[2] !== 0x73 || magic[3] !== 0x6d) {
        showMessage(msg, `“${f.name}” is not a WebAssembly module (.wasm).`);
        file.focus();
        return;
      }
    } catch {
      /* could not read locally; let the server decide */
    }

    const data = new FormData();
    data.append('wasm_binary', f, f.name);
    // Read fields by id: `form.name` would be the <form>'s own name property.
    const name = $('upload-name').value.trim();
    if (!name) {
      showMessage(msg, 'Give the agent a name.');
      $('upload-name').focus();
      return;
    }
    const price = Number($('upload-price').value || '0');
    if (!Number.isFinite(price) || price < 0) {
      showMessage(msg, 'The price must be a number of 0 or more.');
      $('upload-price').focus();
      return;
    }
    data.append('name', name);
    data.append('description', $('upload-description').value.trim());
    data.append('version', $('upload-version').value.trim() || '1.0.0');
    data.append('capabilities', parseList($('upload-capabilities').value).join(','));
    data.append('price', String(price));

    const session = state.session;
    const restore = busy(form.querySelector('button[type="submit"]'), 'Uploading…');
    try {
      const res = await api.uploadAgent(data);
      if (session !== state.session) return;
      renderUploadResult(res); // the live agent_update message adds a toast
      form.reset(); // restores defaults (version 1.0.0, price 0)
      loadAgents();
    } catch (err) {
      if (session !== state.session || err.status === 401) return;
      showMessage(msg, `Upload failed: ${errorText(err)}`);
    } finally {
      restore();
    }
  });
}

/**
 * A build in progress (what step, and how far the compile is against the server's estimate)
 * or the reason for a rejection; nothing for a ready agent.
 */
function buildNote(a) {
  const b = a.build || {};
  if (a.status === 'rejected') {
    const why = a.rejection ? `${a.rejection.message} (${a.rejection.code})` : 'no reason given';
    return h('p', { class: 'agent-build', 'data-status': 'rejected', 'data-testid': 'agent-rejection' },
      `Rejected: ${why}`);
  }
  if (a.status === 'validating') {
    return h('p', { class: 'agent-build', 'data-testid': 'agent-build' }, 'Validating the module…');
  }
  if (a.status !== 'compiling') return null;
  const started = b.compile_started_at ? Date.parse(b.compile_started_at) : NaN;
  const elapsed = Number.isNaN(started) ? null : Math.max(0, Date.now() - started);
  const estimate = Number(b.estimated_compile_ms) || null;
  const parts = ['Compiling'];
  if (elapsed !== null) parts.push(`for ${fmtDuration(elapsed)}`);
  if (estimate) parts.push(`of about ${fmtDuration(estimate)}`);
  return h('div', { class: 'agent-build', 'data-testid': 'agent-build' },
    h('p', null, `${parts.join(' ')}…`),
    estimate && elapsed !== null
      ? h('progress', { max: String(estimate), value: String(Math.min(elapsed, estimate)) })
      : null,
  );
}

function renderUploadResult(r) {
  $('upload-result').replaceChildren(
    h('div', { class: 'result-card', 'data-created-agent-id': r?.agent_id ?? '', 'data-testid': 'upload-created' },
      h('p', { class: 'result-title' }, '✓ Created ', h('strong', null, r?.name ?? ''), r?.version ? ` v${r.version}` : ''),
      h('dl', { class: 'kv-grid' },
        kv('Agent id', r?.agent_id ?? DASH, 'upload-agent-id', true),
        kv('Status', r?.status ?? DASH, 'upload-status'),
        kv('Size', fmtBytes(r?.binary_size), 'upload-size'),
        kv('Created', fmtDateTime(r?.created_at), 'upload-created-at'),
        kv('SHA-256', r?.binary_hash ?? DASH, 'upload-hash', true),
      ),
    ),
  );
}

// ------------------------------------------------------------- submit task --

/** Classify the optional input box: empty, valid JSON, or plain text. */
function readInput() {
  const raw = $('task-input').value.trim();
  if (!raw) return { kind: 'empty' };
  try {
    return { kind: 'json', value: JSON.parse(raw) };
  } catch {
    return { kind: 'text' };
  }
}

function updateInputHint() {
  const hint = $('task-input-hint');
  const r = readInput();
  hint.classList.toggle('hint-ok', r.kind === 'json');
  hint.classList.toggle('hint-warn', r.kind === 'text');
  hint.textContent = {
    empty: "JSON sent to the agent as its input. If it isn't valid JSON it is left out and the agent works from the query.",
    json: '✓ Valid JSON — it will be sent as the task input.',
    text: 'Not valid JSON — it will be left out and the agent will work from the query.',
  }[r.kind];
}

function wireTaskForm() {
  const form = $('task-form');
  $('task-input').addEventListener('input', updateInputHint);

  // Enter in a textarea makes a new line; Ctrl/⌘+Enter submits.
  for (const ta of form.querySelectorAll('textarea')) {
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const msg = $('task-msg');
    clearMessage(msg);

    const query = form.query.value.trim();
    if (!query) {
      showMessage(msg, 'Describe the task in the “What should be done?” box.');
      form.query.focus();
      return;
    }
    const budget = Number(form.budget.value);
    if (!Number.isFinite(budget) || budget < 0) {
      showMessage(msg, 'The budget must be a number of 0 or more.');
      form.budget.focus();
      return;
    }
    const timeout = Math.round(Number(form.timeout.value));
    if (!Number.isFinite(timeout) || timeout < 1) {
      showMessage(msg, 'The timeout must be at least 1 second.');
      form.timeout.focus();
      return;
    }

    const body = { query, budget, timeout, priority: form.priority.value };
    const input = readInput();
    if (input.kind === 'json') body.input = input.value;
    const caps = parseList(form.capabilities.value);
    if (caps.length) body.capabilities = caps;
    if (form.agent_id.value) body.agent_id = form.agent_id.value;

    const session = state.session;
    const restore = busy(form.querySelector('button[type="submit"]'), 'Submitting…');
    try {
      const res = await api.submitTask(body);
      if (session !== state.session) return;
      const id = res?.task_id;
      if (id) {
        upsertTask({
          id,
          status: res.status || 'queued',
          query,
          input: body.input ?? null,
          agent_id: res.agent_id ?? body.agent_id ?? null,
          price: res.price ?? null,
          priority: body.priority,
          budget,
          created_at: state.tasks.get(id)?.created_at || new Date().toISOString(),
        });
        renderTask(id);
        refreshTaskDetail(id, { quiet: true }); // pick up server timestamps
      }
      scheduleStats();
      const agentName = state.agents.get(res?.agent_id)?.name;
      const note = input.kind === 'text' ? ' The input was not valid JSON, so it was left out.' : '';
      showMessage(msg,
        `Task queued${agentName ? ` for ${agentName}` : ''}${res?.price != null ? ` at price ${fmtPrice(res.price)}` : ''}.${note}`,
        'success');
      form.query.value = '';
      form.input.value = '';
      updateInputHint();
    } catch (err) {
      if (session !== state.session || err.status === 401) return;
      showMessage(msg, `The task was not submitted: ${errorText(err)}`);
    } finally {
      restore();
    }
  });
}

// ------------------------------------------------------------------- tasks --

const STATUS_RANK = { queued: 0, pending: 0, assigned: 1, running: 2 };

/**
 * Merge what we learned about a task into state. A finished task never goes
 * back to an earlier status (updates can arrive out of order).
 */
function upsertTask(partial) {
  const prev = state.tasks.get(partial.id);
  const next = { ...(prev || {}), ...partial };
  if (prev && TERMINAL.has(prev.status) && !TERMINAL.has(partial.status)) {
    next.status = prev.status;
  } else if (prev && partial.status && !TERMINAL.has(partial.status)
    && (STATUS_RANK[partial.status] ?? 0) < (STATUS_RANK[prev.status] ?? 0)) {
    next.status = prev.status;
  }
  state.tasks.set(partial.id, next);
  return next;
}

async function loadTasks({ reset = false } = {}) {
  const session = state.session;
  const list = $('task-list');
  const more = $('tasks-more');
  const offset = reset ? 0 : state.taskOffset;
  list.setAttribute('aria-busy', 'true');
  const restore = reset ? null : busy(more, 'Loading…');
  try {
    const res = await api.listTasks({ limit: TASK_PAGE, offset });
    if (session !== state.session) return;
    const tasks = Array.isArray(res?.tasks) ? res.tasks : [];
    for (const t of tasks) {
      upsertTask(t);
      renderTask(t.id);
    }
    state.taskOffset = offset + tasks.length;
    state.taskTotal = Number(res?.total ?? state.taskOffset);
    clearMessage($('tasks-error'));
  } catch (err) {
    if (session !== state.session || err.status === 401) return;
    showMessage($('tasks-error'), `Could not load your tasks: ${errorText(err)}`);
  } finally {
    restore?.();
    if (session === state.session) {
      list.removeAttribute('aria-busy');
      updateTaskListChrome();
    }
  }
}

function updateTaskListChrome() {
  $('tasks-empty').hidden = state.tasks.size > 0 || !$('tasks-error').hidden;
  $('tasks-more').hidden = state.taskOffset >= state.taskTotal;
}

function agentLabel(t) {
  if (t.agent_name) return t.agent_name;
  if (t.agent_id) return state.agents.get(t.agent_id)?.name || shortId(t.agent_id);
  return TERMINAL.has(t.status) ? DASH : 'auction pending';
}

function statusBadge(status, testid = 'status-badge') {
  const s = String(status || 'unknown');
  return h('span', { class: 'badge', 'data-status': s, 'data-testid': testid },
    h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), s.replace(/_/g, ' '));
}

/** Create the row for a task or refresh it in place (keeps focus). */
function renderTask(id) {
  const t = state.tasks.get(id);
  if (!t) return;
  let els = state.taskEls.get(id);
  if (!els) {
    const panelId = `task-detail-${state.taskEls.size}-${Date.now().toString(36)}`;
    const row = h('button', {
      type: 'button',
      class: 'task-row',
      'aria-expanded': 'false',
      'aria-controls': panelId,
      'data-testid': 'task-row-toggle',
      onclick: () => toggleTask(id),
    });
    const panel = h('div', { class: 'task-detail', id: panelId, 'data-testid': 'task-detail', hidden: true });
    const li = h('li', { class: 'task', 'data-task-id': id, 'data-testid': 'task-row' }, row, panel);
    els = { li, row, panel };
    state.taskEls.set(id, els);
    insertTaskSorted(li, t);
  }
  els.li.dataset.status = t.status || '';
  fillTaskRow(els.row, t);
  if (state.expanded.has(id)) renderTaskDetail(els.panel, t);
  updateTaskListChrome();
}

/** Keep the list newest-first: insert before the first older task. */
function insertTaskSorted(li, t) {
  const list = $('task-list');
  const when = timeValue(t.created_at);
  for (const other of list.children) {
    const ot = state.tasks.get(other.dataset.taskId);
    if (ot && timeValue(ot.created_at) < when) {
      list.insertBefore(li, other);
      return;
    }
  }
  list.append(li);
}

function refreshTaskRows() {
  for (const [id, els] of state.taskEls) fillTaskRow(els.row, state.tasks.get(id));
}

function fillTaskRow(row, t) {
  const meta = (label, value, testid) =>
    h('span', { class: 'meta' }, h('span', { class: 'meta-label' }, label), ' ',
      h('span', { class: 'meta-value', 'data-testid': testid }, value));
  row.replaceChildren(
    statusBadge(t.status),
    h('span', { class: 'task-query', title: t.query || '', 'data-testid': 'task-query' },
      truncate(t.query || '(no query)', 140)),
    h('span', { class: 'task-meta' },
      meta('Agent', agentLabel(t), 'task-agent'),
      meta('Price', fmtPrice(t.price), 'task-price'),
      meta('Took', fmtDuration(t.duration_ms), 'task-duration'),
      h('time', { class: 'meta', datetime: t.created_at || null, title: fmtDateTime(t.created_at), 'data-testid': 'task-created' },
        fmtTime(t.created_at)),
    ),
    h('span', { class: 'chevron', 'aria-hidden': 'true' }),
  );
}

function toggleTask(id) {
  const els = state.taskEls.get(id);
  if (!els) return;
  const open = els.row.getAttribute('aria-expanded') !== 'true';
  els.row.setAttribute('aria-expanded', String(open));
  els.panel.hidden = !open;
  if (open) {
    state.expanded.add(id);
    refreshTaskDetail(id);
  } else {
    state.expanded.delete(id);
  }
}

async function refreshTaskDetail(id, { quiet = false } = {}) {
  const session = state.session;
  state.loadingDetail.add(id);
  state.detailErrors.delete(id);
  renderTask(id);
  try {
    const t = await api.getTask(id);
    if (session !== state.session) return null;
    if (t && t.id) upsertTask(t);
    return state.tasks.get(id);
  } catch (err) {
    if (session !== state.session || err.status === 401) return null;
    state.detailErrors.set(id, `Could not load the task details: ${errorText(err)}`);
    if (!quiet && !state.expanded.has(id)) toast(state.detailErrors.get(id), 'error');
    return null;
  } finally {
    if (session === state.session) {
      state.loadingDetail.delete(id);
      renderTask(id);
    }
  }
}

/** One <dt>/<dd> pair; wide ones (ids, hashes) span the row in monospace. */
function kv(label, value, testid, wide = false) {
  return h('div', { class: wide ? 'kv kv-wide' : 'kv' },
    h('dt', null, label), h('dd', { 'data-testid': testid }, value));
}

function renderTaskDetail(panel, t) {
  const parts = [];

  if (state.loadingDetail.has(t.id)) parts.push(h('p', { class: 'muted small' }, 'Loading details…'));
  const detailErr = state.detailErrors.get(t.id);
  if (detailErr) {
    parts.push(h('p', { class: 'form-msg', 'data-kind': 'error' }, detailErr, ' ',
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', onclick: () => refreshTaskDetail(t.id) }, 'Retry')));
  }

  parts.push(h('dl', { class: 'kv-grid' },
    kv('Task id', t.id, 'detail-id', true),
    kv('Status', t.status || DASH, 'detail-status'),
    kv('Agent', agentLabel(t), 'detail-agent'),
    kv('Priority', t.priority || DASH, 'detail-priority'),
    kv('Budget', fmtPrice(t.budget), 'detail-budget'),
    kv('Price', fmtPrice(t.price), 'detail-price'),
    kv('Created', fmtDateTime(t.created_at), 'detail-created'),
    kv('Started', fmtDateTime(t.started_at), 'detail-started'),
    kv('Completed', fmtDateTime(t.completed_at), 'detail-completed'),
    kv('Duration', fmtDuration(t.duration_ms), 'detail-duration'),
  ));

  parts.push(h('h4', { class: 'detail-heading' }, 'Query'),
    h('p', { class: 'detail-text', 'data-testid': 'detail-query' }, t.query || DASH));

  if (t.input !== undefined && t.input !== null) {
    parts.push(h('h4', { class: 'detail-heading' }, 'Input'), valueBlock(t.input, 'detail-input'));
  }

  if (t.error) {
    parts.push(h('h4', { class: 'detail-heading' }, 'Error'),
      h('p', { class: 'detail-error', 'data-testid': 'detail-error' }, String(t.error)));
  }

  parts.push(h('h4', { class: 'detail-heading' }, 'Result'));
  if (t.result !== undefined && t.result !== null && t.result !== '') {
    parts.push(valueBlock(t.result, 'detail-result'));
  } else {
    parts.push(h('p', { class: 'muted small', 'data-testid': 'detail-result-empty' },
      TERMINAL.has(t.status) ? 'No result was returned.' : 'No result yet — this updates live when the task finishes.'));
  }

  panel.replaceChildren(...parts);
}

/** JSON values as pretty-printed <pre>; plain strings as wrapped text. */
function valueBlock(value, testid) {
  if (typeof value === 'string') {
    return h('pre', { class: 'result result-text', 'data-testid': testid, tabindex: '0' }, value);
  }
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  return h('pre', { class: 'result result-json', 'data-testid': testid, tabindex: '0' }, text);
}

function wireTasks() {
  $('tasks-refresh').addEventListener('click', async (e) => {
    const restore = busy(e.currentTarget, 'Refreshing…');
    await Promise.all([loadTasks({ reset: true }), loadStats()]);
    restore();
  });
  $('tasks-more').addEventListener('click', () => loadTasks());
}

// --------------------------------------------------------------- websocket --

function handleWsMessage(msg) {
  if (!state.inApp) return;
  const data = msg.data && typeof msg.data === 'object' ? msg.data : {};
  switch (msg.type) {
    case 'task_update':
      handleTaskUpdate(data, msg.timestamp);
      break;
    case 'agent_update': {
      const name = data.name || shortId(data.agent_id) || 'An agent';
      if (data.status === 'ready') toast(`Agent “${name}” is ready.`, 'success');
      else if (data.status === 'rejected') toast(`Agent “${name}” was rejected; see its card.`, 'error');
      else if (data.action === 'registered') toast(`Agent “${name}” uploaded; building…`, 'info');
      else if (data.action && data.action !== 'updated') toast(`Agent “${name}” ${data.action}.`, 'info');
      loadAgents();
      break;
    }
    case 'system':
      // The server greets every new socket with "connected"; the header
      // indicator already says so, so a toast would just be noise on each
      // page load and reconnect.
      if (data.message === 'connected' && (data.level || 'info') === 'info') break;
      if (data.message) toast(String(data.message), data.level || 'info');
      break;
    default:
      break; // unknown types are ignored on purpose (forward compatibility)
  }
}

async function handleTaskUpdate(d, timestamp) {
  const id = d.task_id;
  if (!id) return;
  const partial = { id };
  if (d.status) partial.status = d.status;
  if (d.query) partial.query = d.query;
  if (d.agent_id) partial.agent_id = d.agent_id;
  if (!state.tasks.has(id)) partial.created_at = timestamp || new Date().toISOString();
  const t = upsertTask(partial);
  renderTask(id);
  scheduleStats();

  // A task just finished: fetch the result, then tell the person once.
  if (TERMINAL.has(t.status) && !state.notified.has(id)) {
    state.notified.add(id);
    const full = (await refreshTaskDetail(id, { quiet: true })) || state.tasks.get(id);
    if (!full || !state.inApp) return;
    const q = `“${truncate(full.query || shortId(id), 60)}”`;
    if (full.status === 'completed') {
      toast(`Task completed: ${q}`, 'success');
    } else {
      toast(`Task ${String(full.status).replace(/_/g, ' ')}: ${q}${full.error ? ` — ${truncate(full.error, 120)}` : ''}`, 'error');
    }
  }
}

function renderWsStatus({ state: s, text, canRetry }) {
  const box = $('ws-status');
  clearTimeout(state.wsHideTimer);
  box.dataset.state = s;
  $('ws-status-text').textContent = text;
  $('ws-reconnect').hidden = !canRetry;
  box.hidden = !state.inApp;
  if (s === 'connected') {
    state.wsProbed = false;
    // Catch up on anything missed while we were disconnected.
    if (state.everConnected) {
      loadTasks({ reset: true });
      loadStats();
    }
    state.everConnected = true;
    state.wsHideTimer = setTimeout(() => { box.hidden = true; }, 3000);
  }
}

/**
 * Browsers do not expose why a WebSocket handshake failed. If the first
 * attempt of an outage fails before opening, ask /users/me once: an expired
 * token answers 401 there and the global handler signs the person out.
 */
function handleWsClose({ opened, code }) {
  if (code === 1008 || code === 4001 || code === 4401) {
    // Policy violation / unauthorised close codes: verify the session now.
    api.me().catch(() => {});
    return;
  }
  if (!opened && !state.wsProbed) {
    state.wsProbed = true;
    api.me().catch(() => {});
  }
}

function wireSocketControls() {
  $('ws-reconnect').addEventListener('click', () => socket.reconnect());
  // Coming back online after giving up: try again without waiting for a click.
  window.addEventListener('online', () => {
    if (state.inApp && socket.gaveUp) socket.reconnect();
  });
}

// -------------------------------------------------------------------- boot --

function boot() {
  wireAuth();
  wireAgents();
  wireUpload();
  wireTaskForm();
  wireTasks();
  wireSocketControls();
  $('logout-btn').addEventListener('click', () => signOut());

  if (api.getToken()) enterApp();
  else showAuth();
}

boot();
