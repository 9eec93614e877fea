// A live list of tasks as rows (status badge, query, agent, price, time), each a link to the
// task's page. Used by the dashboard (recent tasks) and the tasks page. Rows are kept by id,
// so a task_update changes the badge in place without rebuilding the list (focus and scroll
// stay put); a finished task never goes back to an earlier status when updates arrive late.

import { h, statusBadge, setBadge, fmtPrice, fmtDuration, timeEl, truncate, shortId, TERMINAL, DASH } from './ui.js';

const RANK = { queued: 0, running: 1 };

export class TaskList {
  constructor({ testid = 'task-list' } = {}) {
    this.el = h('ul', { class: 'task-list', 'data-testid': testid });
    this.tasks = new Map(); // id → task
    this.rows = new Map();  // id → { li, badge, meta }
  }

  get size() {
    return this.tasks.size;
  }

  has(id) {
    return this.tasks.has(id);
  }

  clear() {
    this.tasks.clear();
    this.rows.clear();
    this.el.replaceChildren();
  }

  /** Add tasks at the end (a page of a newest-first listing). */
  append(tasks) {
    for (const t of tasks) this.#put(t, 'end');
  }

  /** Add a task at the top (just submitted or first seen live). */
  prepend(t) {
    this.#put(t, 'start');
  }

  /** Merge a partial update (task_update data or a fetched task). Returns the merged task. */
  update(partial) {
    const id = partial.id;
    const prev = this.tasks.get(id);
    if (!prev) return null;
    const next = { ...prev, ...partial };
    if (TERMINAL.has(prev.status) && !TERMINAL.has(partial.status)) next.status = prev.status;
    else if (!TERMINAL.has(partial.status) && (RANK[partial.status] ?? 0) < (RANK[prev.status] ?? 0)) next.status = prev.status;
    this.tasks.set(id, next);
    this.#fill(id);
    return next;
  }

  #put(t, where) {
    if (this.tasks.has(t.id)) {
      this.update(t);
      return;
    }
    this.tasks.set(t.id, t);
    const badge = statusBadge(t.status, 'task-status');
    const query = h('a', { class: 'task-query', href: `/tasks/${t.id}`, 'data-testid': 'task-link' });
    const meta = h('span', { class: 'task-meta' });
    const li = h('li', { class: 'task', 'data-task-id': t.id, 'data-testid': 'task-row' }, badge, query, meta);
    this.rows.set(t.id, { li, badge, query, meta });
    if (where === 'start') this.el.prepend(li);
    else this.el.append(li);
    this.#fill(t.id);
  }

  #fill(id) {
    const t = this.tasks.get(id);
    const row = this.rows.get(id);
    if (!t || !row) return;
    row.li.dataset.status = t.status || '';
    setBadge(row.badge, t.status);
    row.query.textContent = truncate(t.query || '(no query)', 140);
    row.query.title = t.query || '';
    const item = (label, value, testid) =>
      h('span', { class: 'meta' }, h('span', { class: 'meta-label' }, label), ' ',
        h('span', { class: 'meta-value', 'data-testid': testid }, value));
    row.meta.replaceChildren(
      item('Agent', t.agent_name || (t.agent_id ? shortId(t.agent_id) : DASH), 'task-agent'),
      item('Price', fmtPrice(t.price), 'task-price'),
      item('Took', fmtDuration(t.duration_ms), 'task-duration'),
      h('span', { class: 'meta' }, timeEl(t.created_at, 'task-created')),
    );
  }
}
