// Live updates for the signed-in person: owns the one LiveSocket, the connection indicator in
// the header (#ws-status), the message-type listeners and the topic subscriptions.
//
// Pages call on(type, fn) and topic("queue" | "agent:<id>"); both return a function that undoes
// them. Topics are reference-counted and sent again after every reconnect, since a new socket
// starts with none. After a reconnect (not the first connect) listeners of 'reconnected' run,
// so pages can fetch what they missed while the socket was down.

import * as api from './api.js';
import { LiveSocket } from './ws.js';
import { isAdmin } from './session.js';
import { $ } from './ui.js';

const CONNECTED_INDICATOR_MS = 3000;

const listeners = new Map(); // type → Set<fn>
const topics = new Map();    // topic → reference count
let everConnected = false;
let probed = false;          // checked the token after a failed attempt during this outage
let hideTimer = null;
let running = false;
let epoch = 0;               // bumped on sign-out: releases of older subscriptions are ignored

const socket = new LiveSocket({
  url: api.wsUrl,
  onMessage: (msg) => emit(msg.type, msg.data && typeof msg.data === 'object' ? msg.data : {}, msg),
  onStatus: renderStatus,
  onClose: handleClose,
  onOpen: () => {
    // Admins' sockets start with every user's task updates (the `tasks` topic); these pages
    // show the signed-in person's own tasks, so that stream would only cost bandwidth.
    if (isAdmin()) socket.send({ type: 'unsubscribe', topic: 'tasks' });
    for (const t of topics.keys()) socket.send({ type: 'subscribe', topic: t });
    if (everConnected) emit('reconnected', {});
    everConnected = true;
    probed = false;
  },
});

function emit(type, data, msg) {
  for (const fn of [...(listeners.get(type) || [])]) {
    try {
      fn(data, msg);
    } catch (err) {
      console.error(`live listener for ${type} failed`, err);
    }
  }
}

/** Listen to one message type ('task_update', 'agent_update', …, or 'reconnected'). */
export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type)?.delete(fn);
}

/** Subscribe to a server topic while the returned function has not been called. */
export function topic(name) {
  const n = topics.get(name) || 0;
  topics.set(name, n + 1);
  if (n === 0) socket.send({ type: 'subscribe', topic: name });
  let released = false;
  const mine = epoch;
  return () => {
    if (released) return;
    released = true;
    if (mine !== epoch) return; // stop() forgot every topic already
    const left = (topics.get(name) || 1) - 1;
    if (left > 0) {
      topics.set(name, left);
    } else {
      topics.delete(name);
      socket.send({ type: 'unsubscribe', topic: name });
    }
  };
}

export function start() {
  if (running) return;
  running = true;
  everConnected = false;
  probed = false;
  $('ws-status').hidden = false;
  socket.start();
}

/** On sign-out: close for good and hide the indicator. */
export function stop() {
  running = false;
  socket.stop();
  topics.clear();
  epoch += 1;
  clearTimeout(hideTimer);
  $('ws-status').hidden = true;
}

export function reconnect() {
  socket.reconnect();
}

export const isConnected = () => $('ws-status').dataset.state === 'connected';

function renderStatus({ state, text, canRetry }) {
  const box = $('ws-status');
  clearTimeout(hideTimer);
  box.dataset.state = state;
  $('ws-status-text').textContent = text;
  $('ws-reconnect').hidden = !canRetry;
  box.hidden = !running;
  box.title = state === 'connected' ? 'Live updates are on' : `Live updates: ${text}`;
  if (state === 'connected') {
    hideTimer = setTimeout(() => { box.hidden = true; }, CONNECTED_INDICATOR_MS);
  }
}

/** Close code the server uses when the socket's credential stopped working (or no pong). */
const POLICY_VIOLATION = 1008;

/**
 * Ask GET /users/me whether the session still works. A 401 there goes through the API layer's
 * 401 handler, which signs the person out with a notice (and stops this socket). When the
 * server could not be asked, the next failed attempt asks again.
 */
function probeSession() {
  probed = true;
  return api.me().then(
    () => 'valid',
    (err) => {
      if (!err || !err.status) probed = false; // no answer: ask again next time
      return err?.status === 401 ? 'signed-out' : 'unknown';
    },
  );
}

/**
 * Browsers do not say why a WebSocket handshake failed. When an attempt fails before opening,
 * ask /users/me once per outage: an expired token answers 401 there.
 *
 * A 1008 close of an open socket means the server ended it on purpose: the password was
 * changed or the session revoked elsewhere (or the socket missed its pongs). Retrying with the
 * same token would only fail, so the socket waits for the session check: a 401 signs out, a
 * valid session reconnects on the usual schedule.
 */
function handleClose({ opened, code }) {
  if (code === POLICY_VIOLATION) return probeSession();
  if (!opened && !probed) probeSession();
  return undefined;
}

/** Pause live updates around an action that will end this socket's session on purpose. */
export async function whilePaused(action) {
  const wasRunning = running;
  if (wasRunning) socket.stop();
  try {
    return await action();
  } finally {
    if (wasRunning && running) {
      probed = false;
      socket.start();
    }
  }
}

export function wireControls() {
  $('ws-reconnect').addEventListener('click', () => socket.reconnect());
  window.addEventListener('online', () => {
    if (running && socket.gaveUp) socket.reconnect();
  });
}
