// ZeroState web UI — entry point and app shell.
//
// Owns the route table, the sign-in gate (pages other than /login and /signup need a session;
// ?next= brings the person back afterwards), mounting one page at a time into <main>, the
// header (nav, user box, menu toggle on narrow screens) and the app-wide live reactions
// (toasts when a task of mine finishes). Each page gets a PageScope whose listeners, topics and
// timers are undone when the person leaves the page, so a page never updates after it is gone.

import * as api from './api.js';
import * as live from './live.js';
import * as router from './router.js';
import * as session from './session.js';
import { $, h, toast, truncate, shortId, errorText } from './ui.js';
import { isMine } from './task-list.js';

import loginPage from './pages/login.js';
import dashboardPage from './pages/dashboard.js';
import agentsPage from './pages/agents.js';
import agentPage from './pages/agent.js';
import tasksPage from './pages/tasks.js';
import taskPage from './pages/task.js';
import analyticsPage from './pages/analytics.js';
import settingsPage from './pages/settings.js';
import apiKeysPage from './pages/api-keys.js';
import notFoundPage from './pages/not-found.js';

const ROUTES = [
  { path: '/login', page: loginPage },
  { path: '/signup', page: loginPage },
  { path: '/', page: dashboardPage },
  { path: '/dashboard', page: dashboardPage },
  { path: '/agents', page: agentsPage },
  { path: '/agents/:id', page: agentPage },
  { path: '/tasks', page: tasksPage },
  { path: '/tasks/:id', page: taskPage },
  { path: '/analytics', page: analyticsPage },
  { path: '/settings', page: settingsPage },
  { path: '/api-keys', page: apiKeysPage },
];

/** What a page registers while it is shown; dispose() undoes all of it. */
class PageScope {
  #disposers = [];
  #disposed = false;

  get alive() {
    return !this.#disposed;
  }

