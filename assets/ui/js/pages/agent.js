// /agents/:id: one agent — what it is, its build (live), its statistics (live through the
// "agent:<id>" topic), the "Run a task" form (generated from its input schema when it has an
// object schema), the runs submitted from this page with live badges and their results, its
// versions (owner: rollback, delete), and reviews with the review form.

import * as api from '../api.js';
import * as router from '../router.js';
import { buildNote } from '../upload.js';
import { taskFromUpdate, rememberMine } from '../task-list.js';
import { SchemaForm, isObjectSchema } from '../schema-form.js';
import { currentUser, onUserChange } from '../session.js';
import {
  h, busy, debounce, showMessage, clearMessage, messageBox, errorText, loadError, statusBadge, setBadge, stars,
  kv, valueBlock, confirmDialog, toast, fmtPrice, fmtNumber, fmtPercent, fmtDuration, fmtBytes,
  fmtDateTime, timeEl, truncate, shortId, safeUrl, seg, TERMINAL, PRIORITIES, DASH,
} from '../ui.js';

const STATUS_RANK = { validating: 0, compiling: 1, ready: 2, rejected: 2 };
const MAX_METADATA_ROWS = 20;

/**
 * One value of the agent's free-form metadata (written by its owner, so untrusted): an
 * http(s) URL becomes an external link, anything else (a javascript: or data: URL included)
 * stays text.
 */
function metadataValue(value) {
  if (typeof value === 'string') {
    const url = /^https?:\/\//i.test(value.trim()) ? safeUrl(value) : null;
    if (url) {
      return h('a', { href: url, rel: 'noopener noreferrer nofollow', target: '_blank', class: 'external', 'data-testid': 'agent-meta-link' }, truncate(value, 120));
    }
    return truncate(value, 300);
  }
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return h('code', null, truncate(text, 300));
}

