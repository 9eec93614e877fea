// /agents (marketplace): search as you type (typo tolerant on the server), capability facet
// chips with counts, price range, minimum rating, status, sort, pages. The query string holds
// the whole state, so a link or the back button restores it. "Upload agent" opens the upload
// dialog. The list reloads (debounced) when agents are added, changed or deleted, and the
// cards shown follow their agents' live statistics (one "agent:<id>" topic per card).

import * as api from '../api.js';
import * as live from '../live.js';
import * as router from '../router.js';
import { openUploadDialog } from '../upload.js';
import {
  h, debounce, showMessage, clearMessage, messageBox, loadError, statusBadge,
  fmtPrice, fmtNumber, fmtPercent, truncate, parseList, seg, DASH,
} from '../ui.js';

const PAGE_SIZE = 12;
const SEARCH_DEBOUNCE_MS = 200;
const SORTS = [
  ['', 'Best match / newest'], ['newest', 'Newest'], ['oldest', 'Oldest'], ['price', 'Price: low to high'],
  ['price:desc', 'Price: high to low'], ['rating', 'Rating'], ['tasks_completed', 'Most used'], ['name', 'Name'],
];

function readState(query) {
  return {
    q: query.get('q') || '',
    capability: parseList(query.get('capability') || ''),
    min_price: query.get('min_price') || '',
    max_price: query.get('max_price') || '',
    min_rating: query.get('min_rating') || '',
    status: query.get('status') || '',
    sort: query.get('sort') || '',
    page: Math.max(1, Number.parseInt(query.get('page') || '1', 10) || 1),
  };
}

function urlParams(st) {
  return {
    q: st.q.trim(),
    capability: st.capability.join(','),
    min_price: st.min_price,
    max_price: st.max_price,
    min_rating: st.min_rating,
    status: st.status,
    sort: st.sort,
    page: st.page > 1 ? st.page : '',
  };
}

/** The card's figures: rating, runs and success rate. */
function cardFigures(stats, rating) {
  const s = stats || {};
  const runs = (Number(s.tasks_completed) || 0) + (Number(s.tasks_failed) || 0);
  return {
    rating: rating?.count ? `${Number(rating.mean).toFixed(1)} ★ (${rating.count})` : DASH,
    runs: fmtNumber(runs, 0),
    success: runs ? fmtPercent(s.success_rate) : DASH,
  };
}

/** Change a card's figures in place (a live "stats" agent_update). */
export function updateAgentCard(card, stats, rating) {
  const f = cardFigures(stats, rating);
  const set = (testid, text) => {
    const el = card.querySelector(`[data-testid=${testid}]`);
    if (el && el.textContent !== text) el.textContent = text;
  };
  set('agent-rating', f.rating);
  set('agent-runs', f.runs);
  set('agent-success', f.success);
}

export function agentCard(a) {
  const f = cardFigures(a.stats, a.rating);
  const caps = Array.isArray(a.capabilities) ? a.capabilities : [];
  const stat = (label, value, testid) => h('div', { class: 'kv' }, h('dt', null, label), h('dd', { 'data-testid': testid }, value));
  return h('article', { class: 'agent-card', 'data-agent-id': a.id, 'data-testid': 'agent-card' },
    h('header', { class: 'agent-head' },
      h('h3', { class: 'agent-name' }, h('a', { href: `/agents/${seg(a.id)}`, 'data-testid': 'agent-link' }, a.name)),
      a.version ? h('span', { class: 'chip chip-version' }, `v${a.version}`) : null,
      a.status && a.status !== 'ready' ? statusBadge(a.status, 'agent-status') : null),
    h('p', { class: 'agent-owner muted small' }, a.owner_name ? `by ${a.owner_name}` : ''),
    h('p', { class: 'agent-desc', 'data-testid': 'agent-description' }, truncate(a.description || 'No description provided.', 180)),
    caps.length ? h('ul', { class: 'chips', 'aria-label': 'Capabilities' }, caps.map((c) => h('li', { class: 'chip' }, c))) : null,
    h('dl', { class: 'agent-stats' },
      stat('Price', fmtPrice(a.price), 'agent-price'),
      stat('Rating', f.rating, 'agent-rating'),
      stat('Runs', f.runs, 'agent-runs'),
      stat('Success', f.success, 'agent-success')));
}

