// /analytics: totals and charts for a window (1h, 24h, 7d, 30d) of my tasks, or the whole
// server's for admins (scope all): throughput over time, the duration histogram, success rate
// and spend per agent. Refetched (debounced) when a task of mine finishes.

import * as api from '../api.js';
import * as router from '../router.js';
import { mountChart, throughputChart, throughputLegend, histogramChart, barChart } from '../charts.js';
import { isAdmin, onUserChange } from '../session.js';
import { isMine } from '../task-list.js';
import {
  h, debounce, showMessage, clearMessage, messageBox, loadError, fmtNumber, fmtPercent, fmtPrice,
  fmtDuration, fmtDateTime, seg, TERMINAL,
} from '../ui.js';

const WINDOWS = [['1h', 'Last hour'], ['24h', '24 hours'], ['7d', '7 days'], ['30d', '30 days']];

export default {
  title: 'Analytics',

  mount(root, { query, scope }) {
    const st = {
      window: WINDOWS.some(([w]) => w === query.get('window')) ? query.get('window') : '1h',
      scope: query.get('scope') === 'all' ? 'all' : 'me',
    };
    let seq = 0;

    const windowButtons = WINDOWS.map(([w, label]) => h('button', {
      type: 'button', class: 'seg', 'aria-pressed': String(w === st.window), 'data-window': w, 'data-testid': `window-${w}`,
      onclick: () => { st.window = w; update(); },
    }, label));
    const scopeMe = h('button', { type: 'button', class: 'seg', 'data-testid': 'scope-me', onclick: () => { st.scope = 'me'; update(); } }, 'My tasks');
    const scopeAll = h('button', { type: 'button', class: 'seg', 'data-testid': 'scope-all', onclick: () => { st.scope = 'all'; update(); } }, 'Whole server');
    const scopeGroup = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Whose tasks', hidden: !isAdmin() }, scopeMe, scopeAll);

    const tiles = {};
    const tile = (key, label) => {
      tiles[key] = h('span', { class: 'stat-value', 'data-testid': `total-${key}` }, '–');
      return h('div', { class: 'stat', 'data-stat': key }, tiles[key], h('span', { class: 'stat-label' }, label));
    };
    const range = h('p', { class: 'muted small', 'data-testid': 'analytics-range' }, '');
    const msg = messageBox('analytics-error');

    const boxes = {
      throughput: h('div', { class: 'chart-box' }),
      durations: h('div', { class: 'chart-box' }),
      success: h('div', { class: 'chart-box' }),
      spend: h('div', { class: 'chart-box' }),
    };
    const agentTable = h('div', { class: 'table-wrap' });

    root.append(
      h('div', { class: 'page-head' },
        h('div', null, h('h1', { class: 'gradient-text' }, 'Analytics'), range),
        h('div', { class: 'page-actions' },
          h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time window' }, windowButtons),
          scopeGroup)),
      msg,
      h('section', { class: 'stats-bar stats-bar-7', 'aria-label': 'Totals', 'data-testid': 'analytics-totals' },
        tile('finished', 'Finished'), tile('completed', 'Completed'), tile('failed', 'Failed'),
        tile('timed_out', 'Timed out'), tile('canceled', 'Canceled'), tile('success_rate', 'Success rate'), tile('spend', 'Spend')),
      h('section', { class: 'card', 'aria-labelledby': 'a-tp' },
        h('div', { class: 'section-head' }, h('h2', { id: 'a-tp' }, 'Throughput'), throughputLegend()),
        boxes.throughput),
      h('div', { class: 'grid-2' },
        h('section', { class: 'card', 'aria-labelledby': 'a-dur' },
          h('h2', { id: 'a-dur' }, 'Run durations'),
          h('p', { class: 'muted small' }, 'Completed runs per duration bucket.'),
          boxes.durations),
        h('section', { class: 'card', 'aria-labelledby': 'a-succ' },
          h('h2', { id: 'a-succ' }, 'Success rate per agent'),
          h('p', { class: 'muted small' }, 'Completed ÷ (completed + failed + timed out); canceled tasks do not count.'),
          boxes.success)),
      h('div', { class: 'grid-2' },
        h('section', { class: 'card', 'aria-labelledby': 'a-spend' },
          h('h2', { id: 'a-spend' }, 'Spend per agent'),
          h('p', { class: 'muted small' }, 'Sum of the prices of completed tasks, in credits.'),
          boxes.spend),
        h('section', { class: 'card', 'aria-labelledby': 'a-agents' },
          h('h2', { id: 'a-agents' }, 'Agents'),
          agentTable)),
    );

    const stops = [];
    scope.add(() => stops.forEach((f) => f()));

    function update() {
      for (const b of windowButtons) b.setAttribute('aria-pressed', String(b.dataset.window === st.window));
      scopeMe.setAttribute('aria-pressed', String(st.scope === 'me'));
      scopeAll.setAttribute('aria-pressed', String(st.scope === 'all'));
      router.setQuery({ window: st.window === '1h' ? '' : st.window, scope: st.scope === 'all' ? 'all' : '' }, { replace: true });
      load();
    }

    async function load() {
      const mine = ++seq;
      root.setAttribute('aria-busy', 'true');
      try {
        const a = await api.analytics({ window: st.window, scope: st.scope });
        if (!scope.alive || mine !== seq) return;
        clearMessage(msg);
        render(a);
      } catch (err) {
        if (!scope.alive || mine !== seq || err.status === 401) return;
        showMessage(msg, loadError('Analytics', err));
        for (const b of Object.values(boxes)) b.replaceChildren(h('div', { class: 'chart-empty', 'data-testid': 'chart-unavailable' }, 'No data to show.'));
      } finally {
        if (mine === seq) root.removeAttribute('aria-busy');
      }
    }

    function render(a) {
      const t = a.totals || {};
      tiles.finished.textContent = fmtNumber(t.finished ?? 0, 0);
      tiles.completed.textContent = fmtNumber(t.completed ?? 0, 0);
      tiles.failed.textContent = fmtNumber(t.failed ?? 0, 0);
      tiles.timed_out.textContent = fmtNumber(t.timed_out ?? 0, 0);
      tiles.canceled.textContent = fmtNumber(t.canceled ?? 0, 0);
      tiles.success_rate.textContent = fmtPercent(t.success_rate);
      tiles.spend.textContent = fmtPrice(t.spend ?? 0);
      range.textContent = `${a.scope === 'all' ? 'Whole server' : 'My tasks'} · ${fmtDateTime(a.from)} – ${fmtDateTime(a.to)} · ${fmtDuration((a.bucket_secs || 0) * 1000)} per point`;

      stops.splice(0).forEach((f) => f());
      const agents = a.agents || [];
      stops.push(
        mountChart(boxes.throughput, (width) => throughputChart(a.throughput, { width, height: 240, bucketSecs: a.bucket_secs })),
        mountChart(boxes.durations, (width) => histogramChart(a.durations, { width })),
        mountChart(boxes.success, (width) => barChart(agents.map((r) => ({
          label: r.agent_name, value: r.success_rate, text: fmtPercent(r.success_rate),
          tip: `${r.agent_name}: ${fmtPercent(r.success_rate)} of ${r.completed + r.failed + r.timed_out} runs succeeded`,
        })), { width, max: 1, format: (v) => fmtPercent(v), testid: 'chart-success', label: 'Success rate per agent', emptyText: 'No finished runs in this window.' })),
        mountChart(boxes.spend, (width) => barChart(agents.filter((r) => r.spend > 0).map((r) => ({
          label: r.agent_name, value: r.spend, text: fmtPrice(r.spend), tip: `${r.agent_name}: ${fmtPrice(r.spend)} credits over ${r.completed} completed tasks`,
        })), { width, format: (v) => fmtNumber(v, 3), testid: 'chart-spend', label: 'Spend per agent', emptyText: 'Nothing spent in this window.' })),
      );

      agentTable.replaceChildren(agents.length
        ? h('table', { class: 'table', 'data-testid': 'analytics-agents' },
          h('thead', null, h('tr', null, ['Agent', 'Finished', 'Success', 'Mean time', 'Spend'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, agents.map((r) => h('tr', null,
            h('td', { 'data-label': 'Agent' }, h('a', { href: `/agents/${seg(r.agent_id)}` }, r.agent_name)),
            h('td', { 'data-label': 'Finished' }, fmtNumber(r.finished, 0)),
            h('td', { 'data-label': 'Success' }, fmtPercent(r.success_rate)),
            h('td', { 'data-label': 'Mean time' }, fmtDuration(r.mean_duration_ms)),
            h('td', { 'data-label': 'Spend' }, fmtPrice(r.spend))))))
        : h('p', { class: 'chart-empty', 'data-testid': 'analytics-agents-empty' }, 'No agent finished a task in this window.'));
    }

    const reloadSoon = debounce(load, 1500, { maxWait: 6000 });
    scope.add(() => reloadSoon.cancel());
    scope.on('task_update', (d) => {
      // An admin's socket carries everyone's tasks: only the whole-server view cares about all.
      if (TERMINAL.has(d.status) && (st.scope === 'all' || isMine(d))) reloadSoon();
    });
    scope.on('reconnected', load);
    scope.add(onUserChange(() => {
      scopeGroup.hidden = !isAdmin();
      if (!isAdmin() && st.scope === 'all') { st.scope = 'me'; update(); }
    }));
    update();
  },
};
