// The main path through the product in a real browser: sign up, upload an agent through the
// dialog, watch its build, run a task from its page and see the result arrive live; typo
// tolerant search; the server's words for a broken upload; task detail with bids and attempts;
// and a full-page screenshot of every page along the way.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  openPage, screenshot, uploadAgent, api, uniqueEmail, trapWasm, spinWasm, AGENTS, SLOW, startSuite, endSuite,
} from './helpers.mjs';

const TEXT_STATS = path.join(AGENTS, 'text-stats/agent.wasm');
const SENTIMENT = path.join(AGENTS, 'sentiment/agent.wasm');

describe('marketplace and tasks in the browser', { timeout: 15 * 60_000 }, () => {
  let server;
  let browser;
  let page;
  let context;
  let agentId;
  let taskId;
  let trapId;

  before(async () => {
    ({ server, browser } = await startSuite());
    ({ context, page } = await openPage(browser, server));
  });

  after(() => endSuite({ server, browser }));

  test('sign up, upload through the dialog, run a task and see it complete without a reload', { timeout: 6 * 60_000 }, async () => {
    await page.goto('/');
    await page.waitForURL(/\/login$/);
    await page.getByTestId('login-form').waitFor();
    await screenshot(page, '01-login');

    await page.getByTestId('tab-signup').click();
    await page.waitForURL(/\/signup$/);
    await page.getByTestId('signup-email').fill(uniqueEmail('ada'));
    await page.getByTestId('signup-name').fill('Ada Lovelace');
    await page.getByTestId('signup-password').fill('analytical engine');
    await screenshot(page, '02-signup');
    await page.getByTestId('signup-submit').click();
    await page.getByTestId('stats-bar').waitFor();
    assert.equal(new URL(page.url()).pathname, '/');
    await page.waitForSelector('[data-testid=ws-status][data-state=connected]', { state: 'attached' });

    await page.getByTestId('nav-agents').click();
    await page.waitForURL(/\/agents$/);
    await page.getByTestId('open-upload').click();
    const dialog = page.getByTestId('upload-dialog');
    await dialog.waitFor();
    await page.getByTestId('upload-file').setInputFiles(TEXT_STATS);
    await page.getByTestId('upload-name').fill('Text-Stats-UI');
    await page.getByTestId('upload-description').fill('Counts words, sentences and paragraphs.');
    await page.getByTestId('upload-capabilities').fill('text,nlp');
    await page.getByTestId('upload-price').fill('0.01');
    await screenshot(page, '05-upload-dialog');
    await page.getByTestId('upload-submit').click();

    await page.waitForSelector('[data-testid=upload-status][data-status=ready]', { timeout: SLOW });
    const href = await page.getByTestId('upload-agent-link').getAttribute('href');
    agentId = href.split('/').pop();
    await page.getByTestId('upload-agent-link').click();
    await page.waitForURL(`**/agents/${agentId}`);
    assert.equal(await page.locator('dialog[open]').count(), 0, 'the dialog closes when its link is followed');
    await page.getByTestId('run-form').waitFor();
    assert.equal(await page.getByTestId('agent-name').textContent(), 'Text-Stats-UI');
    await page.waitForSelector('[data-testid=agent-status][data-status=ready]');

    await page.evaluate(() => { window.__marker = 'no-reload'; });
    await page.getByTestId('run-query').fill('Good day.\n\nBad night!');
    await page.getByTestId('run-submit').click();
    const run = page.getByTestId('run-item').first();
    await run.waitFor();
    taskId = await run.getAttribute('data-task-id');
    await page.waitForSelector(`[data-testid=run-item][data-task-id="${taskId}"] [data-testid=run-status][data-status=completed]`, { timeout: SLOW });
    assert.equal(await page.evaluate(() => window.__marker), 'no-reload', 'the page was not reloaded');
    const result = page.locator(`[data-testid=run-item][data-task-id="${taskId}"] [data-testid=run-result]`);
    await result.waitFor();
    const shown = JSON.parse(await result.textContent());
    assert.equal(shown.words, 4);
    assert.equal(shown.sentences, 2);
    assert.equal(shown.paragraphs, 2);
    // `critical` is for admins: the form shows the server's refusal and nothing is queued.
    const before = await page.getByTestId('run-item').count();
    await page.getByTestId('run-priority').selectOption('critical');
    const refusedCritical = page.waitForResponse((r) => r.url().endsWith('/tasks/submit'));
    await page.getByTestId('run-submit').click();
    assert.equal((await refusedCritical).status(), 403);
    await page.waitForFunction(() => /admins/.test(document.querySelector('[data-testid=run-error]')?.textContent || ''));
    assert.equal(await page.getByTestId('run-item').count(), before);
    await page.getByTestId('run-priority').selectOption('normal');
    // The live statistics follow (the agent:<id> topic, or the reload after the run).
    await page.waitForFunction(() => document.querySelector('[data-testid=stat-runs]')?.textContent === '1', null, { timeout: 30_000 }).catch(() => {});
    await screenshot(page, '06-agent-detail');
    assert.deepEqual(page.errors.map(String), []);
  });

  test('the task page shows the auction bids and the attempt', { timeout: 3 * 60_000 }, async () => {
    assert.ok(taskId, 'needs the task of the first test');
    await page.locator(`[data-testid=run-item][data-task-id="${taskId}"] [data-testid=run-link]`).click();
    await page.waitForURL(`**/tasks/${taskId}`);
    await page.waitForSelector('[data-testid=task-status][data-status=completed]');
    assert.equal(await page.getByTestId('bid-row').count(), 1);
    assert.equal(await page.locator('[data-testid=bid-row][data-winner=true]').count(), 1);
    assert.match(await page.getByTestId('bids-table').textContent(), /Text-Stats-UI/);
    assert.equal(await page.getByTestId('attempt-row').count(), 1);
    assert.equal(await page.locator('[data-testid=attempt-row] [data-testid=attempt-outcome]').getAttribute('data-status'), 'completed');
    assert.equal(JSON.parse(await page.getByTestId('task-result').textContent()).words, 4);
    assert.equal(await page.getByTestId('task-cancel').isHidden(), true, 'no cancel for a finished task');
  });

  test('a failed attempt is re-auctioned and both attempts are listed', { timeout: 4 * 60_000 }, async () => {
    const token = await page.evaluate(() => localStorage.getItem('zs_token'));
    // Cheapest, so it wins the first auction; it traps, and the text agent takes over.
    trapId = await uploadAgent(server, token, { wasm: trapWasm(), name: 'Flaky-Trap', capabilities: 'text,nlp', price: 0.001 });
    const sub = await api(server, 'POST', '/tasks/submit', {
      token, json: { query: 'Count these words please.', capabilities: ['nlp'], budget: 1 }, headers: { Prefer: 'wait=60' },
    });
    assert.ok([200, 202].includes(sub.status), JSON.stringify(sub.data));
    const id = sub.data.id || sub.data.task_id;
    await page.goto(`/tasks/${id}`);
    await page.waitForSelector('[data-testid=task-status][data-status=completed]', { timeout: SLOW });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=attempt-row]').length === 2, null, { timeout: SLOW });
    const outcomes = await page.locator('[data-testid=attempt-outcome]').evaluateAll((els) => els.map((e) => e.dataset.status));
    assert.deepEqual(outcomes, ['failed', 'completed']);
    assert.match(await page.getByTestId('attempts-table').textContent(), /trap/);
    assert.equal(await page.getByTestId('failover-auction').count(), 1);
    assert.match(await page.locator('[data-testid=bid-row][data-winner=true]').first().textContent(), /Flaky-Trap/);
    await screenshot(page, '08-task-detail');
  });

  test('search with a typo finds the agent', { timeout: 4 * 60_000 }, async () => {
    const token = await page.evaluate(() => localStorage.getItem('zs_token'));
    await uploadAgent(server, token, { wasm: SENTIMENT, name: 'Sentiment-Analyzer', capabilities: 'text,sentiment-analysis,nlp', price: 0.02, description: 'Lexicon-based sentiment analysis.' });
    await page.getByTestId('nav-agents').click();
    await page.waitForURL(/\/agents$/);
    await page.getByTestId('agent-card').first().waitFor();
    await page.getByTestId('agent-search').fill('sentimnt');
    await page.waitForURL(/q=sentimnt/);
    // The unfiltered list shows the agent too: wait for the search's own answer, one card.
    await page.waitForFunction(() => {
      const cards = [...document.querySelectorAll('[data-testid=agent-card]')];
      return cards.length === 1 && cards[0].textContent.includes('Sentiment-Analyzer');
    });
    assert.match(await page.getByTestId('agents-count').textContent(), /1 agent/);

    // Facet chips filter, and the back button restores the previous state.
    await page.getByTestId('agent-search').fill('');
    await page.waitForFunction(() => !location.search.includes('q='));
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=agent-card]').length === 3);
    await page.locator('[data-testid=facet-chip][data-capability="sentiment-analysis"]').click();
    await page.waitForURL(/capability=sentiment-analysis/);
    await page.waitForSelector('[data-testid=facet-chip][data-capability="sentiment-analysis"][aria-pressed=true]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=agent-card]').length === 1);
    await page.goBack();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=agent-card]').length === 3);
    await screenshot(page, '04-marketplace');
    assert.deepEqual(page.errors.map(String), []);
  });

  test('an invalid module shows the server\'s own message in the dialog', { timeout: 3 * 60_000 }, async () => {
    await page.goto('/agents');
    await page.getByTestId('open-upload').click();
    await page.getByTestId('upload-dialog').waitFor();
    await page.getByTestId('upload-file').setInputFiles({ name: 'garbage.wasm', mimeType: 'application/wasm', buffer: randomBytes(2048) });
    await page.getByTestId('upload-name').fill('Broken-Module');
    await page.getByTestId('upload-capabilities').fill('text');
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/v1/agents/upload'));
    await page.getByTestId('upload-submit').click();
    const res = await answered;
    assert.equal(res.status(), 422);
    const body = await res.json();
    assert.equal(body.error.code, 'invalid_wasm_module');
    assert.ok(body.error.message.length > 0);
    const shown = page.getByTestId('upload-error');
    await shown.waitFor();
    assert.equal((await shown.textContent()).trim(), body.error.message);
    assert.equal(await page.getByTestId('upload-form').isVisible(), true, 'the form stays open to fix the file');
    await page.keyboard.press('Escape');
    await page.getByTestId('upload-dialog').waitFor({ state: 'detached' });
  });

  test('an input schema from the advanced upload fields becomes the run form', { timeout: 4 * 60_000 }, async () => {
    const schema = {
      type: 'object',
      properties: {
        text: { type: 'string', description: 'The text to count.' },
        mode: { enum: ['fast', 'full'] },
        limit: { type: 'integer', minimum: 1, maximum: 10 },
        verbose: { type: 'boolean' },
        tags: { type: 'array', items: { type: 'string' } },
      },
      required: ['text'],
    };
    await page.goto('/agents');
    await page.getByTestId('open-upload').click();
    await page.getByTestId('upload-file').setInputFiles(TEXT_STATS);
    await page.getByTestId('upload-name').fill('Schema-Stats');
    await page.getByTestId('upload-capabilities').fill('text');
    await page.getByTestId('upload-advanced').locator('summary').click();
    await page.getByTestId('upload-schema').fill(JSON.stringify(schema));
    await page.getByTestId('upload-memory').fill('64');
    await page.getByTestId('upload-timeout').fill('10');
    await page.getByTestId('upload-submit').click();
    await page.waitForSelector('[data-testid=upload-status][data-status=ready]', { timeout: SLOW });
    await page.getByTestId('upload-agent-link').click();
    await page.getByTestId('schema-form').waitFor();
    assert.equal(await page.getByTestId('agent-memory').textContent(), '64.00 MiB');
    assert.equal(await page.getByTestId('run-timeout').inputValue(), '10');
    assert.equal(await page.getByTestId('input-text').evaluate((e) => e.tagName), 'TEXTAREA');
    assert.equal(await page.getByTestId('input-mode').evaluate((e) => e.tagName), 'SELECT');
    assert.equal(await page.getByTestId('input-limit').getAttribute('max'), '10');
    assert.equal(await page.getByTestId('input-verbose').getAttribute('type'), 'checkbox');

    // Required field left empty: said next to it, nothing sent.
    await page.getByTestId('run-submit').click();
    await page.waitForSelector('[data-testid=input-text][aria-invalid=true]');
    assert.equal(await page.getByTestId('run-item').count(), 0);

    // Out of range: the server's invalid_input message lands next to the field it names.
    await page.getByTestId('input-text').fill('One two three. Four five!');
    await page.getByTestId('input-limit').fill('20');
    const refused = page.waitForResponse((r) => r.url().endsWith('/tasks/submit'));
    await page.getByTestId('run-submit').click();
    const body = await (await refused).json();
    assert.equal(body.error.code, 'invalid_input');
    assert.equal(body.error.path, '/limit');
    await page.waitForSelector('[data-testid=input-limit][aria-invalid=true]');
    assert.match(await page.getByTestId('run-error').textContent(), /\/limit/);

    await page.getByTestId('input-limit').fill('3');
    await page.getByTestId('input-tags').fill('a, b');
    await page.getByTestId('run-submit').click();
    await page.waitForSelector('[data-testid=run-status][data-status=completed]', { timeout: SLOW });
    const result = JSON.parse(await page.getByTestId('run-result').textContent());
    assert.equal(result.words, 5, 'the agent read the "text" member');
    assert.equal(result.sentences, 2);
  });

  test('the queue fills live on the dashboard and a queued task can be canceled', { timeout: 4 * 60_000 }, async () => {
    const token = await page.evaluate(() => localStorage.getItem('zs_token'));
    const spinId = await uploadAgent(server, token, { wasm: spinWasm(), name: 'Busy-Spinner', capabilities: 'spin', price: 0.001 });
    await page.goto('/');
    await page.getByTestId('stats-bar').waitFor();
    await page.waitForSelector('[data-testid=ws-status][data-state=connected]', { state: 'attached' });
    await page.evaluate(() => { window.__marker = 'dashboard'; });
    const submit = (priority) => api(server, 'POST', '/tasks/submit', {
      token, json: { query: `Spin (${priority})`, budget: 1, agent_id: spinId, timeout: 29, priority },
    });
    // Two spinners fill both workers; the third waits in the queue. 29 s: long enough for the
    // steps below on a loaded machine, under the server's 30 s cap on a run.
    for (const p of ['normal', 'normal']) assert.equal((await submit(p)).status, 202);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=stat-running]')?.textContent) === 2, null, { timeout: 60_000 });
    const queued = await submit('high');
    assert.equal(queued.status, 202);
    await page.waitForFunction(() => document.querySelector('[data-testid=queue-high]')?.textContent === '1', null, { timeout: 30_000 });
    assert.equal(await page.evaluate(() => window.__marker), 'dashboard', 'live, without a reload');

    await page.locator(`[data-testid=task-row][data-task-id="${queued.data.task_id}"] [data-testid=task-link]`).click();
    await page.waitForURL(`**/tasks/${queued.data.task_id}`);
    // The badge shows `queued` before the task is fetched: wait for the task itself.
    await page.waitForFunction(() => document.querySelector('[data-testid=task-title]')?.textContent === 'Spin (high)'
      && document.querySelector('[data-testid=task-status]')?.dataset.status === 'queued');
    await page.getByTestId('task-cancel').click();
    await page.getByTestId('confirm-dialog').waitFor();
    await page.getByTestId('confirm-ok').click();
    await page.waitForSelector('[data-testid=task-status][data-status=canceled]');
    assert.equal(await page.getByTestId('task-cancel').isHidden(), true);
    assert.equal(await page.getByTestId('task-error-code').textContent(), 'canceled');

    // A pinned task on the trapping agent fails for good: data for the pages below.
    const failed = await api(server, 'POST', '/tasks/submit', {
      token, json: { query: 'This one traps.', budget: 1, agent_id: trapId }, headers: { Prefer: 'wait=60' },
    });
    assert.equal(failed.data.status, 'failed', JSON.stringify(failed.data));
    // The spinners end as timed out.
    await page.goto('/tasks?status=timed_out');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=task-row]').length === 2, null, { timeout: SLOW });
  });

  test('tasks list, dashboard and analytics show the data', { timeout: 4 * 60_000 }, async () => {
    const token = await page.evaluate(() => localStorage.getItem('zs_token'));
    const texts = ['The quick brown fox.', 'I am not happy with this at all.', 'What a wonderful, truly great day!'];
    for (const [i, text] of texts.entries()) {
      const res = await api(server, 'POST', '/tasks/submit', {
        token, json: { query: text, budget: 1, priority: ['low', 'high', 'normal'][i], capabilities: ['nlp'] }, headers: { Prefer: 'wait=60' },
      });
      assert.ok([200, 202].includes(res.status), JSON.stringify(res.data));
    }

    await page.goto('/tasks');
    await page.getByTestId('task-row').first().waitFor();
    const rows = await page.getByTestId('task-row').count();
    assert.ok(rows >= 9, `expected at least 9 tasks, got ${rows}`);
    assert.match(await page.getByTestId('tasks-count').textContent(), /task/);
    await page.getByTestId('filter-task-status').selectOption('completed');
    await page.waitForURL(/status=completed/);
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=task-row]')].every((r) => r.dataset.status === 'completed'));
    await page.getByTestId('filter-task-status').selectOption('');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=task-row]').length >= 9);
    await screenshot(page, '07-tasks');

    await page.getByTestId('nav-dashboard').click();
    await page.waitForURL((u) => u.pathname === '/');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=stat-completed]')?.textContent) >= 5);
    await page.getByTestId('task-row').first().waitFor();
    await page.waitForTimeout(500);
    await screenshot(page, '03-dashboard');

    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the dashboard scrolls sideways by ${overflow}px at 390px`);
    await screenshot(page, '12-dashboard-mobile');
    await page.getByTestId('nav-toggle').click();
    await page.getByTestId('nav-analytics').click();
    await page.waitForURL(/\/analytics/);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByTestId('analytics-totals').waitFor();
    await page.waitForTimeout(800);
    await screenshot(page, '09-analytics');
    assert.deepEqual(page.errors.map(String), []);
    await context.close();
  });
});
