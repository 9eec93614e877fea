// The live-update WebSocket: one connection, reconnects with backoff, keeps itself alive.
// It knows nothing about pages; live.js turns its messages into events and topics.
//
// States reported through onStatus({ state, text, canRetry }):
//   connecting   – an attempt is in progress
//   connected    – open and greeted by the server (registered for updates); messages flow
//   error        – the last attempt failed with an error; a retry is pending
//                  (or, with canRetry, we gave up)
//   disconnected – closed; a retry is pending, or we gave up (canRetry), or
//                  the socket was stopped on purpose (log out)
//
// Reconnect policy: after a drop, retry after 1, 2, 4, 8 and 16 s. If those
// five attempts all fail, stop and let the person press "Reconnect".
// A connection that stays open for STABLE_MS resets the schedule; one the server closes
// right after opening it keeps counting, so a server that accepts and drops at once does not
// get a reconnect every second forever.
//
// onClose may return a promise (e.g. "is my session still valid?" after a 1008 close): no
// retry is scheduled until it settles (at most HOLD_MAX_MS), and none at all if stop() was
// called meanwhile.

export const BACKOFF_SECONDS = [1, 2, 4, 8, 16];
const PING_INTERVAL_MS = 25_000;
const STABLE_MS = 10_000;
const HOLD_MAX_MS = 10_000;

export class LiveSocket {
  /**
   * @param {object} opts
   * @param {() => string} opts.url        builds the URL (token may change)
   * @param {(msg: object) => void} opts.onMessage   parsed non-pong messages
   * @param {(s: {state: string, text: string, canRetry: boolean}) => void} opts.onStatus
   * @param {(info: {opened: boolean, code: number, retries: number}) => (void|Promise<any>)} [opts.onClose]
   * @param {() => void} [opts.onOpen]   once each socket is greeted (re-subscribe topics here)
   */
  constructor({ url, onMessage, onStatus, onClose, onOpen }) {
    this.url = url;
    this.onOpen = onOpen || (() => {});
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onClose = onClose || (() => {});
    this.ws = null;
    this.retries = 0; // reconnect attempts since the last successful open
    this.retryTimer = null;
    this.pingTimer = null;
    this.stableTimer = null;
    this.stopped = true;
    this.gaveUp = false;
    this.generation = 0; // bumped by start/stop/reconnect: late callbacks of an older run are ignored
  }

  /** Begin connecting (idempotent). */
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.retries = 0;
    this.generation += 1;
    this.#open();
  }

  /** Close for good (e.g. on log out). No reconnects afterwards. */
  stop() {
    this.stopped = true;
    this.gaveUp = false;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stableTimer);
    this.#stopPing();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000, 'bye');
      } catch {
        /* already closed */
      }
    }
    this.#status('disconnected', 'disconnected', false);
  }

  /** Manual retry after giving up (the "Reconnect" button). */
  reconnect() {
    if (this.ws) return;
    clearTimeout(this.retryTimer);
    this.stopped = false;
    this.gaveUp = false;
    this.retries = 0;
    this.generation += 1;
    this.#open();
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  #status(state, text, canRetry) {
    this.onStatus({ state, text, canRetry });
  }

  #open() {
    this.gaveUp = false;
    this.#status('connecting', 'connecting…', false);
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      // Only happens for a malformed URL; treat like a failed attempt.
      this.#afterClose({ opened: false, errored: true, code: 0 });
      return;
    }
    this.ws = ws;
    let opened = false;
    let greeted = false;
    let errored = false;

    ws.onopen = () => {
      opened = true;
      this.#startPing();
    };
    ws.onmessage = (ev) => {
      // The server greets a socket once it is registered for updates: only from then on is
      // nothing missed, so that is when the socket counts as connected.
      if (!greeted) {
        greeted = true;
        this.#status('connected', 'connected', false);
        clearTimeout(this.stableTimer);
        this.stableTimer = setTimeout(() => { this.retries = 0; }, STABLE_MS);
        this.onOpen();
      }
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // not JSON; nothing we can do with it
      }
      if (!msg || typeof msg !== 'object' || msg.type === 'pong') return;
      this.onMessage(msg);
    };
    ws.onerror = () => {
      // Browsers give no detail here; a close event always follows.
      errored = true;
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return; // replaced or stopped already
      this.ws = null;
      this.#stopPing();
      clearTimeout(this.stableTimer);
      if (this.stopped) return;
      this.#afterClose({ opened, errored, code: ev.code });
    };
  }

  #afterClose({ opened, errored, code }) {
    const hold = this.onClose({ opened, code, retries: this.retries });
    if (this.stopped) return; // onClose may have stopped us (e.g. token expired)
    if (hold && typeof hold.then === 'function') {
      // Wait for the verdict (bounded) before retrying; a sign-out meanwhile stops us.
      const generation = this.generation;
      this.#status('disconnected', 'disconnected — checking your session…', false);
      let timer;
      const bounded = new Promise((resolve) => { timer = setTimeout(resolve, HOLD_MAX_MS); });
      Promise.race([Promise.resolve(hold).catch(() => {}), bounded]).then(() => {
        clearTimeout(timer);
        if (this.stopped || this.generation !== generation || this.ws) return;
        this.#schedule({ opened, errored });
      });
      return;
    }
    this.#schedule({ opened, errored });
  }

  #schedule({ opened, errored }) {
    const state = errored && !opened ? 'error' : 'disconnected';
    if (this.retries >= BACKOFF_SECONDS.length) {
      this.gaveUp = true;
      this.#status(state, state === 'error' ? 'connection error' : 'disconnected', true);
      return;
    }
    const delay = BACKOFF_SECONDS[this.retries];
    this.retries += 1;
    const label = state === 'error' ? 'connection error' : 'disconnected';
    this.#status(state, `${label} — retrying in ${delay} s`, false);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped && !this.ws) this.#open();
    }, delay * 1000);
  }

  #startPing() {
    this.#stopPing();
    this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_INTERVAL_MS);
  }

  #stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}
