// /tasks: my tasks, newest first, filtered by status, priority and agent (kept in the query
// string), with cursor pagination ("Load more"), the total, and live status badges. A task of
// mine that appears live and matches the filters is added at the top.

import * as api from '../api.js';
import * as router from '../router.js';
import { TaskList, taskFromUpdate, isMine } from '../task-list.js';
import {
  h, busy, debounce, showMessage, clearMessage, messageBox, loadError, fmtNumber,
  TASK_STATUSES, PRIORITIES, TERMINAL,
} from '../ui.js';

const PAGE_SIZE = 20;

export default {
  title: 'Tasks',

  mount(root, { query, scope }) {
    const st = {
      status: query.get('status') || '',
      priority: query.get('priority') || '',
      agent_id: query.get('agent_id') || '',
    };
    let cursor = null;
    let total = 0;
    let seq = 0;

    const select = (id, label, options, value, testid) => {
      const el = h('select', { id, 'data-testid': testid },
        h('option', { value: '' }, 'All'), options.map(([v, l]) => h('option', { value: v }, l)));
      el.value = value;
      return h('div', { class: 'field' }, h('label', { for: id }, label), el);
    };
    const statusField = select('t-status', 'Status', TASK_STATUSES.map((s) => [s, s.replace('_', ' ')]), st.status, 'filter-task-status');
    const priorityField = select('t-priority', 'Priority', PRIORITIES.map((p) => [p, p]), st.priority, 'filter-task-priority');
    const agentSelect = h('select', { id: 't-agent', 'data-testid': 'filter-task-agent' }, h('option', { value: '' }, 'All'));
    if (st.agent_id) agentSelect.append(h('option', { value: st.agent_id }, st.agent_id));
    agentSelect.value = st.agent_id;

    const count = h('p', { class: 'muted small', role: 'status', 'data-testid': 'tasks-count' }, '');
    const list = new TaskList({ testid: 'task-list' });
    const empty = h('p', { class: 'empty', 'data-testid': 'tasks-empty', hidden: true });
    const msg = messageBox('tasks-error');
    const agentsMsg = messageBox('filter-agent-error');
    const more = h('button', { type: 'button', class: 'btn btn-ghost btn-block', 'data-testid': 'tasks-more', hidden: true }, 'Load more');

    root.append(
      h('div', { class: 'page-head' },
        h('div', null, h('h1', { class: 'gradient-text' }, 'Tasks'), count),
        h('div', { class: 'page-actions' }, h('a', { class: 'btn btn-primary', href: '/agents' }, 'Run a new task'))),
      h('section', { class: 'card' },
        h('form', { class: 'filter-row', 'aria-label': 'Filter tasks', onsubmit: (e) => e.preventDefault() },
          statusField, priorityField,
          h('div', { class: 'field' }, h('label', { for: 't-agent' }, 'Agent'), agentSelect, agentsMsg)),
        msg, list.el, empty, more),
    );

    const onFilter = () => {
      st.status = statusField.querySelector('select').value;
      st.priority = priorityField.querySelector('select').value;
      st.agent_id = agentSelect.value;
      router.setQuery(st);
      load(true);
    };
    for (const el of root.querySelectorAll('.filter-row select')) el.addEventListener('change', onFilter);
    more.addEventListener('click', () => load(false));

    async function load(reset) {
      const mine = ++seq;
      const restore = reset ? null : busy(more, 'Loading…');
      list.el.setAttribute('aria-busy', 'true');
      try {
        const res = await api.listTasks({ ...st, limit: PAGE_SIZE, cursor: reset ? null : cursor });
        if (!scope.alive || mine !== seq) return;
        clearMessage(msg);
        if (reset) list.clear();
        list.append(res?.tasks || []);
        cursor = res?.next_cursor || null;
        total = Number(res?.total ?? list.size);
        renderChrome();
      } catch (err) {
        if (scope.alive && mine === seq && err.status !== 401) showMessage(msg, loadError('Your tasks', err));
      } finally {
        restore?.();
        if (mine === seq) list.el.removeAttribute('aria-busy');
      }
    }

    function renderChrome() {
      const filtered = st.status || st.priority || st.agent_id;
      count.textContent = `${fmtNumber(total, 0)} task${total === 1 ? '' : 's'}${filtered ? ' match the filters' : ''} · showing ${fmtNumber(list.size, 0)}`;
      more.hidden = !cursor;
      empty.hidden = list.size > 0;
      empty.replaceChildren(filtered
        ? 'No tasks match these filters.'
        : h('span', null, 'No tasks yet. Pick an agent in the ', h('a', { href: '/agents' }, 'marketplace'), ' and run one.'));
    }

    async function loadAgents() {
      try {
        const res = await api.listAgents({ sort: 'name', limit: 100 });
        if (!scope.alive) return;
        const current = agentSelect.value;
        agentSelect.replaceChildren(h('option', { value: '' }, 'All'),
          (res?.agents || []).map((a) => h('option', { value: a.id }, a.name)));
        if (current && ![...agentSelect.options].some((o) => o.value === current)) {
          agentSelect.append(h('option', { value: current }, current));
        }
        agentSelect.value = current;
      } catch (err) {
        // The filter still works with the id from the URL; say why the names are missing.
        if (scope.alive && err.status !== 401) showMessage(agentsMsg, loadError('The agent names', err), 'warning');
      }
    }

    const fetchSoon = new Map();
    scope.add(() => { for (const f of fetchSoon.values()) f.cancel(); });
    scope.on('task_update', (d) => {
      if (!d.task_id || (!list.has(d.task_id) && !isMine(d))) return; // admins get everyone's
      const partial = taskFromUpdate(d);
      if (list.has(d.task_id)) {
        list.update(partial);
      } else if (!st.status || st.status === d.status) {
        if ((!st.agent_id || st.agent_id === d.agent_id) && !st.priority) {
          list.prepend({ created_at: new Date().toISOString(), ...partial });
          total += 1;
          renderChrome();
        }
      }
      // An older server's message has no price or duration: fetch the finished task once.
      const incomplete = d.price === undefined || d.duration_ms === undefined;
      if (TERMINAL.has(d.status) && list.has(d.task_id) && incomplete) {
        if (!fetchSoon.has(d.task_id)) {
          fetchSoon.set(d.task_id, debounce(async () => {
            try {
              const t = await api.getTask(d.task_id);
              if (scope.alive) list.update(t);
            } catch (err) {
              if (scope.alive && err.status !== 401) showMessage(msg, loadError('A finished task', err), 'warning');
            }
          }, 200));
        }
        fetchSoon.get(d.task_id)();
      }
    });
    scope.on('reconnected', () => load(true));

    load(true);
    loadAgents();
  },
};
