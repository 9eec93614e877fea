// /tasks/:id: everything about one task — live status, query, input, result, error with its
// code, stderr, exit code, timings, price and budget, the auction's bids with per-criterion
// scores (winner marked), each failover re-auction, every attempt, and Cancel while it is
// queued or running. A task_update for it fetches the whole task again.

import * as api from '../api.js';
import {
  h, busy, debounce, showMessage, clearMessage, messageBox, errorText, loadError, statusBadge, setBadge, kv,
  valueBlock, longText, confirmDialog, toast, fmtPrice, fmtDuration, fmtDateTime, timeEl, shortId, seg, TERMINAL, DASH,
} from '../ui.js';

const score = (v) => (v === null || v === undefined || Number.isNaN(Number(v)) ? DASH : Number(v).toFixed(3));

function bidsTable(bids, testid, caption) {
  if (!bids?.length) return h('p', { class: 'muted small', 'data-testid': `${testid}-empty` }, 'No bids were recorded.');
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', 'data-testid': testid },
      h('caption', { class: 'sr-only' }, caption),
      h('thead', null, h('tr', null,
        ['#', 'Agent', 'Price', 'Price score', 'Quality', 'Speed', 'Reputation', 'Total'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, bids.map((b, i) => h('tr', { class: i === 0 ? 'winner' : null, 'data-testid': 'bid-row', 'data-winner': i === 0 ? 'true' : 'false' },
        h('td', { 'data-label': '#' }, String(i + 1)),
        h('td', { 'data-label': 'Agent' }, h('a', { href: `/agents/${seg(b.agent_id)}` }, b.agent_name || shortId(b.agent_id)),
          i === 0 ? h('span', { class: 'chip chip-winner', 'data-testid': 'bid-winner' }, 'winner') : null),
        h('td', { 'data-label': 'Price' }, fmtPrice(b.price)),
        h('td', { 'data-label': 'Price score' }, score(b.scores?.price)),
        h('td', { 'data-label': 'Quality' }, score(b.scores?.quality)),
        h('td', { 'data-label': 'Speed' }, score(b.scores?.speed)),
        h('td', { 'data-label': 'Reputation' }, score(b.scores?.reputation)),
        h('td', { 'data-label': 'Total' }, h('strong', null, score(b.total))))))));
}

function attemptsTable(attempts) {
  if (!attempts?.length) return h('p', { class: 'muted small', 'data-testid': 'attempts-empty' }, 'No finished runs yet.');
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', 'data-testid': 'attempts-table' },
      h('thead', null, h('tr', null, ['#', 'Agent', 'Outcome', 'Error', 'Duration', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, attempts.map((a, i) => h('tr', { 'data-testid': 'attempt-row' },
        h('td', { 'data-label': '#' }, String(i + 1)),
        h('td', { 'data-label': 'Agent' }, h('a', { href: `/agents/${seg(a.agent_id)}` }, a.agent_name || shortId(a.agent_id))),
        h('td', { 'data-label': 'Outcome' }, statusBadge(a.outcome, 'attempt-outcome')),
        h('td', { 'data-label': 'Error', class: 'wrap' }, a.error ? `${a.error}${a.error_code ? ` (${a.error_code})` : ''}` : DASH),
        h('td', { 'data-label': 'Duration' }, fmtDuration(a.duration_ms)),
        h('td', { 'data-label': 'Started' }, timeEl(a.started_at)))))));
}

