// What a careless UI gets wrong and a person only notices too late: markup in data that other
// people wrote (agent names, metadata links, task queries, review comments) stays text; a task
// result of several MB is cut on screen with Copy all / Download; the marketplace search
// ignores an answer that a newer search overtook; a page never draws into the page that
// replaced it; going back and forth leaves one socket and no topic behind; the dashboard's
// recent list and the marketplace cards follow live updates; and a socket the server closes
// with 1008 (password changed elsewhere) signs out at once, with a notice, without retrying.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  openPage, registerUser, uploadAgent, api, screenshot, sleep, AGENTS, startSuite, endSuite, freshSession,
} from './helpers.mjs';

const TEXT_STATS = path.join(AGENTS, 'text-stats/agent.wasm');

const HOSTILE_NAME = '<img src=x onerror="window.__xss=\'name\'">Stats';
const HOSTILE_DESC = '<script>window.__xss="desc"</script><b>bold?</b>';
const HOSTILE_QUERY = '<img src=x onerror="window.__xss=\'query\'"> count me';
const HOSTILE_COMMENT = '<a href="javascript:window.__xss=\'review\'">click</a>';

/** Keeps track of every WebSocket the page makes and what it sends (an init script). */
function trackSockets() {
  const Native = window.WebSocket;
  const made = [];
  window.__sockets = made;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.__sent = [];
      made.push(this);
    }

    send(data) {
      this.__sent.push(String(data));
      return super.send(data);
    }
  };
  // Every text the connection indicator shows, in order.
  window.__wsTexts = [];
  const watch = () => {
    const el = document.getElementById('ws-status-text');
    if (!el) return;
    new MutationObserver(() => window.__wsTexts.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch);
  else watch();
}

/** Open sockets, and per topic the net subscriptions sent on the open one. */
function socketState() {
  const live = window.__sockets.filter((s) => s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING);
  const net = {};
  for (const raw of live.at(-1)?.__sent || []) {
    const m = JSON.parse(raw);
    if (m.type === 'subscribe') net[m.topic] = (net[m.topic] || 0) + 1;
    if (m.type === 'unsubscribe') net[m.topic] = (net[m.topic] || 0) - 1;
  }
  for (const k of Object.keys(net)) if (net[k] === 0) delete net[k];
  return { open: live.length, made: window.__sockets.length, net };
}

async function waitConnected(page) {
  await page.waitForSelector('[data-testid=ws-status][data-state=connected]', { state: 'attached', timeout: 30_000 });
}

