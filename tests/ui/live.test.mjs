// The live connection as a person sees it: the header indicator follows a server stop and
// restart without a page reload; after five failed retries it gives up and offers Reconnect
// (the backoff is fast-forwarded with a fake clock); and a session the server no longer
// accepts signs the person out with a notice, then brings them back where they were.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, sleep, startSuite, endSuite } from './helpers.mjs';

const wsState = (page) => page.getByTestId('ws-status').getAttribute('data-state');

async function waitState(page, states, timeout = 60_000) {
  await page.waitForFunction(
    (wanted) => wanted.includes(document.querySelector('[data-testid=ws-status]')?.dataset.state),
    states,
    { timeout },
  );
}

describe('live updates connection', { timeout: 10 * 60_000 }, () => {
  let server;
  let browser;
  let user;

  before(async () => {
    ({ server, browser, user } = await startSuite({ full_name: 'Grace Hopper' }));
  });

  after(() => endSuite({ server, browser }));

  test('the indicator goes disconnected on SIGTERM and connected again after a restart, without a reload', { timeout: 3 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      await page.goto('/');
      await page.getByTestId('stats-bar').waitFor();
      await waitState(page, ['connected']);
      await page.evaluate(() => { window.__marker = 'same-page'; });

      await server.stop('SIGTERM');
      await waitState(page, ['disconnected', 'error']);
      assert.equal(await page.getByTestId('ws-status').isVisible(), true, 'a problem is shown, not hidden');

      await server.start();
      await waitState(page, ['connected'], 90_000);
      assert.equal(await page.evaluate(() => window.__marker), 'same-page', 'no reload happened');
      // The connected pill hides itself after a few seconds.
      await page.getByTestId('ws-status').waitFor({ state: 'hidden', timeout: 10_000 });
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('after five failed retries it gives up and the Reconnect button connects again', { timeout: 4 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      await page.clock.install();
      await page.goto('/');
      await page.getByTestId('stats-bar').waitFor();
      await waitState(page, ['connected']);

      await server.stop('SIGTERM');
      await waitState(page, ['disconnected', 'error']);
      const reconnect = page.getByTestId('ws-reconnect');
      assert.equal(await reconnect.isVisible(), false, 'no button while retries are pending');

      // Backoff 1, 2, 4, 8, 16 s: jump past each wait, let the attempt fail for real.
      const texts = [];
      for (let i = 0; i < 12 && !(await reconnect.isVisible()); i += 1) {
        texts.push(await page.locator('#ws-status-text').textContent());
        await page.clock.fastForward(17_000);
        await sleep(400);
      }
      assert.equal(await reconnect.isVisible(), true, `gave up; saw: ${texts.join(' | ')}`);
      assert.ok(texts.some((t) => /retrying in 16 s/.test(t)), `the last wait was 16 s; saw: ${texts.join(' | ')}`);
      assert.ok(['disconnected', 'error'].includes(await wsState(page)));

      await server.start();
      await reconnect.click();
      await waitState(page, ['connected'], 60_000);
      assert.equal(await reconnect.isVisible(), false);
    } finally {
      await context.close();
    }
  });

  test('a 401 signs out with a notice and signing in returns to the page', { timeout: 2 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      await page.goto('/');
      await page.getByTestId('stats-bar').waitFor();
      await page.evaluate(() => localStorage.setItem('zs_token', 'not-a-valid-token'));
      await page.getByTestId('nav-tasks').click();
      await page.waitForURL(/\/login\?next=%2Ftasks$/);
      const notice = page.getByTestId('auth-notice');
      await notice.waitFor();
      assert.match(await notice.textContent(), /expired|ended/);
      assert.equal(await page.evaluate(() => localStorage.getItem('zs_token')), null);
      assert.equal(await page.getByTestId('ws-status').isHidden(), true);

      await page.getByTestId('login-email').fill(user.email);
      await page.getByTestId('login-password').fill('wrong password');
      await page.getByTestId('login-submit').click();
      const error = page.getByTestId('login-error');
      await error.waitFor();
      assert.ok((await error.textContent()).length > 5, 'the server\'s reason is shown');

      await page.getByTestId('login-password').fill(user.password);
      await page.getByTestId('login-submit').click();
      await page.waitForURL(/\/tasks$/);
      await page.getByTestId('tasks-count').waitFor();
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });
});
