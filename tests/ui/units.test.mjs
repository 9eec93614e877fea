// The UI's pure pieces under Node, with a fake clock: the WebSocket client's reconnect schedule
// (exactly 1, 2, 4, 8, 16 s, then a Reconnect button), the wait for a session check after a
// 1008 close, a server that accepts and drops at once, the URL filter every href and src
// passes through, and the debounce that still fires under a steady stream of updates.
// No server or browser: these run in milliseconds.

import { describe, test, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';

class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static made = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    FakeSocket.made.push(this);
  }

  send(data) { this.sent.push(JSON.parse(data)); }

  close() { this.readyState = 3; }

  // What the server or the network does to it:
  /** Opens, then greets as the server does once the socket is registered. */
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
    this.onmessage?.({ data: JSON.stringify({ type: 'system', data: { message: 'connected', level: 'info' } }) });
  }

  fail() { this.onerror?.(); this.readyState = 3; this.onclose?.({ code: 1006 }); }

  drop(code) { this.readyState = 3; this.onclose?.({ code }); }
}
globalThis.WebSocket = FakeSocket;

const { LiveSocket, BACKOFF_SECONDS } = await import('../../assets/ui/js/ws.js');
const { safeUrl, debounce } = await import('../../assets/ui/js/ui.js');

const flush = () => new Promise((r) => setImmediate(r));

function client(onClose) {
  const statuses = [];
  const sock = new LiveSocket({
    url: () => 'ws://test/api/v1/ws/connect?token=t',
    onMessage: () => {},
    onStatus: (s) => statuses.push(s),
    onClose,
  });
  return { sock, statuses, last: () => statuses.at(-1) };
}

/** Advance the fake clock until a new socket is made; the delay in seconds, or null. */
function waitForAttempt(limitMs = 60_000) {
  const before = FakeSocket.made.length;
  for (let t = 0; t <= limitMs; t += 100) {
    if (FakeSocket.made.length > before) return t / 1000;
    mock.timers.tick(100);
  }
  return null;
}