  add(fn) {
    if (this.#disposed) fn();
    else this.#disposers.push(fn);
  }

  on(type, fn) {
    this.add(live.on(type, (...args) => { if (!this.#disposed) fn(...args); }));
  }

  topic(name) {
    this.add(live.topic(name));
  }

  timeout(fn, ms) {
    const t = setTimeout(() => { if (!this.#disposed) fn(); }, ms);
    this.add(() => clearTimeout(t));
  }

  dispose() {
    this.#disposed = true;
    for (const fn of this.#disposers.splice(0).reverse()) {
      try {
        fn();
      } catch (err) {
        console.error('page cleanup failed', err);
      }
    }
  }
}

let scope = null;
let pendingNotice = '';

function render({ page, params, path, query }) {
  const publicPage = page === loginPage;
  if (!session.signedIn() && !publicPage) {
    const next = path + location.search;
    const url = next && next !== '/' ? `/login?next=${encodeURIComponent(next)}` : '/login';
    router.navigate(url, { replace: true });
    return;
  }
  if (session.signedIn() && publicPage) {
    router.navigate(safeNext(query.get('next')), { replace: true });
    return;
  }

  scope?.dispose();
  scope = new PageScope();
  // A dialog of the page being left (upload, confirm) must not act on the next one.
  for (const dlg of document.querySelectorAll('dialog[open]')) dlg.close();
  closeNav();
  setShell(!publicPage);
  markNav(path);

  const main = $('main');
  main.replaceChildren();
  main.removeAttribute('aria-busy');
  const shown = page || notFoundPage;
  const ctx = { params, query, path, scope, notice: takeNotice(), signIn: signedIn };
  try {
    shown.mount(main, ctx);
  } catch (err) {
    console.error(err);
    main.replaceChildren(h('section', { class: 'card' },
      h('h1', null, 'This page failed to load'),
      h('p', { class: 'form-msg', role: 'alert' }, errorText(err))));
  }
  const title = typeof shown.title === 'function' ? shown.title(ctx) : shown.title;
  document.title = `${title} · ZeroState`;
  // Move focus to the new page for keyboard and screen-reader users (not on first load, and
  // not away from a field the page focused itself), and say which page this is.
  if (rendered) {
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
    announce(title);
  }
  rendered = true;
  window.scrollTo(0, 0);
}
let rendered = false;

/** Read the new page's name out in the polite live region (#route-announcer). */
function announce(text) {
  const el = document.getElementById('route-announcer');
  if (!el) return;
  el.textContent = '';
  // A separate task, so the same text twice is still announced.
  setTimeout(() => { el.textContent = text; }, 50);
}

/** Only app paths may be a post-sign-in target (no open redirect to another origin). */
function safeNext(next) {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.includes('\\')
    || next.startsWith('/login') || next.startsWith('/signup')) return '/';
  return next;
}

function takeNotice() {
  const n = pendingNotice;
  pendingNotice = '';
  return n;
}

// ------------------------------------------------------------------ shell --

function setShell(inApp) {
  $('site-nav').hidden = !inApp;
  $('nav-toggle').hidden = !inApp;
  $('user-box').hidden = !inApp;
  const u = session.currentUser();
  $('user-email').textContent = u?.email || '';
  $('user-email').title = u?.full_name ? `${u.full_name} <${u.email}>` : u?.email || '';
  document.body.dataset.shell = inApp ? 'app' : 'auth';
}

function markNav(path) {
  const section = path === '/dashboard' ? '/' : `/${path.split('/')[1] || ''}`;
  for (const a of document.querySelectorAll('#site-nav a[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function closeNav() {
  $('nav-toggle').setAttribute('aria-expanded', 'false');
  $('site-nav').classList.remove('open');
}

function wireShell() {
  $('nav-toggle').addEventListener('click', () => {
    const open = $('nav-toggle').getAttribute('aria-expanded') !== 'true';
    $('nav-toggle').setAttribute('aria-expanded', String(open));
    $('site-nav').classList.toggle('open', open);
    if (open) $('site-nav').querySelector('a')?.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && $('site-nav').classList.contains('open')) {
      closeNav();
      $('nav-toggle').focus();
    }
  });
  $('logout-btn').addEventListener('click', () => session.endSession('You are signed out.'));
  session.onUserChange((u) => {
    $('user-email').textContent = u?.email || '';
  });
  live.wireControls();
}

// ------------------------------------------------------------- session --

function enterSession() {
  live.start();
  const token = api.getToken();
  // The answer belongs to this session only: a sign-out (and maybe another sign-in) while it
  // was on its way must not bring the previous user back into the header.
  api.me().then((u) => {
    if (api.getToken() === token) session.setUser(u);
  }).catch((err) => {
    if (api.getToken() === token && err.status !== 401) toast(`Could not load your profile: ${errorText(err)}`, 'error');
  });
}

session.onSignOut((notice) => {
  live.stop();
  notified.clear();
  pendingNotice = notice || '';
  const here = location.pathname + location.search;
  const publicHere = here.startsWith('/login') || here.startsWith('/signup');
  const url = !publicHere && here !== '/' && notice && notice.includes('expired')
    ? `/login?next=${encodeURIComponent(here)}`
    : '/login';
  router.navigate(url, { replace: true });
});

/** The login page's ctx.signIn: after a successful sign-in or sign-up. */
function signedIn(res, next) {
  session.acceptSession(res);
  enterSession();
  router.navigate(safeNext(next), { replace: true });
}

// Any authenticated call answering 401 ends the session.
api.onUnauthorized(() => {
  if (!session.signedIn()) return;
  session.signOut('Your session has expired or was ended elsewhere. Please sign in again.');
});

// ------------------------------------------------ app-wide live reactions --

const notified = new Set();

live.on('task_update', (d) => {
  if (!d.task_id || notified.has(d.task_id) || !isMine(d)) return;
  const q = `“${truncate(d.query || shortId(d.task_id), 60)}”`;
  if (d.status === 'completed') {
    notified.add(d.task_id);
    toast(`Task completed: ${q}${d.agent_name ? ` by ${d.agent_name}` : ''}`, 'success');
  } else if (d.status === 'failed' || d.status === 'timed_out') {
    notified.add(d.task_id);
    const why = d.error ? ` — ${truncate(d.error, 120)}` : '';
    toast(`Task ${d.status.replace('_', ' ')}: ${q}${why}`, 'error');
  }
});

live.on('system', (d) => {
  // The greeting on every connect is already shown by the indicator.
  if (d.message === 'connected' && (d.level || 'info') === 'info') return;
  if (d.message) toast(String(d.message), d.level || 'info');
});

live.on('error', (d) => {
  if (d.message) toast(`Live updates: ${d.message}`, 'warning');
});

// ------------------------------------------------------------ safety net --
// Every failure is handled where it happens; anything that still slips through (a bug, data no
// page expected) is said in words too, not only in the console. At most one toast per message
// every few seconds, so a failing loop cannot bury the page.

const lastSaid = new Map();
function sayUnexpected(err) {
  if (!err || err.status === 401) return; // the 401 handler has already signed out
  const text = err.name === 'ApiError' ? errorText(err) : `Something went wrong on this page: ${errorText(err)}`;
  const now = Date.now();
  if (now - (lastSaid.get(text) || 0) < 5000) return;
  lastSaid.set(text, now);
  toast(text, 'error');
}
window.addEventListener('unhandledrejection', (e) => sayUnexpected(e.reason));
window.addEventListener('error', (e) => {
  if (e.error) sayUnexpected(e.error); // not resource load errors
});

// ------------------------------------------------------------------- boot --

wireShell();
if (session.signedIn()) enterSession();
router.start(ROUTES, render);
