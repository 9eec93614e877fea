// Shared pieces of the browser tests: a ZeroState server per test file (free port, fresh data
// dir, killed at the end even on failure), headless Chromium through playwright-core (the
// system browser; nothing is downloaded), API shortcuts for arranging data, hand-assembled
// WebAssembly modules that trap or spin, and screenshots.
//
// Environment: UI_TEST_BINARY (the binary that serves the UI; default target/debug/zerostate),
// CHROMIUM (default /usr/bin/chromium), UI_TEST_SCREENSHOTS (default target/ui-screenshots).
// Not ZEROSTATE_*: the server reads every such variable as configuration.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const AGENTS = path.join(REPO, 'assets/agents');
export const OUT = process.env.UI_TEST_SCREENSHOTS || path.join(REPO, 'target/ui-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Generous: the binary may be a debug build on two busy cores. */
export const SLOW = 120_000;

function binary() {
  const candidates = [
    process.env.UI_TEST_BINARY,
    path.join(REPO, 'target/debug/zerostate'),
    path.join(REPO, 'target/release/zerostate'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no zerostate binary: set UI_TEST_BINARY (tried ${candidates.join(', ')})`);
  return path.resolve(found);
}

/** A port nobody listens on right now: bind port 0, read it, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The environment of a server: quiet logs unless the caller asked otherwise. */
function serverEnv() {
  const env = { ...process.env };
  env.ZEROSTATE_LOG__FILTER ||= 'warn';
  return env;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One zerostate process on a fixed port and data dir, restartable. */
export class Server {
  constructor({ demo = false, workers = 2 } = {}) {
    this.bin = binary();
    this.demo = demo;
    this.workers = workers;
    this.dataDir = mkdtempSync(path.join(tmpdir(), 'zs-ui-data-'));
    this.port = null;
    this.proc = null;
    this.log = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const args = ['serve', '--data-dir', this.dataDir, '--listen', `127.0.0.1:${this.port}`, '--workers', String(this.workers)];
    if (this.demo) args.push('--demo');
    const proc = spawn(this.bin, args, {
      env: serverEnv(),
      // Built-in defaults only: the repo's config/zerostate.toml is not read from here.
      cwd: this.dataDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    const keep = (chunk) => {
      this.log.push(String(chunk));
      if (this.log.length > 200) this.log.shift();
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => resolve({ code, signal }));
      proc.on('error', (error) => resolve({ error: error.message }));
    });
    await this.waitReady();
  }

  /** Create an admin account with the CLI; only while the server is stopped (it holds the database). */
  async createAdmin({ email, password, full_name = 'Admin' }) {
    const proc = spawn(this.bin, ['user', 'create', '--data-dir', this.dataDir, '--email', email, '--full-name', full_name, '--admin', '--password-stdin'], {
      env: serverEnv(), cwd: this.dataDir, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (c) => { out += c; });
    proc.stderr.on('data', (c) => { out += c; });
    proc.stdin.end(`${password}\n`);
    const code = await new Promise((resolve) => proc.on('exit', resolve));
    if (code !== 0) throw new Error(`zerostate user create failed (${code}): ${out}`);
  }

  /** Poll GET /ready until 200 (an external process: polling with a deadline is the way). */
  async waitReady(timeoutMs = SLOW) {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const state = await Promise.race([this.exited.then((e) => ({ exited: e })), sleep(0).then(() => null)]);
      if (state?.exited) throw new Error(`zerostate exited during start-up (${JSON.stringify(state.exited)}):\n${this.log.join('')}`);
      try {
        const res = await fetch(`${this.url}/ready`);
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err.message;
      }
      await sleep(200);
    }
    throw new Error(`zerostate not ready after ${timeoutMs} ms (${last}):\n${this.log.join('')}`);
  }

  /** Stop the process (SIGTERM by default) and wait for it to exit. */
  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const proc = this.proc;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stop and remove the data dir; safe to call twice and after a failure. */
  async dispose() {
    try {
      await this.stop('SIGTERM');
    } finally {
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }
}

/**
 * What one describe block's tests share: a started server and a browser, and (with a
 * `full_name`) a user signed up through the API. Pair with endSuite in `after`.
 */
export async function startSuite({ full_name } = {}) {
  const server = new Server();
  await server.start();
  const browser = await launchBrowser();
  const user = full_name ? await registerUser(server, { full_name }) : null;
  return { server, browser, user };
}

/** Closes the browser and stops the server, whatever startSuite got to. */
export async function endSuite({ server, browser }) {
  await browser?.close().catch(() => {});
  await server?.dispose();
}

// ----------------------------------------------------------------- browser --

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A fresh context and page on `server`. Uncaught page errors and Content-Security-Policy
 * violations are collected in page.errors so a test can assert there were none. With `token`,
 * the page starts signed in.
 */
export async function openPage(browser, server, { token, viewport = { width: 1280, height: 900 } } = {}) {
  const context = await browser.newContext({ baseURL: server.url, viewport });
  context.setDefaultTimeout(30_000);
  if (token) await context.addInitScript((t) => { if (!sessionStorage.getItem('zs_seeded')) { localStorage.setItem('zs_token', t); sessionStorage.setItem('zs_seeded', '1'); } }, token);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  // Whatever the Content-Security-Policy refuses (an inline style, a script) counts as an error.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) page.errors.push(new Error(msg.text()));
  });
  return { context, page };
}

export async function screenshot(page, name) {
  mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, `${name}.png`);
  // Toasts are fixed to the viewport's corner; in a full-page capture they would land mid-page.
  // Hidden through the CSSOM: the page's Content-Security-Policy refuses the inline <style>
  // that screenshot's `style` option would add.
  const toasts = (visibility) => page.evaluate((v) => {
    const el = document.getElementById('toasts');
    if (el) el.style.visibility = v;
  }, visibility);
  await toasts('hidden');
  await page.screenshot({ path: file, fullPage: true });
  await toasts('');
  return file;
}

// --------------------------------------------------------------------- API --

let counter = 0;
export function uniqueEmail(tag = 'user') {
  counter += 1;
  return `${tag}-${Date.now().toString(36)}-${counter}@example.com`;
}

export async function api(server, method, route, { token, json, form, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const res = await fetch(`${server.url}/api/v1${route}`, { method, headers: h, body });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  return { status: res.status, data };
}

/** Register a user through the API; returns {token, user, email, password}. */
export async function registerUser(server, { email = uniqueEmail(), password = 'correct horse battery', full_name = 'Test User' } = {}) {
  const res = await api(server, 'POST', '/users/register', { json: { email, password, full_name } });
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${JSON.stringify(res.data)}`);
  return { token: res.data.token, user: res.data.user, email, password };
}

/**
 * A session of its own for `user` (signed in through the API), for a test that signs out: Sign
 * out ends the session on the server, and the suite's other tests keep using `user.token`.
 */
export async function freshSession(server, { email, password }) {
  const res = await api(server, 'POST', '/users/login', { json: { email, password } });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.data)}`);
  return res.data.token;
}

/** Upload a module through the API and wait for its build to end. */
export async function uploadAgent(server, token, { wasm, name, capabilities = 'text', price = 0.01, description = '', version = '1.0.0' }) {
  const form = new FormData();
  const bytes = typeof wasm === 'string' ? readFileSync(wasm) : wasm;
  form.append('wasm_binary', new Blob([bytes], { type: 'application/wasm' }), 'agent.wasm');
  form.append('name', name);
  form.append('description', description);
  form.append('version', version);
  form.append('capabilities', capabilities);
  form.append('price', String(price));
  const res = await api(server, 'POST', '/agents/upload', { token, form, headers: { Prefer: 'wait=60' } });
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${JSON.stringify(res.data)}`);
  let agent = res.data;
  const deadline = Date.now() + SLOW;
  while (agent.status !== 'ready' && agent.status !== 'rejected' && Date.now() < deadline) {
    const again = await api(server, 'GET', `/agents/${res.data.agent_id}`, { token });
    agent = { ...again.data, agent_id: again.data.id };
    if (agent.status !== 'ready' && agent.status !== 'rejected') await sleep(500);
  }
  if (agent.status !== 'ready') throw new Error(`agent ${name} not ready: ${JSON.stringify(agent)}`);
  return res.data.agent_id;
}

// ------------------------------------------------------- tiny wasm modules --

/** A WASI command whose _start runs `body` (bytes of one function body, without locals). */
function commandModule(body) {
  const vec = (items) => [items.length, ...items.flat()];
  const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
  const str = (s) => [s.length, ...Buffer.from(s)];
  const code = [0x00, ...body, 0x0b]; // no locals, body, end
  return Buffer.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, 0x00, 0x00]])),                // type 0: () -> ()
    ...section(3, vec([[0x00]])),                            // func 0: type 0
    ...section(5, vec([[0x00, 0x01]])),                      // memory 0: min 1 page
    ...section(7, vec([[...str('memory'), 0x02, 0x00], [...str('_start'), 0x00, 0x00]])),
    ...section(10, vec([[...leb(code.length), ...code]])),
  ]);
}

function leb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Traps at once (`unreachable`): every run fails with error_code trap. */
export const trapWasm = () => commandModule([0x00]);
/** Spins until its time limit: keeps a worker busy. */
export const spinWasm = () => commandModule([0x03, 0x40, 0x0c, 0x00, 0x0b]);

export { sleep };