/** Wilson lower bound (95 %) of the success rate: what the auction calls reputation. */
export function reputation(stats) {
  const ok = Number(stats?.tasks_completed) || 0;
  const n = ok + (Number(stats?.tasks_failed) || 0);
  if (!n) return null;
  const z = 1.96;
  const p = ok / n;
  return (p + (z * z) / (2 * n) - z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / (1 + (z * z) / n);
}

export default {
  title: 'Agent',

  mount(root, { params, scope }) {
    const id = params.id;
    let agent = null;

    const loading = h('p', { class: 'muted', 'data-testid': 'agent-loading' }, 'Loading the agent…');
    const pageMsg = messageBox('agent-error');
    root.append(h('p', { class: 'breadcrumb' }, h('a', { href: '/agents' }, '← Marketplace')), pageMsg, loading);

    // ------------------------------------------------------------- header --
    const title = h('h1', { class: 'gradient-text', 'data-testid': 'agent-name' });
    const versionChip = h('span', { class: 'chip chip-version', 'data-testid': 'agent-version' });
    const statusEl = statusBadge('validating', 'agent-status');
    const owner = h('p', { class: 'muted', 'data-testid': 'agent-owner' });
    const description = h('p', { class: 'agent-description', 'data-testid': 'agent-description' });
    const caps = h('ul', { class: 'chips', 'aria-label': 'Capabilities', 'data-testid': 'agent-capabilities' });
    const facts = h('dl', { class: 'kv-grid' });
    const metadata = h('dl', { class: 'kv-grid', 'data-testid': 'agent-metadata' });
    const metadataBox = h('div', { class: 'agent-metadata', hidden: true }, h('h3', { class: 'subhead' }, 'Details from the publisher'), metadata);
    const ownerActions = h('div', { class: 'page-actions', hidden: true });
    const build = h('div', { class: 'build-box', 'data-testid': 'agent-build', hidden: true });

    // -------------------------------------------------------------- stats --
    const statRuns = h('span', { class: 'stat-value', 'data-testid': 'stat-runs' }, '–');
    const statSuccess = h('span', { class: 'stat-value', 'data-testid': 'stat-success' }, '–');
    const statAvg = h('span', { class: 'stat-value', 'data-testid': 'stat-avg' }, '–');
    const statRep = h('span', { class: 'stat-value', 'data-testid': 'stat-reputation' }, '–');
    const statsMsg = messageBox('agent-stats-error');
    const ratingBox = h('div', { class: 'rating-box', 'data-testid': 'agent-rating' });

    // --------------------------------------------------------------- runs --
    const runForm = h('form', { class: 'run-form', 'data-testid': 'run-form', novalidate: true });
    const runMsg = messageBox('run-error');
    const runList = h('ul', { class: 'run-list', 'data-testid': 'run-list' });
    const runsEmpty = h('p', { class: 'muted small', 'data-testid': 'runs-empty' }, 'Tasks you run here appear below, with their results, as they finish.');
    const runs = new Map(); // task id → { li, badge, body, task }

    // ----------------------------------------------------------- versions --
    const versionsBody = h('tbody');
    const versionsMsg = messageBox('versions-error');

    // ------------------------------------------------------------ reviews --
    const reviewList = h('ul', { class: 'review-list', 'data-testid': 'review-list' });
    const reviewMsg = messageBox('review-error');
    const reviewsMsg = messageBox('reviews-load-error');

    const isOwner = () => {
      const u = currentUser();
      return Boolean(agent && u && (u.id === agent.owner_id || u.role === 'admin'));
    };

    function renderHeader() {
      title.textContent = agent.name;
      document.title = `${agent.name} · ZeroState`;
      versionChip.textContent = `v${agent.version}`;
      setBadge(statusEl, agent.status);
      owner.textContent = `by ${agent.owner_name || shortId(agent.owner_id)} · published ${fmtDateTime(agent.created_at)}`;
      description.textContent = agent.description || 'No description provided.';
      caps.replaceChildren(...(agent.capabilities || []).map((c) => h('li', { class: 'chip' },
        h('a', { href: `/agents?capability=${encodeURIComponent(c)}` }, c))));
      const meta = agent.metadata && typeof agent.metadata === 'object' && !Array.isArray(agent.metadata)
        ? Object.entries(agent.metadata).slice(0, MAX_METADATA_ROWS) : [];
      metadataBox.hidden = !meta.length;
      metadata.replaceChildren(...meta.map(([key, value]) => kv(key, metadataValue(value), 'agent-meta-value')));
      const lim = agent.limits || {};
      facts.replaceChildren(
        kv('Price per task', fmtPrice(agent.price), 'agent-price'),
        kv('Module size', fmtBytes(agent.binary_size), 'agent-size'),
        kv('Memory limit', lim.memory_bytes ? fmtBytes(lim.memory_bytes) : 'server default', 'agent-memory'),
        kv('Time limit', lim.timeout_secs ? `${lim.timeout_secs} s` : 'server default', 'agent-timeout'),
        kv('Input schema', agent.input_schema ? 'yes' : 'any input', 'agent-schema'),
        kv('SHA-256', agent.binary_hash ? h('span', { class: 'mono', title: agent.binary_hash }, agent.binary_hash.slice(0, 12)) : DASH, 'agent-hash'),
      );
      build.hidden = agent.status === 'ready';
      if (!build.hidden) build.replaceChildren(buildNote(agent.status, agent));
      if (agent.next_version) {
        build.hidden = false;
        build.append(h('p', { class: 'muted small' }, `Version ${agent.next_version} is building; it becomes current when it is ready.`));
      }
      renderOwnerActions();
      renderStats(agent.stats, agent.rating);
      renderRunAvailability();
    }

    let buildTick = null;
    scope.add(() => clearInterval(buildTick));
    function watchBuild() {
      clearInterval(buildTick);
      if (agent?.status === 'compiling') {
        buildTick = setInterval(() => build.replaceChildren(buildNote(agent.status, agent)), 500);
      }
    }

    function renderOwnerActions() {
      ownerActions.hidden = !isOwner();
      ownerActions.replaceChildren(
        h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'agent-delete', onclick: deleteAgent }, 'Delete agent'));
      renderVersions(lastVersions);
    }

    function renderStats(stats, rating) {
      const s = stats || {};
      const runsN = (Number(s.tasks_completed) || 0) + (Number(s.tasks_failed) || 0);
      statRuns.textContent = fmtNumber(runsN, 0);
      statSuccess.textContent = runsN ? fmtPercent(s.success_rate) : DASH;
      statAvg.textContent = runsN ? fmtDuration(s.avg_duration_ms) : DASH;
      const rep = reputation(s);
      statRep.textContent = rep === null ? DASH : fmtPercent(rep);
      statRep.title = rep === null ? 'No runs yet: the auction uses a neutral 50 %.' : 'Lower bound (95 %) of the success rate';
      const r = rating || {};
      ratingBox.replaceChildren(
        stars(r.mean, r.count),
        h('span', { class: 'rating-text' },
          r.count ? `${Number(r.mean).toFixed(1)} from ${r.count} review${r.count === 1 ? '' : 's'} · score ${Number(r.score).toFixed(2)}` : 'No reviews yet'));
    }

    async function deleteAgent() {
      const ok = await confirmDialog({
        title: `Delete ${agent.name}?`,
        message: 'It stops bidding at once and its versions and reviews are deleted. Finished tasks stay readable. This cannot be undone.',
        confirmLabel: 'Delete agent',
      });
      if (!ok) return;
      try {
        await api.deleteAgent(id);
        toast(`Agent “${agent.name}” deleted.`, 'success');
        if (scope.alive) router.navigate('/agents');
      } catch (err) {
        if (err.status !== 401) toast(`Could not delete the agent: ${errorText(err)}`, 'error');
      }
    }

    // ----------------------------------------------------------- run form --
    let schemaForm = null;
    const query = h('textarea', { id: 'run-query', name: 'query', rows: '3', 'data-testid': 'run-query' });
    const input = h('textarea', { id: 'run-input', name: 'input', rows: '3', class: 'mono', spellcheck: 'false', placeholder: '{"text": "…"}', 'aria-describedby': 'run-input-hint', 'data-testid': 'run-input' });
    const inputHint = h('span', { id: 'run-input-hint', class: 'hint' }, 'JSON sent to the agent on stdin. Without it the agent reads the text above.');
    const budget = h('input', { id: 'run-budget', type: 'number', min: '0', step: 'any', inputmode: 'decimal', required: true, 'data-testid': 'run-budget' });
    const priority = h('select', { id: 'run-priority', 'data-testid': 'run-priority' }, PRIORITIES.map((p) => h('option', { value: p }, p)));
    priority.value = 'normal';
    const timeout = h('input', { id: 'run-timeout', type: 'number', min: '1', step: '1', value: '30', inputmode: 'numeric', 'data-testid': 'run-timeout' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'run-submit' }, 'Run task');
    const check = h('button', { type: 'button', class: 'btn btn-ghost', 'data-testid': 'run-check', hidden: true }, 'Check input');
    const notReady = h('p', { class: 'notice', 'data-testid': 'run-not-ready', hidden: true });

    function buildRunForm() {
      const structured = isObjectSchema(agent.input_schema);
      schemaForm = structured ? new SchemaForm(agent.input_schema, 'run-in') : null;
      budget.value = String(agent.price ?? 0);
      if (agent.limits?.timeout_secs) timeout.value = String(agent.limits.timeout_secs);
      query.placeholder = structured ? `Run ${agent.name}` : 'e.g. the text to analyse, or what you need done';
      check.hidden = !agent.input_schema;
      runForm.replaceChildren(
        notReady,
        h('div', { class: 'field' },
          h('label', { for: 'run-query' }, structured ? 'Task description' : 'What should be done?',
            structured ? h('span', { class: 'optional' }, ' (optional)') : h('span', { class: 'required', 'aria-hidden': 'true' }, ' *')),
          query,
          h('span', { class: 'hint' }, structured ? 'Shown in your task list.' : 'Sent to the agent on stdin when there is no input below. Ctrl+Enter submits.')),
        structured
          ? h('fieldset', { class: 'fieldset' }, h('legend', null, 'Input'), schemaForm.el)
          : h('details', { class: 'advanced', open: agent.input_schema ? true : null },
            h('summary', null, 'JSON input (optional)'),
            h('div', { class: 'field' }, h('label', { for: 'run-input' }, 'Input'), input, inputHint),
            agent.input_schema ? valueBlock(agent.input_schema, 'run-schema') : null),
        h('div', { class: 'field-row' },
          h('div', { class: 'field' }, h('label', { for: 'run-budget' }, 'Budget'), budget),
          h('div', { class: 'field' }, h('label', { for: 'run-priority' }, 'Priority'), priority),
          h('div', { class: 'field' }, h('label', { for: 'run-timeout' }, 'Timeout (s)'), timeout)),
        runMsg,
        h('div', { class: 'form-actions' }, check, submit),
      );
      renderRunAvailability();
    }

    function renderRunAvailability() {
      if (!agent) return;
      const ready = agent.status === 'ready';
      notReady.hidden = ready;
      notReady.textContent = agent.status === 'rejected'
        ? 'This agent was rejected and cannot run tasks.'
        : 'This agent is still being built; you can run tasks once it is ready.';
      submit.disabled = !ready;
    }

    /** The submission's input: {value}, {none}, or {error, control}. */
    function readInput() {
      if (schemaForm) {
        const r = schemaForm.read();
        return r.error ? r : { value: r.value };
      }
      const raw = input.value.trim();
      if (!raw) return { none: true };
      try {
        return { value: JSON.parse(raw) };
      } catch {
        return { error: 'The input is not valid JSON. Fix it or leave it empty to send the text above.', control: input };
      }
    }

    function showSubmitError(err) {
      if (err.path && schemaForm && schemaForm.showError(err.path, errorText(err))) {
        showMessage(runMsg, `The input does not match the agent's schema at ${err.path}: ${errorText(err)}`);
        return;
      }
      showMessage(runMsg, err.path ? `${errorText(err)} (at ${err.path})` : errorText(err));
    }

    check.addEventListener('click', async () => {
      clearMessage(runMsg);
      const r = readInput();
      if (r.error) {
        showMessage(runMsg, r.error);
        r.control?.focus();
        return;
      }
      const restore = busy(check, 'Checking…');
      try {
        await api.validateInput(id, r.none ? null : r.value);
        showMessage(runMsg, 'The input matches the agent’s schema.', 'success');
      } catch (err) {
        if (err.status !== 401) showSubmitError(err);
      } finally {
        restore();
      }
    });

    query.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        runForm.requestSubmit();
      }
    });

    runForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearMessage(runMsg);
      schemaForm?.clearErrors();
      const text = query.value.trim() || (schemaForm ? `Run ${agent.name}` : '');
      if (!text) {
        showMessage(runMsg, 'Describe the task (or paste the text to process) in the first box.');
        query.focus();
        return;
      }
      const r = readInput();
      if (r.error) {
        showMessage(runMsg, r.error);
        r.control?.focus();
        return;
      }
      const b = Number(budget.value);
      if (budget.value === '' || !Number.isFinite(b) || b < 0) {
        showMessage(runMsg, 'The budget must be a number of 0 or more.');
        budget.focus();
        return;
      }
      const t = Math.round(Number(timeout.value || '30'));
      if (!Number.isFinite(t) || t < 1) {
        showMessage(runMsg, 'The timeout must be at least 1 second.');
        timeout.focus();
        return;
      }
      const body = { query: text, budget: b, timeout: t, priority: priority.value, agent_id: id };
      if (!r.none) body.input = r.value;
      const restore = busy(submit, 'Submitting…');
      try {
        const res = await api.submitTask(body);
        if (!scope.alive) return;
        if (!res || !res.task_id) throw new Error('The server accepted the task but did not say its id. See the tasks page.');
        addRun({
          id: res.task_id, status: res.status || 'queued', query: text, agent_id: res.agent_id,
          agent_name: res.agent_name, price: res.price, created_at: new Date().toISOString(),
        }, true);
        showMessage(runMsg, `Task submitted at price ${fmtPrice(res.price)}. Its status updates below.`, 'success');
      } catch (err) {
        if (scope.alive && err.status !== 401) showSubmitError(err);
      } finally {
        restore();
        renderRunAvailability();
      }
    });

    function addRun(task, isNew) {
      if (runs.has(task.id)) return;
      const badge = statusBadge(task.status, 'run-status');
      const body = h('div', { class: 'run-body' });
      const li = h('li', { class: 'run-item', 'data-task-id': task.id, 'data-testid': 'run-item' },
        h('div', { class: 'run-head' },
          badge,
          h('a', { href: `/tasks/${seg(task.id)}`, class: 'run-query', 'data-testid': 'run-link' }, truncate(task.query, 90)),
          timeEl(task.created_at, 'run-created')),
        body);
      runs.set(task.id, { li, badge, body, task });
      rememberMine(task.id);
      if (isNew) runList.prepend(li);
      else runList.append(li);
      runsEmpty.hidden = true;
      const seen = early.get(task.id);
      early.delete(task.id);
      if (seen && !TERMINAL.has(task.status)) Object.assign(task, { status: seen.status, error: seen.error, error_code: seen.error_code });
      renderRun(task.id);
      // One fetch after adding: covers an update that raced past both the socket and `early`.
      if (TERMINAL.has(task.status) || isNew) fetchRun(task.id);
    }

    function renderRun(taskId) {
      const run = runs.get(taskId);
      if (!run) return;
      const t = run.task;
      setBadge(run.badge, t.status);
      run.li.dataset.status = t.status;
      const parts = [];
      if (t.status === 'completed' && t.result !== undefined) {
        parts.push(h('p', { class: 'muted small' }, `Completed in ${fmtDuration(t.duration_ms)} · price ${fmtPrice(t.price)}`),
          t.result === null || t.result === '' ? h('p', { class: 'muted small' }, 'No output.') : valueBlock(t.result, 'run-result', { name: `task-${t.id}-result` }));
      } else if (t.error) {
        parts.push(h('p', { class: 'detail-error', 'data-testid': 'run-failure' }, `${t.error}${t.error_code ? ` (${t.error_code})` : ''}`));
      } else if (!TERMINAL.has(t.status)) {
        parts.push(h('p', { class: 'muted small' }, t.status === 'running' ? 'Running…' : 'Waiting in the queue…'));
      }
      if (t.loadError) parts.push(h('p', { class: 'form-msg', role: 'alert' }, t.loadError));
      run.body.replaceChildren(...parts);
    }

    async function fetchRun(taskId) {
      try {
        const full = await api.getTask(taskId);
        if (!scope.alive || !runs.has(taskId)) return;
        if (TERMINAL.has(full.status)) statsSoon();
        const known = runs.get(taskId).task;
        if (TERMINAL.has(known.status) && !TERMINAL.has(full.status)) return;
        runs.get(taskId).task = { ...known, ...full, loadError: null };
      } catch (err) {
        if (err.status === 401 || !runs.has(taskId)) return;
        runs.get(taskId).task.loadError = `Could not load the result: ${errorText(err)}`;
      }
      renderRun(taskId);
    }

    // The topic streams stats, but a finished run of mine also fetches them once, so the
    // figures stay right on a server without topics or while the socket is down.
    async function refreshStats() {
      try {
        const a = await api.getAgent(id);
        if (!scope.alive || !agent) return;
        clearMessage(statsMsg);
        agent.stats = a.stats;
        agent.rating = a.rating;
        renderStats(a.stats, a.rating);
      } catch (err) {
        if (scope.alive && err.status !== 401) showMessage(statsMsg, loadError('The latest statistics', err), 'warning');
      }
    }
    const statsSoon = debounce(refreshStats, 500);
    scope.add(() => statsSoon.cancel());

    // A fast task can finish before the submit's answer arrives: remember what the socket
    // said about tasks not (yet) listed here, and apply it when they are added.
    const early = new Map();
    scope.on('task_update', (d) => {
      const run = runs.get(d.task_id);
      if (!run) {
        if (d.agent_id === id) {
          early.set(d.task_id, d);
          // Bounded: an admin's socket also carries other people's runs of this agent.
          if (early.size > 100) early.delete(early.keys().next().value);
        }
        return;
      }
      const prev = run.task.status;
      if (TERMINAL.has(prev)) return;
      if (prev === 'running' && d.status === 'queued') return;
      run.task = { ...run.task, ...taskFromUpdate(d) };
      renderRun(d.task_id);
      if (TERMINAL.has(d.status)) fetchRun(d.task_id);
    });

    async function loadRuns() {
      try {
        const res = await api.listTasks({ agent_id: id, limit: 5 });
        if (!scope.alive) return;
        for (const t of res?.tasks || []) addRun(t, false);
      } catch (err) {
        if (scope.alive && err.status !== 401) toast(loadError('Your earlier runs', err), 'error');
      }
    }

    // ----------------------------------------------------------- versions --
    let lastVersions = null;
    async function loadVersions() {
      try {
        const res = await api.agentVersions(id);
        if (!scope.alive) return;
        clearMessage(versionsMsg);
        lastVersions = res;
        renderVersions(res);
      } catch (err) {
        if (scope.alive && err.status !== 401) showMessage(versionsMsg, loadError('Versions', err));
      }
    }

    function renderVersions(res) {
      if (!res) return;
      const owner = isOwner();
      versionsBody.replaceChildren(...(res.versions || []).map((v) => {
        const current = v.version === res.current_version;
        const actions = [];
        if (owner && !current) {
          if (v.status === 'ready') {
            actions.push(h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': 'version-rollback', onclick: () => rollback(v.version) }, 'Make current'));
          }
          actions.push(h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'version-delete', onclick: () => deleteVersion(v.version) }, 'Delete'));
        }
        return h('tr', { 'data-testid': 'version-row', 'data-version': v.version },
          h('td', { 'data-label': 'Version' }, h('span', { class: 'mono' }, v.version), current ? h('span', { class: 'chip chip-version', title: 'Current version' }, 'current') : null,
            v.version === res.next_version ? h('span', { class: 'chip' }, 'next') : null),
          h('td', { 'data-label': 'SHA-256', class: 'mono', title: v.sha256 }, (v.sha256 || '').slice(0, 12)),
          h('td', { 'data-label': 'Size' }, fmtBytes(v.size)),
          h('td', { 'data-label': 'Created' }, timeEl(v.created_at)),
          h('td', { 'data-label': 'Status' }, statusBadge(v.status, 'version-status'),
            v.rejection ? h('span', { class: 'small muted' }, ` ${v.rejection.message}`) : null),
          owner ? h('td', { 'data-label': 'Actions', class: 'actions' }, actions) : null);
      }));
      versionsHead.replaceChildren(h('tr', null, ['Version', 'SHA-256', 'Size', 'Created', 'Status', ...(owner ? ['Actions'] : [])].map((c) => h('th', { scope: 'col' }, c))));
    }
    const versionsHead = h('thead');

    async function rollback(version) {
      const ok = await confirmDialog({ title: `Make ${version} current?`, message: `New tasks will run version ${version} of ${agent.name}.`, confirmLabel: 'Make current', danger: false });
      if (!ok) return;
      try {
        const a = await api.rollbackAgent(id, version);
        toast(`Version ${version} is current now.`, 'success');
        if (!scope.alive) return; // the person moved on: nothing to draw
        agent = a;
        renderHeader();
        loadVersions();
      } catch (err) {
        if (err.status !== 401) toast(`Could not roll back: ${errorText(err)}`, 'error');
      }
    }

    async function deleteVersion(version) {
      const ok = await confirmDialog({ title: `Delete version ${version}?`, message: 'Its module is deleted once no other version uses it. This cannot be undone.', confirmLabel: 'Delete version' });
      if (!ok) return;
      try {
        await api.deleteAgentVersion(id, version);
        toast(`Version ${version} deleted.`, 'success');
        if (scope.alive) loadVersions();
      } catch (err) {
        if (err.status !== 401) toast(`Could not delete the version: ${errorText(err)}`, 'error');
      }
    }

    // ------------------------------------------------------------ reviews --
    const ratingSelect = h('select', { id: 'review-rating', 'data-testid': 'review-rating' },
      [5, 4, 3, 2, 1].map((n) => h('option', { value: String(n) }, `${'★'.repeat(n)}${'☆'.repeat(5 - n)}  ${n}`)));
    const comment = h('textarea', { id: 'review-comment', rows: '3', maxlength: '2000', 'data-testid': 'review-comment', placeholder: 'What worked, what did not?' });
    const reviewSubmit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'review-submit' }, 'Post review');
    const reviewForm = h('form', { class: 'review-form', 'data-testid': 'review-form', novalidate: true },
      h('div', { class: 'field-row' },
        h('div', { class: 'field' }, h('label', { for: 'review-rating' }, 'Your rating'), ratingSelect)),
      h('div', { class: 'field' }, h('label', { for: 'review-comment' }, 'Comment', h('span', { class: 'optional' }, ' (optional)')), comment),
      reviewMsg,
      h('div', { class: 'form-actions' }, reviewSubmit));

    reviewForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearMessage(reviewMsg);
      const restore = busy(reviewSubmit, 'Posting…');
      try {
        await api.postReview(id, { rating: Number(ratingSelect.value), comment: comment.value.trim() });
        showMessage(reviewMsg, 'Thanks — your review is posted.', 'success');
        comment.value = '';
        loadReviews();
        refreshStats();
      } catch (err) {
        if (err.status !== 401) showMessage(reviewMsg, errorText(err));
      } finally {
        restore();
      }
    });

    async function loadReviews() {
      try {
        const res = await api.agentReviews(id, { limit: 20 });
        if (!scope.alive) return;
        clearMessage(reviewsMsg);
        const list = res?.reviews || [];
        reviewList.replaceChildren(...(list.length
          ? list.map((r) => h('li', { class: 'review', 'data-testid': 'review' },
            h('div', { class: 'review-head' }, stars(r.rating, 1), h('strong', null, r.user_name || 'Someone'), timeEl(r.updated_at || r.created_at)),
            r.comment ? h('p', { class: 'review-comment' }, r.comment) : null))
          : [h('li', { class: 'muted small', 'data-testid': 'reviews-empty' }, 'No reviews yet. Run a task with this agent, then tell others how it went.')]));
      } catch (err) {
        if (scope.alive && err.status !== 401) showMessage(reviewsMsg, loadError('Reviews', err));
      }
    }

    // ------------------------------------------------------------- layout --
    function layout() {
      loading.remove();
      root.append(
        h('section', { class: 'card agent-hero', 'aria-labelledby': 'agent-title-h' },
          h('div', { class: 'page-head' },
            h('div', { class: 'agent-title' },
              h('div', { class: 'title-row', id: 'agent-title-h' }, title, versionChip, statusEl),
              owner),
            ownerActions),
          description, caps, build, facts, metadataBox),
        h('section', { class: 'stats-bar stats-bar-4', 'aria-label': 'Agent statistics (live)', 'data-testid': 'agent-stats' },
          h('div', { class: 'stat' }, statRuns, h('span', { class: 'stat-label' }, 'Runs')),
          h('div', { class: 'stat' }, statSuccess, h('span', { class: 'stat-label' }, 'Success rate')),
          h('div', { class: 'stat' }, statAvg, h('span', { class: 'stat-label' }, 'Avg duration')),
          h('div', { class: 'stat' }, statRep, h('span', { class: 'stat-label' }, 'Reputation'))),
        statsMsg,
        h('div', { class: 'grid-2' },
          h('section', { class: 'card', 'aria-labelledby': 'run-title' },
            h('h2', { id: 'run-title' }, 'Run a task'),
            h('p', { class: 'muted small' }, `Runs on ${agent.name} only (no auction). The budget must cover its price.`),
            runForm),
          h('section', { class: 'card', 'aria-labelledby': 'runs-title' },
            h('h2', { id: 'runs-title' }, 'Your runs'),
            runsEmpty, runList)),
        h('section', { class: 'card', 'aria-labelledby': 'versions-title' },
          h('h2', { id: 'versions-title' }, 'Versions'),
          versionsMsg,
          h('div', { class: 'table-wrap' }, h('table', { class: 'table', 'data-testid': 'versions-table' }, versionsHead, versionsBody))),
        h('section', { class: 'card', 'aria-labelledby': 'reviews-title' },
          h('div', { class: 'section-head' }, h('h2', { id: 'reviews-title' }, 'Reviews'), ratingBox),
          reviewsMsg, reviewList,
          h('h3', { class: 'subhead' }, 'Write a review'),
          reviewForm),
      );
    }

    async function refreshAgent() {
      try {
        const a = await api.getAgent(id);
        if (!scope.alive) return;
        if (agent && (STATUS_RANK[a.status] ?? 0) < (STATUS_RANK[agent.status] ?? 0) && a.version === agent.version) return;
        const schemaChanged = JSON.stringify(a.input_schema) !== JSON.stringify(agent?.input_schema);
        agent = a;
        renderHeader();
        watchBuild();
        if (schemaChanged) buildRunForm();
      } catch (err) {
        if (scope.alive && err.status !== 401) toast(loadError('The agent', err), 'error');
      }
    }

    scope.on('agent_update', (d) => {
      if (d.agent_id !== id || !agent) return;
      if (d.action === 'stats') {
        agent.stats = d.stats || agent.stats;
        agent.rating = d.rating || agent.rating;
        renderStats(agent.stats, agent.rating);
        return;
      }
      if (d.action === 'deleted') {
        showMessage(pageMsg, 'This agent was deleted. Its finished tasks stay readable on the tasks page.', 'warning');
        submit.disabled = true;
        return;
      }
      if (d.status) {
        agent.status = d.status;
        setBadge(statusEl, d.status);
      }
      refreshAgent();
      if (d.action === 'version' || d.action === 'updated') loadVersions();
    });
    scope.on('reconnected', () => {
      refreshAgent();
      loadVersions();
      // Runs that were still going may have finished while the socket was down.
      for (const [taskId, run] of runs) if (!TERMINAL.has(run.task.status)) fetchRun(taskId);
    });
    scope.add(onUserChange(() => { if (agent) renderOwnerActions(); }));

    (async () => {
      try {
        agent = await api.getAgent(id);
      } catch (err) {
        if (!scope.alive || err.status === 401) return;
        loading.remove();
        showMessage(pageMsg, err.code === 'agent_not_found' ? `There is no agent with id “${id}”. It may have been deleted.` : loadError('The agent', err));
        return;
      }
      if (!scope.alive) return;
      try {
        layout();
        renderHeader();
        buildRunForm();
        watchBuild();
      } catch (err) {
        // Data this page cannot draw (an odd input schema, say): say so instead of half a page.
        console.error(err);
        loading.remove();
        showMessage(pageMsg, `This agent could not be shown completely: ${errorText(err)}`);
      }
      scope.topic(`agent:${id}`);
      loadRuns();
      loadVersions();
      loadReviews();
    })();
  },
};