describe('robustness of the UI', { timeout: 15 * 60_000 }, () => {
  let server;
  let browser;
  let user;
  let agentId;
  let taskId;

  before(async () => {
    ({ server, browser, user } = await startSuite({ full_name: '<i>Mallory</i>' }));
    agentId = await uploadAgent(server, user.token, { wasm: TEXT_STATS, name: HOSTILE_NAME, description: HOSTILE_DESC, capabilities: 'text,nlp' });
    const patched = await api(server, 'PATCH', `/agents/${agentId}`, {
      token: user.token,
      json: { metadata: { homepage: 'javascript:window.__xss="meta"', docs: 'https://example.com/docs', '<b>key</b>': '<i>value</i>', nested: { a: [1, 2] } } },
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.data));
    const sub = await api(server, 'POST', '/tasks/submit', {
      token: user.token, json: { query: HOSTILE_QUERY, budget: 1, agent_id: agentId }, headers: { Prefer: 'wait=60' },
    });
    assert.equal(sub.data.status, 'completed', JSON.stringify(sub.data));
    taskId = sub.data.id || sub.data.task_id;
    // Owners may not review their own agents: another hostile user runs it, then reviews it.
    const reviewer = await registerUser(server, { full_name: '<i>Mallory</i>' });
    const ran = await api(server, 'POST', '/tasks/submit', {
      token: reviewer.token, json: { query: 'x', budget: 1, agent_id: agentId }, headers: { Prefer: 'wait=60' },
    });
    assert.equal(ran.data.status, 'completed', JSON.stringify(ran.data));
    const review = await api(server, 'POST', `/agents/${agentId}/reviews`, { token: reviewer.token, json: { rating: 4, comment: HOSTILE_COMMENT } });
    assert.ok([200, 201].includes(review.status), JSON.stringify(review.data));
  });

  after(() => endSuite({ server, browser }));

  test('markup and javascript: URLs in other people\'s data stay text on every page', { timeout: 3 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    const noScriptUrls = () => [...document.querySelectorAll('[href], [src], [action], [formaction]')]
      .map((e) => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action') || e.getAttribute('formaction'))
      .filter((u) => /^\s*(javascript|data|vbscript):/i.test(u));
    try {
      await page.goto(`/agents/${agentId}`);
      await page.getByTestId('run-form').waitFor();
      assert.equal(await page.getByTestId('agent-name').textContent(), HOSTILE_NAME);
      assert.equal(await page.getByTestId('agent-description').textContent(), HOSTILE_DESC);
      // Metadata: the https link is a link that opens elsewhere; the javascript: one is text.
      const links = page.getByTestId('agent-meta-link');
      assert.equal(await links.count(), 1);
      assert.equal(await links.getAttribute('href'), 'https://example.com/docs');
      assert.match(await links.getAttribute('rel'), /noopener/);
      assert.match(await page.getByTestId('agent-metadata').textContent(), /javascript:window\.__xss="meta"/);
      assert.match(await page.getByTestId('agent-metadata').textContent(), /<b>key<\/b>/);
      await page.getByTestId('review').first().waitFor();
      assert.match(await page.getByTestId('review-list').textContent(), /<a href="javascript:/);
      await page.locator('[data-testid=run-item]').first().waitFor();
      assert.deepEqual(await page.evaluate(noScriptUrls), []);
      await screenshot(page, '14-agent-hostile-data');

      for (const url of ['/agents', '/tasks', `/tasks/${taskId}`, '/', '/analytics']) {
        await page.goto(url);
        await page.waitForLoadState('networkidle');
        assert.deepEqual(await page.evaluate(noScriptUrls), [], url);
      }
      await page.goto(`/tasks/${taskId}`);
      await page.waitForSelector('[data-testid=task-status][data-status=completed]');
      assert.equal(await page.getByTestId('task-query').textContent(), HOSTILE_QUERY);
      assert.equal(await page.evaluate(() => document.querySelectorAll('img[src=x], script:not([type=module])').length), 0);
      assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected script ran');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('a task result of several MB is cut on screen, with Copy all and Download for the whole', { timeout: 3 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    const big = 'word '.repeat(1_100_000); // 5.5 MB of text
    try {
      await context.grantPermissions(['clipboard-read', 'clipboard-write']);
      // The real task, with a huge result in place of its own.
      await page.route(`**/api/v1/tasks/${taskId}`, async (route) => {
        const res = await route.fetch();
        const task = await res.json();
        await route.fulfill({ response: res, json: { ...task, result: big } });
      });
      await page.goto(`/tasks/${taskId}`);
      const result = page.locator('[data-testid=task-result][data-truncated=true]');
      await result.waitFor({ timeout: 60_000 });
      const shownChars = await result.evaluate((e) => e.textContent.length);
      assert.ok(shownChars < 30_000, `only the beginning is laid out (got ${shownChars} characters)`);
      assert.match(await page.getByTestId('task-result-truncated').textContent(), /5,500,000 characters/);
      // The page answers at once: no multi-second layout of megabytes of wrapped text.
      const t0 = Date.now();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
      assert.ok(Date.now() - t0 < 5000, 'a frame renders promptly');

      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByTestId('task-result-download').click(),
      ]);
      assert.match(download.suggestedFilename(), /result\.txt$/);
      const file = await download.path();
      const { statSync } = await import('node:fs');
      assert.equal(statSync(file).size, big.length, 'the download has the whole result');

      await page.getByTestId('task-result-copy').click();
      const status = page.getByTestId('task-result-copy-status');
      await page.waitForFunction(() => document.querySelector('[data-testid=task-result-copy-status]')?.textContent.length > 0);
      const said = await status.textContent();
      if (/Copied/.test(said)) {
        assert.equal(await page.evaluate(() => navigator.clipboard.readText().then((t) => t.length)), big.length);
      } else {
        assert.match(said, /Download/, 'without a clipboard it says what to do instead');
      }
      await page.evaluate(() => window.scrollTo(0, 0));
      await screenshot(page, '13-task-large-result');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('search waits for a pause in typing and ignores an answer a newer search overtook', { timeout: 2 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      const searches = [];
      let sawSearch;
      const searched = new Promise((r) => { sawSearch = r; });
      await page.route((url) => url.pathname === '/api/v1/agents', async (route) => {
        const q = new URL(route.request().url()).searchParams.get('q');
        if (q) {
          searches.push(q);
          sawSearch();
        }
        // The first search answers late, after the second one.
        if (q === 'zzznothing') await sleep(2000);
        await route.continue();
      });
      await page.goto('/agents');
      await page.getByTestId('agent-card').first().waitFor();

      // Typing letter by letter (one input event per letter, at once, so a loaded machine
      // cannot stretch the gaps past the debounce) sends one search, for the whole word.
      const staleAnswer = page.waitForResponse((r) => new URL(r.url()).searchParams.get('q') === 'zzznothing');
      await page.getByTestId('agent-search').evaluate((el) => {
        for (const ch of 'zzznothing') {
          el.value += ch;
          el.dispatchEvent(new Event('input', { bubbles: true }));
        }
      });
      await page.waitForURL(/q=zzznothing/);
      await searched;
      await sleep(400); // time for any extra search to show up
      assert.deepEqual(searches, ['zzznothing']);

      const textAnswer = page.waitForResponse((r) => new URL(r.url()).searchParams.get('q') === 'text');
      await page.getByTestId('agent-search').fill('text');
      await page.waitForURL(/q=text/);
      // Both answers are in, the slow one for "zzznothing" last; then one more task turn.
      await (await textAnswer).finished();
      await (await staleAnswer).finished();
      await page.evaluate(() => new Promise((r) => setTimeout(r, 100)));
      assert.equal(await page.getByTestId('agents-empty').count(), 0, 'the stale empty answer was not drawn');
      assert.equal(await page.getByTestId('agent-card').count(), 1);
      assert.match(await page.getByTestId('agents-count').textContent(), /^1 agent/);
      assert.equal(await page.getByTestId('agent-search').inputValue(), 'text');

      // A facet chip toggled from the keyboard keeps the focus, though the chips are redrawn.
      const chip = page.locator('[data-testid=facet-chip][data-capability=nlp]');
      await chip.focus();
      await page.keyboard.press('Space');
      await page.waitForURL(/capability=nlp/);
      await page.waitForSelector('[data-testid=facet-chip][data-capability=nlp][aria-pressed=true]');
      assert.equal(await page.evaluate(() => document.activeElement?.dataset.capability), 'nlp');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('a slow answer for a page already left never draws into the next page', { timeout: 2 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      await page.goto('/agents');
      await page.getByTestId('agent-card').first().waitFor();
      await page.route(`**/api/v1/tasks/${taskId}`, async (route) => {
        await sleep(1500);
        await route.continue();
      });
      const slow = page.waitForResponse((r) => r.url().endsWith(`/api/v1/tasks/${taskId}`));
      await page.evaluate((id) => {
        const a = document.createElement('a');
        a.href = `/tasks/${id}`;
        a.id = 'go-task';
        a.textContent = 'task';
        document.body.append(a);
      }, taskId);
      await page.click('#go-task');
      await page.getByTestId('task-loading').waitFor();
      await page.getByTestId('nav-tasks').click();
      await page.getByTestId('tasks-count').waitFor();
      await (await slow).finished();
      await page.evaluate(() => new Promise((r) => setTimeout(r, 100)));
      assert.equal(await page.getByTestId('task-title').count(), 0);
      assert.equal(await page.getByTestId('task-result').count(), 0);
      assert.equal(await page.title(), 'Tasks · ZeroState');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('moving between pages many times leaves one socket and only the topics of the page shown', { timeout: 4 * 60_000 }, async () => {
    // Signs out midway: a session of its own, not the suite's.
    const { context, page } = await openPage(browser, server, { token: await freshSession(server, user) });
    await context.addInitScript(trackSockets);
    try {
      await page.goto('/');
      await page.getByTestId('stats-bar').waitFor();
      await waitConnected(page);
      for (let round = 0; round < 6; round += 1) {
        await page.getByTestId('nav-agents').click();
        await page.getByTestId('agent-card').first().waitFor();
        await page.getByTestId('agent-link').first().click();
        await page.getByTestId('run-form').waitFor();
        await page.getByTestId('nav-tasks').click();
        await page.getByTestId('tasks-count').waitFor();
        await page.goBack();
        await page.getByTestId('run-form').waitFor();
        await page.getByTestId('nav-dashboard').click();
        await page.getByTestId('stats-bar').waitFor();
      }
      // Focus moved to the new page and its name was announced.
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');
      await page.waitForFunction(() => document.getElementById('route-announcer')?.textContent === 'Dashboard');

      await page.waitForTimeout(300);
      let st = await page.evaluate(socketState);
      assert.equal(st.open, 1, JSON.stringify(st));
      assert.equal(st.made, 1, 'no reconnects while moving around');
      assert.deepEqual(st.net, { queue: 1 }, 'only the dashboard\'s topic is left');

      // Sign out and in again: still one socket, the old one closed.
      await page.getByTestId('logout').click();
      await page.getByTestId('login-form').waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'login-email', 'the sign-in page keeps focus on its first field');
      st = await page.evaluate(socketState);
      assert.equal(st.open, 0, 'signed out: no socket');
      await page.getByTestId('login-email').fill(user.email);
      await page.getByTestId('login-password').fill(user.password);
      await page.getByTestId('login-submit').click();
      await page.getByTestId('stats-bar').waitFor();
      await waitConnected(page);
      await page.getByTestId('nav-agents').click();
      await page.getByTestId('agent-card').first().waitFor();
      await page.waitForTimeout(300);
      st = await page.evaluate(socketState);
      assert.equal(st.open, 1, JSON.stringify(st));
      assert.deepEqual(Object.keys(st.net), [`agent:${agentId}`], 'the marketplace watches its one card');

      // A dialog open when the person goes back does not stay over the next page.
      await page.getByTestId('open-upload').click();
      await page.getByTestId('upload-dialog').waitFor();
      await page.goBack();
      await page.getByTestId('stats-bar').waitFor();
      await page.getByTestId('upload-dialog').waitFor({ state: 'detached' });

      // The server agrees: one connection.
      let stats;
      const end = Date.now() + 30_000;
      while (Date.now() < end) {
        stats = (await api(server, 'GET', '/ws/stats', { token: user.token })).data;
        if (stats.current_connections === 1) break;
        await sleep(250);
      }
      assert.equal(stats.current_connections, 1, JSON.stringify(stats));
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('live: a new task tops the full recent list, and marketplace cards count runs without a reload', { timeout: 4 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      const submit = (query) => api(server, 'POST', '/tasks/submit', {
        token: user.token, json: { query, budget: 1, agent_id: agentId }, headers: { Prefer: 'wait=60' },
      });
      for (let i = 0; i < 8; i += 1) assert.equal((await submit(`Filler ${i}.`)).data.status, 'completed');

      await page.goto('/');
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=recent-tasks] [data-testid=task-row]').length === 8);
      await waitConnected(page);
      await page.evaluate(() => { window.__marker = 'dashboard'; });
      const fresh = await submit('The newest one.');
      const id = fresh.data.id || fresh.data.task_id;
      await page.waitForFunction((tid) => document.querySelector('[data-testid=recent-tasks] [data-testid=task-row]')?.dataset.taskId === tid, id, { timeout: 30_000 });
      await page.waitForSelector(`[data-testid=recent-tasks] [data-task-id="${id}"][data-status=completed]`);
      assert.equal(await page.locator('[data-testid=recent-tasks] [data-testid=task-row]').count(), 8, 'the oldest row made room');
      assert.equal(await page.evaluate(() => window.__marker), 'dashboard');

      await page.getByTestId('nav-agents').click();
      const runs = page.locator(`[data-testid=agent-card][data-agent-id="${agentId}"] [data-testid=agent-runs]`);
      await runs.waitFor();
      const before = Number(await runs.textContent());
      await waitConnected(page);
      await page.evaluate(() => { window.__marker = 'agents'; });
      assert.equal((await submit('One more run.')).data.status, 'completed');
      await page.waitForFunction(({ sel, n }) => Number(document.querySelector(sel)?.textContent) === n,
        { sel: `[data-testid=agent-card][data-agent-id="${agentId}"] [data-testid=agent-runs]`, n: before + 1 }, { timeout: 30_000 });
      assert.equal(await page.evaluate(() => window.__marker), 'agents', 'live, without a reload');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('a socket closed with 1008 by a password change elsewhere signs out with a notice, without retrying', { timeout: 3 * 60_000 }, async () => {
    const other = await registerUser(server, { full_name: 'Eve' });
    const { context, page } = await openPage(browser, server, { token: other.token });
    await context.addInitScript(trackSockets);
    try {
      await page.goto('/tasks');
      await page.getByTestId('tasks-count').waitFor();
      await waitConnected(page);
      const made = (await page.evaluate(socketState)).made;

      // Elsewhere (another device), the password changes: every older session ends, and
      // the server closes their sockets with 1008.
      const changed = await api(server, 'POST', '/users/me/password', {
        token: other.token, json: { current_password: other.password, new_password: 'a brand new password' },
      });
      assert.equal(changed.status, 200, JSON.stringify(changed.data));

      await page.waitForURL(/\/login\?next=%2Ftasks$/, { timeout: 30_000 });
      const notice = page.getByTestId('auth-notice');
      await notice.waitFor();
      assert.match(await notice.textContent(), /ended elsewhere|expired/);
      const texts = await page.evaluate(() => window.__wsTexts);
      assert.ok(!texts.some((t) => /retrying/.test(t)), `no retry was scheduled; saw: ${texts.join(' | ')}`);
      const st = await page.evaluate(socketState);
      assert.equal(st.made, made, 'no new socket was tried with the dead session');
      assert.equal(st.open, 0);
      assert.equal(await page.getByTestId('ws-status').isHidden(), true);
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });
});