export default {
  title: 'Task',

  mount(root, { params, scope }) {
    const id = params.id;
    const pageMsg = messageBox('task-error-load');
    const badge = statusBadge('queued', 'task-status');
    const heading = h('h1', { class: 'task-title', 'data-testid': 'task-title' }, 'Task');
    const cancel = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': 'task-cancel', hidden: true }, 'Cancel task');
    const agentLink = h('a', { class: 'btn btn-ghost', 'data-testid': 'task-agent-link', hidden: true }, 'Open agent');
    const body = h('div', { class: 'task-body' }, h('p', { class: 'muted', 'data-testid': 'task-loading' }, 'Loading the task…'));
    let task = null;

    root.append(
      h('p', { class: 'breadcrumb' }, h('a', { href: '/tasks' }, '← Tasks')),
      h('div', { class: 'page-head' },
        h('div', { class: 'title-row' }, heading, badge),
        h('div', { class: 'page-actions' }, agentLink, cancel)),
      pageMsg,
      body,
    );

    function section(titleText, testid, ...content) {
      return h('section', { class: 'card', 'data-testid': testid }, h('h2', null, titleText), ...content);
    }

    function render() {
      const t = task;
      setBadge(badge, t.status);
      heading.textContent = t.query ? (t.query.length > 80 ? `${t.query.slice(0, 79)}…` : t.query) : `Task ${shortId(t.id)}`;
      heading.title = t.query || '';
      document.title = `Task ${shortId(t.id)} · ZeroState`;
      cancel.hidden = TERMINAL.has(t.status);
      agentLink.hidden = !t.agent_id;
      if (t.agent_id) {
        agentLink.setAttribute('href', `/agents/${seg(t.agent_id)}`);
        agentLink.textContent = `Open ${t.agent_name || 'agent'}`;
      }

      const parts = [
        h('section', { class: 'card' },
          h('dl', { class: 'kv-grid' },
            kv('Task id', t.id, 'detail-id', true),
            kv('Status', t.status, 'detail-status'),
            kv('Agent', t.agent_name || DASH, 'detail-agent'),
            kv('Priority', t.priority || DASH, 'detail-priority'),
            kv('Budget', fmtPrice(t.budget), 'detail-budget'),
            kv('Price', fmtPrice(t.price), 'detail-price'),
            kv('Timeout', t.timeout_secs ? `${t.timeout_secs} s` : DASH, 'detail-timeout'),
            kv('Pinned agent', t.pinned ? 'yes (no failover)' : 'no (auction)', 'detail-pinned'),
            kv('Created', fmtDateTime(t.created_at), 'detail-created'),
            kv('Started', fmtDateTime(t.started_at), 'detail-started'),
            kv('Finished', fmtDateTime(t.completed_at), 'detail-completed'),
            kv('Duration', fmtDuration(t.duration_ms), 'detail-duration'),
            kv('Runs started', String(t.starts ?? DASH), 'detail-starts'),
            kv('Exit code', t.exit_code ?? DASH, 'detail-exit-code'),
            t.deadline ? kv('Deadline', fmtDateTime(t.deadline), 'detail-deadline') : null,
            t.capabilities?.length ? kv('Capabilities', t.capabilities.join(', '), 'detail-capabilities') : null)),
      ];

      if (t.error || t.error_code) {
        parts.push(section('Error', 'task-error-section',
          h('p', { class: 'detail-error', 'data-testid': 'task-error' }, t.error || 'No message.'),
          t.error_code ? h('p', { class: 'small' }, 'Code: ', h('code', { 'data-testid': 'task-error-code' }, t.error_code)) : null));
      }

      const resultPart = t.result !== undefined && t.result !== null && t.result !== ''
        ? valueBlock(t.result, 'task-result', { name: `task-${t.id}-result` })
        : h('p', { class: 'muted small', 'data-testid': 'task-result-empty' },
          TERMINAL.has(t.status) ? 'No result was returned.' : 'No result yet — this updates live when the task finishes.');
      parts.push(h('div', { class: 'grid-2' },
        section('Query', 'task-query-section', h('p', { class: 'detail-text', 'data-testid': 'task-query' }, t.query || DASH),
          h('h3', { class: 'subhead' }, 'Input'),
          t.input !== undefined && t.input !== null ? valueBlock(t.input, 'task-input', { name: `task-${t.id}-input` }) : h('p', { class: 'muted small' }, 'No input: the agent read the query.')),
        section('Result', 'task-result-section', resultPart,
          t.stderr ? h('div', null, h('h3', { class: 'subhead' }, 'Standard error'),
            longText(t.stderr, { testid: 'task-stderr', className: 'result result-stderr', filename: `task-${t.id}-stderr.txt` })) : null)));

      parts.push(section('Auction', 'task-bids-section',
        h('p', { class: 'muted small' }, t.pinned
          ? 'The agent was named on submit; the bid below is its own.'
          : 'Every eligible agent bid; the best weighted score won. Scores are 0 to 1, higher is better.'),
        bidsTable(t.bids, 'bids-table', 'Bids of the auction')));

      if (t.failover_bids?.length) {
        parts.push(section('Failover re-auctions', 'task-failover-section',
          t.failover_bids.map((bids, i) => h('div', { class: 'failover', 'data-testid': 'failover-auction' },
            h('h3', { class: 'subhead' }, `After failed attempt ${i + 1}`),
            bidsTable(bids, 'failover-table', `Re-auction after attempt ${i + 1}`)))));
      }

      parts.push(section('Attempts', 'task-attempts-section', attemptsTable(t.attempts)));
      body.replaceChildren(...parts);
    }

    async function load() {
      try {
        const t = await api.getTask(id);
        if (!scope.alive) return;
        if (task && TERMINAL.has(task.status) && !TERMINAL.has(t.status)) return;
        task = t;
        clearMessage(pageMsg);
        render();
      } catch (err) {
        if (!scope.alive || err.status === 401) return;
        if (!task) body.replaceChildren();
        showMessage(pageMsg, err.code === 'task_not_found' ? `There is no task of yours with id “${id}”.` : loadError('The task', err));
      }
    }
    const loadSoon = debounce(load, 150);
    scope.add(() => loadSoon.cancel());

    cancel.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Cancel this task?',
        message: task?.status === 'running' ? 'It stops as soon as its current run ends.' : 'It leaves the queue and will not run.',
        confirmLabel: 'Cancel task',
      });
      if (!ok) return;
      const restore = busy(cancel, 'Canceling…');
      try {
        const t = await api.cancelTask(id);
        toast('Task canceled.', 'success');
        if (!scope.alive) return;
        task = t;
        render();
      } catch (err) {
        if (err.status !== 401) toast(`Could not cancel: ${errorText(err)}`, 'error');
      } finally {
        restore();
        if (task && scope.alive) cancel.hidden = TERMINAL.has(task.status);
      }
    });

    scope.on('task_update', (d) => {
      if (d.task_id !== id) return;
      if (task && !TERMINAL.has(task.status)) {
        task.status = d.status;
        setBadge(badge, d.status);
        cancel.hidden = TERMINAL.has(d.status);
      }
      loadSoon();
    });
    scope.on('reconnected', load);
    load();
  },
};
