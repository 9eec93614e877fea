// My account in a real browser: API keys (the secret shown once, usable as a bearer token
// within its scopes, dead after revoke), profile and password changes (the new session token
// replaces the old one, which stops working), and keyboard use (skip link, dialog Esc and
// focus return).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Server, openPage, registerUser, screenshot, api, uniqueEmail, startSuite, endSuite, freshSession,
} from './helpers.mjs';

describe('account pages', { timeout: 10 * 60_000 }, () => {
  let server;
  let browser;
  let user;

  before(async () => {
    ({ server, browser, user } = await startSuite({ full_name: 'Katherine Johnson' }));
  });

  after(() => endSuite({ server, browser }));

  test('API keys: created key shown once, works within its scopes, revoked key stops working', { timeout: 3 * 60_000 }, async () => {
    const { context, page } = await openPage(browser, server, { token: user.token });
    try {
      await page.goto('/api-keys');
      await page.getByTestId('key-form').waitFor();
      await page.getByTestId('key-name').fill('CI pipeline');
      assert.equal(await page.getByTestId('key-scope-agents-read').isChecked(), true);
      await page.getByTestId('key-scope-tasks-read').check();
      await page.getByTestId('key-create').click();
      const secret = page.getByTestId('key-secret');
      await secret.waitFor();
      const key = (await secret.textContent()).trim();
      assert.match(key, /^zs_/);
      await page.locator('[data-testid=key-row]', { hasText: 'CI pipeline' }).waitFor();
      assert.equal(await page.getByTestId('key-row').count(), 1);
      assert.ok(!(await page.getByTestId('keys-table').textContent()).includes(key), 'the list never shows the secret');
      await screenshot(page, '11-api-keys');

      const ok = await api(server, 'GET', '/agents', { token: key });
      assert.equal(ok.status, 200, JSON.stringify(ok.data));
      const denied = await api(server, 'POST', '/tasks/submit', { token: key, json: { query: 'x', budget: 1 } });
      assert.equal(denied.status, 403, JSON.stringify(denied.data));
      assert.equal(denied.data.error.code, 'insufficient_scope');

      await page.getByTestId('key-revoke').click();
      await page.getByTestId('confirm-ok').click();
      await page.getByTestId('keys-empty').waitFor();
      assert.equal(await page.getByTestId('key-row').count(), 0);
      const after = await api(server, 'GET', '/agents', { token: key });
      assert.equal(after.status, 401);

      await page.reload();
      await page.getByTestId('key-form').waitFor();
      assert.equal(await page.getByTestId('key-secret').count(), 0, 'the key is not shown again');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('settings: profile edit and password change with the server\'s words for a wrong password', { timeout: 3 * 60_000 }, async () => {
    const other = await registerUser(server, { full_name: 'Dorothy Vaughan' });
    const { context, page } = await openPage(browser, server, { token: other.token });
    try {
      await page.goto('/settings');
      await page.getByTestId('profile-form').waitFor();
      await page.waitForFunction((email) => document.querySelector('[data-testid=settings-email]').value === email, other.email);
      assert.equal(await page.getByTestId('settings-role').textContent(), 'user');
      await page.getByTestId('settings-name').fill('Dorothy J. Vaughan');
      await page.getByTestId('profile-save').click();
      await page.waitForSelector('[data-testid=profile-msg][data-kind=success]');
      const me = await api(server, 'GET', '/users/me', { token: other.token });
      assert.equal(me.data.full_name, 'Dorothy J. Vaughan');

      await page.getByTestId('password-current').fill('not my password');
      await page.getByTestId('password-new').fill('a much better password');
      await page.getByTestId('password-confirm').fill('a much better password');
      const wrong = page.waitForResponse((r) => r.url().endsWith('/users/me/password'));
      await page.getByTestId('password-save').click();
      const res = await wrong;
      assert.equal(res.status(), 403);
      const body = await res.json();
      assert.equal(body.error.code, 'wrong_password');
      await page.waitForFunction((m) => document.querySelector('[data-testid=password-msg]')?.textContent === m, body.error.message);
      await screenshot(page, '10-settings');

      await page.getByTestId('password-current').fill(other.password);
      await page.getByTestId('password-save').click();
      await page.waitForSelector('[data-testid=password-msg][data-kind=success]');
      const newToken = await page.evaluate(() => localStorage.getItem('zs_token'));
      assert.notEqual(newToken, other.token);
      assert.equal((await api(server, 'GET', '/users/me', { token: other.token })).status, 401, 'the old session ended');
      assert.equal((await api(server, 'GET', '/users/me', { token: newToken })).status, 200);
      await page.waitForSelector('[data-testid=ws-status][data-state=connected]', { state: 'attached', timeout: 30_000 });
      // Still signed in: the app keeps working with the new token.
      await page.getByTestId('nav-tasks').click();
      await page.getByTestId('tasks-count').waitFor();
      assert.equal(new URL(page.url()).pathname, '/tasks');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });

  test('analytics: admins can switch to the whole server, others cannot see the switch', { timeout: 3 * 60_000 }, async () => {
    const mine = await openPage(browser, server, { token: user.token });
    try {
      await mine.page.goto('/analytics?window=24h');
      await mine.page.getByTestId('analytics-totals').waitFor();
      assert.equal(await mine.page.getByTestId('window-24h').getAttribute('aria-pressed'), 'true');
      await mine.page.waitForFunction(() => /My tasks/.test(document.querySelector('[data-testid=analytics-range]')?.textContent));
      assert.equal(await mine.page.getByTestId('scope-all').isVisible(), false);
      await mine.page.getByTestId('chart-throughput-empty').waitFor();
      await mine.page.getByTestId('window-7d').click();
      await mine.page.waitForURL(/window=7d/);
    } finally {
      await mine.context.close();
    }

    const admin = new Server();
    const email = uniqueEmail('admin');
    try {
      await admin.createAdmin({ email, password: 'correct horse battery' });
      await admin.start();
      const login = await api(admin, 'POST', '/users/login', { json: { email, password: 'correct horse battery' } });
      assert.equal(login.data.user.role, 'admin');
      const { context, page } = await openPage(browser, admin, { token: login.data.token });
      try {
        await page.goto('/analytics');
        await page.getByTestId('scope-all').waitFor();
        await page.getByTestId('scope-all').click();
        await page.waitForURL(/scope=all/);
        await page.waitForFunction(() => /Whole server/.test(document.querySelector('[data-testid=analytics-range]')?.textContent));
        assert.equal(await page.getByTestId('analytics-error').isHidden(), true);
        assert.deepEqual(page.errors.map(String), []);
      } finally {
        await context.close();
      }
    } finally {
      await admin.dispose();
    }
  });

  test('keyboard: skip link first, the upload dialog closes with Esc and gives focus back', { timeout: 2 * 60_000 }, async () => {
    // Signs out at the end: a session of its own, not the suite's.
    const token = await freshSession(server, user);
    const { context, page } = await openPage(browser, server, { token });
    try {
      await page.goto('/agents');
      await page.getByTestId('open-upload').waitFor();
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'skip-link');
      await page.keyboard.press('Enter');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');

      await page.getByTestId('open-upload').focus();
      await page.keyboard.press('Enter');
      await page.getByTestId('upload-dialog').waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'upload-file', 'focus moves into the dialog');
      await page.keyboard.press('Escape');
      await page.getByTestId('upload-dialog').waitFor({ state: 'detached' });
      assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'open-upload');

      // Sign out ends the session on the server too; sign-in tabs follow the arrow keys.
      await page.getByTestId('logout').click();
      await page.getByTestId('tab-login').waitFor();
      assert.equal((await api(server, 'GET', '/users/me', { token })).status, 401, 'the token is dead');
      await page.getByTestId('tab-login').focus();
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.getByTestId('tab-signup').getAttribute('aria-selected'), 'true');
      assert.equal(new URL(page.url()).pathname, '/signup');
      assert.deepEqual(page.errors.map(String), []);
    } finally {
      await context.close();
    }
  });
});