describe('LiveSocket reconnects', () => {
  beforeEach(() => {
    FakeSocket.made = [];
    mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  });
  afterEach(() => mock.timers.reset());

  test('retries after exactly 1, 2, 4, 8 and 16 s, then gives up with a Reconnect offer', () => {
    assert.deepEqual(BACKOFF_SECONDS, [1, 2, 4, 8, 16]);
    const { sock, last } = client();
    sock.start();
    FakeSocket.made.at(-1).open();
    assert.equal(last().state, 'connected');
    FakeSocket.made.at(-1).drop(1001);
    const delays = [];
    for (;;) {
      const d = waitForAttempt();
      if (d === null) break;
      delays.push(d);
      FakeSocket.made.at(-1).fail();
      assert.equal(last().state, 'error');
    }
    assert.deepEqual(delays, [1, 2, 4, 8, 16]);
    assert.equal(last().canRetry, true, 'the Reconnect button shows');
    assert.equal(sock.gaveUp, true);

    sock.reconnect();
    assert.equal(FakeSocket.made.length, 7);
    FakeSocket.made.at(-1).open();
    assert.equal(last().state, 'connected');
    sock.stop();
  });

  test('a server that accepts and drops at once is not retried every second forever', () => {
    const { sock, last } = client();
    sock.start();
    const delays = [];
    FakeSocket.made.at(-1).open();
    FakeSocket.made.at(-1).drop(1013);
    for (;;) {
      const d = waitForAttempt();
      if (d === null) break;
      delays.push(d);
      FakeSocket.made.at(-1).open();
      FakeSocket.made.at(-1).drop(1013);
    }
    assert.deepEqual(delays, [1, 2, 4, 8, 16]);
    assert.equal(last().canRetry, true);
    sock.stop();
  });

  test('a connection that stays up starts the schedule over', () => {
    const { sock } = client();
    sock.start();
    FakeSocket.made.at(-1).open();
    FakeSocket.made.at(-1).drop(1001);
    assert.equal(waitForAttempt(), 1);
    FakeSocket.made.at(-1).fail();
    assert.equal(waitForAttempt(), 2);
    FakeSocket.made.at(-1).open();
    mock.timers.tick(60_000); // a minute of being connected
    FakeSocket.made.at(-1).drop(1001);
    assert.equal(waitForAttempt(), 1);
    sock.stop();
  });

  test('after a 1008 close nothing is retried until the session check answers; a sign-out then stops it', async () => {
    let answer;
    const { sock, last } = client(({ code }) => (code === 1008 ? new Promise((r) => { answer = r; }) : undefined));
    sock.start();
    FakeSocket.made.at(-1).open();
    FakeSocket.made.at(-1).drop(1008);
    assert.match(last().text, /checking your session/);
    mock.timers.tick(5000);
    await flush();
    assert.equal(FakeSocket.made.length, 1, 'no retry while the check is pending');
    sock.stop(); // the check said 401: signed out
    answer('signed-out');
    await flush();
    mock.timers.tick(60_000);
    await flush();
    assert.equal(FakeSocket.made.length, 1, 'never retried with the dead session');
  });

  test('after a 1008 close with a valid session it reconnects on the usual schedule', async () => {
    let answer;
    const { sock } = client(({ code }) => (code === 1008 ? new Promise((r) => { answer = r; }) : undefined));
    sock.start();
    FakeSocket.made.at(-1).open();
    FakeSocket.made.at(-1).drop(1008);
    answer('valid');
    await flush();
    assert.equal(waitForAttempt(), 1);
    sock.stop();
  });

  test('stop() then start() (sign-out, sign-in) leaves exactly one socket', () => {
    const { sock } = client();
    sock.start();
    sock.start();
    assert.equal(FakeSocket.made.length, 1, 'start is idempotent');
    FakeSocket.made.at(-1).open();
    sock.stop();
    sock.start();
    FakeSocket.made.at(-1).open();
    sock.reconnect(); // a stray Reconnect click while connected
    assert.equal(FakeSocket.made.length, 2);
    assert.equal(FakeSocket.made.filter((s) => s.readyState === FakeSocket.OPEN).length, 1);
    sock.stop();
  });
});

describe('safeUrl', () => {
  test('lets app paths and http(s)/mailto through', () => {
    for (const ok of ['/agents/1', '/tasks?status=failed', '#main', '?q=x', 'https://example.com/docs', 'http://host:8080/a', 'mailto:a@example.com']) {
      assert.notEqual(safeUrl(ok), null, ok);
    }
  });

  test('refuses script, data and protocol-relative URLs however they are spelled', () => {
    for (const bad of ['javascript:alert(1)', ' JaVaScRiPt:alert(1)', 'java\tscript:alert(1)', '\u0001javascript:alert(1)',
      'data:text/html,<script>alert(1)</script>', 'vbscript:msgbox', '//evil.example', '/\\evil.example', 'agents/1', '', null]) {
      assert.equal(safeUrl(bad), null, JSON.stringify(bad));
    }
  });
});

describe('debounce', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'] }));
  afterEach(() => mock.timers.reset());

  test('waits for a pause, and with maxWait still fires during a steady stream', () => {
    let calls = 0;
    const plain = debounce(() => { calls += 1; }, 300);
    for (let i = 0; i < 50; i += 1) { plain(); mock.timers.tick(100); }
    assert.equal(calls, 0, 'a plain debounce starves under a steady stream');
    mock.timers.tick(300);
    assert.equal(calls, 1);

    let capped = 0;
    const withMax = debounce(() => { capped += 1; }, 300, { maxWait: 1000 });
    for (let i = 0; i < 50; i += 1) { withMax(); mock.timers.tick(100); }
    assert.ok(capped >= 4 && capped <= 5, `fired ${capped} times in 5 s`);
    withMax.cancel();
  });
});
