// A live list of tasks as rows (status badge, query, agent, price, time), each a link to the
// task's page. Used by the dashboard (recent tasks) and the tasks page. Rows are kept by id,
// so a task_update changes the badge in place without rebuilding the list (focus and scroll
// stay put); a finished task never goes back to an earlier status when updates arrive late.

import { currentUser, isAdmin, onUserChange } from './session.js';
import { h, seg, statusBadge, setBadge, fmtPrice, fmtDuration, timeEl, truncate, shortId, TERMINAL, DASH } from './ui.js';

const RANK = { queued: 0, running: 1 };

// task_update carries the task's owner_id: an admin's socket may also get other people's
// tasks (the UI unsubscribes admins from that stream, see live.js, but a message may still be
// in flight). Servers without owner_id fall back to the tasks this tab has seen in its own
// listings or submitted. Cleared on sign-out.
const knownMine = new Set();
onUserChange((u) => { if (!u) knownMine.clear(); });

/** Note a task of the signed-in person (listed by GET /tasks, or submitted here). */
export function rememberMine(id) {
  if (id) knownMine.add(id);
}

/** Whether a task_update is about a task of the signed-in person. */
export function isMine(d) {
  const me = currentUser();
  if (d.owner_id && me?.id) return d.owner_id === me.id;
  return !isAdmin() || knownMine.has(d.task_id ?? d.id);
}

/**
 * The task fields a task_update message carries, named as in a Task (task_id → id); fields
 * the message lacks (an older server) are left out, so a merge keeps what is known.
 */
export function taskFromUpdate(d) {
  const t = { id: d.task_id };
  for (const k of ['status', 'query', 'agent_id', 'agent_name', 'error', 'error_code', 'price', 'duration_ms', 'created_at']) {
    if (d[k] !== undefined && d[k] !== null) t[k] = d[k];
  }
  return t;
}

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

  /** Keep the first `max` rows (in list order) and drop the rest. */
  trim(max) {
    const extra = [...this.el.children].slice(max);
    for (const li of extra) {
      const id = li.dataset.taskId;
      li.remove();
      this.rows.delete(id);
      this.tasks.delete(id);
    }
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
    rememberMine(t.id);
    const badge = statusBadge(t.status, 'task-status');
    const query = h('a', { class: 'task-query', href: `/tasks/${seg(t.id)}`, 'data-testid': 'task-link' });
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