export default {
  title: 'Agents',

  mount(root, { query, scope }) {
    const st = readState(query);
    let seq = 0;

    const search = h('input', { id: 'agent-search', type: 'search', autocomplete: 'off', placeholder: 'Name, description, capability or owner…', value: st.q, 'data-testid': 'agent-search' });
    const sort = h('select', { id: 'agent-sort', 'data-testid': 'agent-sort' }, SORTS.map(([v, l]) => h('option', { value: v }, l)));
    sort.value = st.sort;
    const minPrice = h('input', { id: 'f-min-price', type: 'number', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'min', value: st.min_price, 'data-testid': 'filter-min-price' });
    const maxPrice = h('input', { id: 'f-max-price', type: 'number', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'max', value: st.max_price, 'data-testid': 'filter-max-price' });
    const minRating = h('select', { id: 'f-min-rating', 'data-testid': 'filter-min-rating' },
      h('option', { value: '' }, 'Any'), [4, 3, 2, 1].map((r) => h('option', { value: String(r) }, `${r}★ and up`)));
    minRating.value = st.min_rating;
    const status = h('select', { id: 'f-status', 'data-testid': 'filter-status' },
      h('option', { value: '' }, 'Any'), ['ready', 'compiling', 'validating', 'rejected'].map((v) => h('option', { value: v }, v)));
    status.value = st.status;
    const facets = h('div', { class: 'facet-chips', role: 'group', 'aria-label': 'Capabilities', 'data-testid': 'facets' });
    const filterMsg = messageBox('filter-error');

    const count = h('p', { class: 'muted small', role: 'status', 'data-testid': 'agents-count' }, '');
    const list = h('div', { class: 'agent-grid', 'data-testid': 'agent-list' });
    const listMsg = messageBox('agents-error');
    const prev = h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': 'page-prev' }, '← Previous');
    const next = h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': 'page-next' }, 'Next →');
    const pageInfo = h('span', { class: 'muted small', 'data-testid': 'page-info' }, '');
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages', hidden: true }, prev, pageInfo, next);

    const upload = () => openUploadDialog({ onCreated: () => reloadSoon() });

    root.append(
      h('div', { class: 'page-head' },
        h('div', null,
          h('h1', { class: 'gradient-text' }, 'Agent marketplace'),
          h('p', { class: 'muted' }, 'Find an agent for the job, or publish your own.')),
        h('div', { class: 'page-actions' },
          h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'open-upload', onclick: upload }, 'Upload agent'))),
      h('div', { class: 'market' },
        h('aside', { class: 'card filters', 'aria-label': 'Filters' },
          h('form', { role: 'search', class: 'field', onsubmit: (e) => { e.preventDefault(); searchNow(); } },
            h('label', { for: 'agent-search' }, 'Search agents'), search),
          h('div', { class: 'field' }, h('label', { for: 'agent-sort' }, 'Sort by'), sort),
          h('fieldset', { class: 'field fieldset' },
            h('legend', null, 'Capabilities'), facets),
          h('fieldset', { class: 'field fieldset' },
            h('legend', null, 'Price per task'),
            h('div', { class: 'range-row' },
              h('label', { for: 'f-min-price', class: 'sr-only' }, 'Minimum price'), minPrice,
              h('span', { 'aria-hidden': 'true' }, '–'),
              h('label', { for: 'f-max-price', class: 'sr-only' }, 'Maximum price'), maxPrice)),
          h('div', { class: 'field-row' },
            h('div', { class: 'field' }, h('label', { for: 'f-min-rating' }, 'Rating'), minRating),
            h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'), status)),
          filterMsg,
          h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': 'filters-clear', onclick: clearFilters }, 'Clear filters')),
        h('section', { class: 'results', 'aria-label': 'Agents' }, count, listMsg, list, pager)),
    );

    function apply({ push = true } = {}) {
      router.setQuery(urlParams(st), { replace: !push });
      load();
    }

    const searchSoon = debounce(() => {
      st.q = search.value;
      st.page = 1;
      apply({ push: false });
    }, SEARCH_DEBOUNCE_MS);
    function searchNow() {
      searchSoon.cancel();
      st.q = search.value;
      st.page = 1;
      apply();
    }
    search.addEventListener('input', searchSoon);
    scope.add(() => searchSoon.cancel());

    const onFilter = () => {
      clearMessage(filterMsg);
      const lo = minPrice.value;
      const hi = maxPrice.value;
      if (lo !== '' && hi !== '' && Number(lo) > Number(hi)) {
        showMessage(filterMsg, 'The minimum price is above the maximum.');
        return;
      }
      Object.assign(st, { min_price: lo, max_price: hi, min_rating: minRating.value, status: status.value, sort: sort.value, page: 1 });
      apply();
    };
    const onPrice = debounce(onFilter, 400);
    scope.add(() => onPrice.cancel());
    for (const el of [minRating, status, sort]) el.addEventListener('change', onFilter);
    for (const el of [minPrice, maxPrice]) el.addEventListener('input', onPrice);

    function clearFilters() {
      Object.assign(st, { capability: [], min_price: '', max_price: '', min_rating: '', status: '', sort: '', page: 1 });
      minPrice.value = maxPrice.value = '';
      minRating.value = status.value = sort.value = '';
      apply();
    }

    prev.addEventListener('click', () => { st.page = Math.max(1, st.page - 1); apply(); });
    next.addEventListener('click', () => { st.page += 1; apply(); });

    function renderFacets(counts) {
      // The chips are rebuilt: keep keyboard focus on the chip that was just toggled.
      const focused = facets.contains(document.activeElement) ? document.activeElement.dataset.capability : null;
      const names = new Set([...Object.keys(counts || {}), ...st.capability]);
      const sorted = [...names].sort((a, b) => (counts?.[b] || 0) - (counts?.[a] || 0) || a.localeCompare(b));
      if (!sorted.length) {
        facets.replaceChildren(h('p', { class: 'muted small' }, 'No capabilities among these agents.'));
        return;
      }
      facets.replaceChildren(...sorted.map((c) => {
        const on = st.capability.includes(c);
        return h('button', {
          type: 'button', class: 'facet-chip', 'aria-pressed': String(on), 'data-capability': c, 'data-testid': 'facet-chip',
          onclick: () => {
            st.capability = on ? st.capability.filter((x) => x !== c) : [...st.capability, c];
            st.page = 1;
            apply();
          },
        }, c, h('span', { class: 'facet-count' }, fmtNumber(counts?.[c] ?? 0, 0)));
      }));
      if (focused !== null && focused !== undefined) {
        [...facets.querySelectorAll('[data-capability]')].find((b) => b.dataset.capability === focused)?.focus();
      }
    }

    async function load() {
      const mine = ++seq;
      list.setAttribute('aria-busy', 'true');
      try {
        const res = await api.listAgents({
          q: st.q.trim(), capability: st.capability.join(','), min_price: st.min_price, max_price: st.max_price,
          min_rating: st.min_rating, status: st.status, sort: st.sort,
          limit: PAGE_SIZE, offset: (st.page - 1) * PAGE_SIZE,
        });
        if (!scope.alive || mine !== seq) return;
        clearMessage(listMsg);
        const agents = res?.agents || [];
        const total = Number(res?.total ?? agents.length);
        const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
        if (st.page > pages && total > 0) {
          st.page = pages;
          apply({ push: false });
          return;
        }
        renderFacets(res?.facets?.capabilities);
        count.textContent = total === 1 ? '1 agent' : `${fmtNumber(total, 0)} agents${st.q.trim() ? ` matching “${st.q.trim()}”` : ''}`;
        if (!agents.length) {
          const filtered = st.q.trim() || st.capability.length || st.min_price || st.max_price || st.min_rating || st.status;
          list.replaceChildren(h('div', { class: 'empty', 'data-testid': 'agents-empty' },
            filtered ? 'No agents match. Try fewer words or clear the filters.' : 'No agents yet — upload the first one.',
            ' ',
            filtered
              ? h('button', { type: 'button', class: 'btn btn-ghost btn-small', onclick: clearFilters }, 'Clear filters')
              : h('button', { type: 'button', class: 'btn btn-primary btn-small', onclick: upload }, 'Upload agent')));
        } else {
          list.replaceChildren(...agents.map(agentCard));
        }
        watchCards(agents);
        pager.hidden = total <= PAGE_SIZE;
        pageInfo.textContent = `Page ${st.page} of ${pages}`;
        prev.disabled = st.page <= 1;
        next.disabled = st.page >= pages;
      } catch (err) {
        if (!scope.alive || mine !== seq || err.status === 401) return;
        showMessage(listMsg, loadError('Agents', err));
      } finally {
        if (mine === seq) list.removeAttribute('aria-busy');
      }
    }

    // Live figures for the cards on screen: one topic per card (a page holds at most
    // PAGE_SIZE, below the server's limit per connection). The previous page's topics are let
    // go first, so the two never add up.
    let cardTopics = [];
    const releaseCards = () => { for (const off of cardTopics.splice(0)) off(); };
    function watchCards(agents) {
      releaseCards();
      cardTopics = agents.filter((a) => a.id).map((a) => live.topic(`agent:${a.id}`));
    }
    scope.add(releaseCards);

    const reloadSoon = debounce(load, 300, { maxWait: 3000 });
    scope.add(() => reloadSoon.cancel());
    scope.on('agent_update', (d) => {
      if (d.action !== 'stats') {
        reloadSoon();
        return;
      }
      for (const card of list.querySelectorAll('[data-testid=agent-card]')) {
        if (card.dataset.agentId === d.agent_id) updateAgentCard(card, d.stats, d.rating);
      }
    });
    scope.on('reconnected', reloadSoon);

    load();
    if (query.get('upload') === '1') upload();
  },
};
