// / (dashboard): my tasks by status, the server's queue depth per priority (live through the
// "queue" topic), last hour's throughput with p50/p95, recent tasks with live badges, and
// quick links. Counts and the chart are fetched again (debounced) when my tasks change.

import * as api from '../api.js';
import { mountChart, throughputChart, throughputLegend } from '../charts.js';
import { TaskList, taskFromUpdate, isMine } from '../task-list.js';
import { openUploadDialog } from '../upload.js';
import {
  h, debounce, showMessage, clearMessage, messageBox, loadError, fmtNumber, fmtDuration,
  TERMINAL, PRIORITIES,
} from '../ui.js';
import { currentUser } from '../session.js';

const RECENT = 8;
const STATUS_TILES = [
  ['queued', 'Queued'], ['running', 'Running'], ['completed', 'Completed'],
  ['failed', 'Failed'], ['timed_out', 'Timed out'], ['canceled', 'Canceled'],
];

export default {
  title: 'Dashboard',

  mount(root, { scope }) {
    const tiles = {};
    const statsBar = h('section', { class: 'stats-bar', 'aria-label': 'My tasks by status', 'data-testid': 'stats-bar' },
      STATUS_TILES.map(([key, label]) => {
        tiles[key] = h('span', { class: 'stat-value', 'data-testid': `stat-${key}` }, '–');
        return h('a', { class: 'stat', 'data-stat': key, href: `/tasks?status=${key}` }, tiles[key], h('span', { class: 'stat-label' }, label));
      }));
    const statsError = messageBox('stats-error');

    const depth = {};
    const depthMax = h('span', { class: 'muted small', 'data-testid': 'queue-summary' }, '');
    const queueList = h('ul', { class: 'queue-bars', 'data-testid': 'queue-depth' },
      [...PRIORITIES].reverse().map((p) => {
        const bar = h('span', { class: 'queue-bar-fill', 'data-priority': p });
        const value = h('span', { class: 'queue-value', 'data-testid': `queue-${p}` }, '–');
        depth[p] = { bar, value };
        return h('li', { class: 'queue-row' }, h('span', { class: 'queue-label' }, p), h('span', { class: 'queue-bar' }, bar), value);
      }));

    const p50 = h('span', { class: 'stat-value', 'data-testid': 'stat-p50' }, '–');
    const p95 = h('span', { class: 'stat-value', 'data-testid': 'stat-p95' }, '–');
    const lastMinute = h('span', { class: 'stat-value', 'data-testid': 'stat-last-minute' }, '–');
    const chartBox = h('div', { class: 'chart-box', 'data-testid': 'dashboard-throughput' });
    const chartError = messageBox('throughput-error');

    const recent = new TaskList({ testid: 'recent-tasks' });
    const recentEmpty = h('p', { class: 'empty', 'data-testid': 'recent-empty', hidden: true },
      'No tasks yet. Open an agent from the ', h('a', { href: '/agents' }, 'marketplace'), ' and run one.');
    const recentError = messageBox('recent-error');

    const name = currentUser()?.full_name;
    root.append(
      h('div', { class: 'page-head' },
        h('div', null,
          h('h1', { class: 'gradient-text' }, 'Dashboard'),
          h('p', { class: 'muted', 'data-testid': 'greeting' }, name ? `Welcome back, ${name}.` : 'Your tasks, the queue and the last hour at a glance.')),
        h('div', { class: 'page-actions' },
          h('a', { class: 'btn btn-primary', href: '/agents', 'data-testid': 'quick-agents' }, 'Browse agents'),
          h('button', { type: 'button', class: 'btn btn-ghost', 'data-testid': 'quick-upload', onclick: () => openUploadDialog() }, 'Upload agent'))),
      statsBar,
      statsError,
      h('div', { class: 'grid-2' },
        h('section', { class: 'card', 'aria-labelledby': 'tp-title' },
          h('div', { class: 'section-head' },
            h('h2', { id: 'tp-title' }, 'Throughput, last hour'),
            throughputLegend()),
          h('div', { class: 'mini-stats' },
            h('div', { class: 'mini-stat' }, p50, h('span', { class: 'stat-label' }, 'p50 duration')),
            h('div', { class: 'mini-stat' }, p95, h('span', { class: 'stat-label' }, 'p95 duration')),
            h('div', { class: 'mini-stat' }, lastMinute, h('span', { class: 'stat-label', title: 'Completed in the last minute' }, 'Done last min'))),
          chartError,
          chartBox),
        h('section', { class: 'card', 'aria-labelledby': 'queue-title' },
          h('div', { class: 'section-head' }, h('h2', { id: 'queue-title' }, 'Queue'), depthMax),
          h('p', { class: 'muted small' }, 'Tasks waiting on this server per priority, all users. Higher priorities run first.'),
          queueList,
          h('h3', { class: 'subhead' }, 'Quick links'),
          h('ul', { class: 'quick-links' },
            h('li', null, h('a', { href: '/agents' }, 'Find an agent')),
            h('li', null, h('a', { href: '/tasks?status=failed' }, 'Failed tasks')),
            h('li', null, h('a', { href: '/analytics' }, 'Analytics')),
            h('li', null, h('a', { href: '/api-keys' }, 'API keys'))))),
      h('section', { class: 'card', 'aria-labelledby': 'recent-title' },
        h('div', { class: 'section-head' },
          h('h2', { id: 'recent-title' }, 'Recent tasks'),
          h('a', { href: '/tasks', class: 'btn btn-ghost btn-small' }, 'All tasks')),
        recentError,
        recent.el,
        recentEmpty),
    );

    const renderDepth = (q) => {
      if (!q) return;
      const max = Math.max(1, ...PRIORITIES.map((p) => Number(q[p]) || 0));
      let total = 0;
      for (const p of PRIORITIES) {
        const v = Number(q[p]) || 0;
        total += v;
        depth[p].value.textContent = fmtNumber(v, 0);
        depth[p].bar.style.width = `${(v / max) * 100}%`;
      }
      depthMax.textContent = `${fmtNumber(total, 0)} waiting`;
    };

    // Each loader drops an answer that a newer request of the same kind has overtaken.
    const latest = { stats: 0, chart: 0, recent: 0 };
    let queueLive = false; // a queue_update arrived: the topic, not /tasks/stats, draws the queue
    const loadStats = async () => {
      const mine = ++latest.stats;
      try {
        const st = await api.taskStats();
        if (!scope.alive || mine !== latest.stats) return;
        clearMessage(statsError);
        for (const [key] of STATUS_TILES) tiles[key].textContent = fmtNumber(st?.[key] ?? 0, 0);
        // Once the queue topic speaks it is the fresher source: a stats answer may predate it.
        if (!queueLive) renderDepth(st?.queue_depth);
        p50.textContent = fmtDuration(st?.recent?.p50_ms);
        p95.textContent = fmtDuration(st?.recent?.p95_ms);
        lastMinute.textContent = fmtNumber(st?.recent?.completed_last_minute ?? 0, 0);
      } catch (err) {
        if (scope.alive && mine === latest.stats && err.status !== 401) showMessage(statsError, loadError('Task counts', err));
      }
    };

    let stopChart = null;
    const loadChart = async () => {
      const mine = ++latest.chart;
      try {
        const a = await api.analytics({ window: '1h', scope: 'me' });
        if (!scope.alive || mine !== latest.chart) return;
        clearMessage(chartError);
        stopChart?.();
        stopChart = mountChart(chartBox, (width) => throughputChart(a.throughput, { width, height: 200, bucketSecs: a.bucket_secs }));
      } catch (err) {
        if (scope.alive && mine === latest.chart && err.status !== 401) showMessage(chartError, loadError('The throughput chart', err), 'warning');
      }
    };
    scope.add(() => stopChart?.());

    const loadRecent = async () => {
      const mine = ++latest.recent;
      try {
        const res = await api.listTasks({ limit: RECENT });
        if (!scope.alive || mine !== latest.recent) return;
        clearMessage(recentError);
        recent.clear();
        recent.append(res?.tasks || []);
        recentEmpty.hidden = recent.size > 0;
      } catch (err) {
        if (scope.alive && mine === latest.recent && err.status !== 401) showMessage(recentError, loadError('Recent tasks', err));
      }
    };

    const statsSoon = debounce(loadStats, 300, { maxWait: 2000 });
    const chartSoon = debounce(loadChart, 1000, { maxWait: 5000 });
    scope.add(() => { statsSoon.cancel(); chartSoon.cancel(); });

    scope.on('task_update', (d) => {
      if (!d.task_id || !isMine(d)) return; // an admin's socket also carries other people's tasks
      const partial = taskFromUpdate(d);
      if (recent.has(d.task_id)) recent.update(partial);
      else {
        recent.prepend({ created_at: new Date().toISOString(), ...partial });
        recent.trim(RECENT); // the oldest rows go, in list order
        recentEmpty.hidden = true;
      }
      statsSoon();
      if (TERMINAL.has(d.status)) chartSoon();
    });
    scope.on('queue_update', (d) => {
      queueLive = true;
      renderDepth(d.queue_depth);
    });
    scope.on('reconnected', () => { loadStats(); loadRecent(); loadChart(); });
    scope.topic('queue');

    loadStats();
    loadChart();
    loadRecent();
  },
};
