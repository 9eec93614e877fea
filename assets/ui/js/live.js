// Live updates for the signed-in person: owns the one LiveSocket, the connection indicator in
// the header (#ws-status), the message-type listeners and the topic subscriptions.
//
// Pages call on(type, fn) and topic("queue" | "agent:<id>"); both return a function that undoes
// them. Topics are reference-counted and sent again after every reconnect, since a new socket
// starts with none. After a reconnect (not the first connect) listeners of 'reconnected' run,
// so pages can fetch what they missed while the socket was down.

import * as api from './api.js';
import { LiveSocket } from './ws.js';
import { $ } from './ui.js';

const CONNECTED_INDICATOR_MS = 3000;

const listeners = new Map(); // type → Set<fn>
const topics = new Map();    // topic → reference count
let everConnected = false;
let probed = false;          // checked the token after a failed attempt during this outage
let hideTimer = null;
let running = false;

const socket = new LiveSocket({
  url: api.wsUrl,
  onMessage: (msg) => emit(msg.type, msg.data && typeof msg.data === 'object' ? msg.data : {}, msg),
  onStatus: renderStatus,
  onClose: handleClose,
  onOpen: () => {
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
  return () => {
    if (released) return;
    released = true;
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

/**
 * Browsers do not say why a WebSocket handshake failed. When an attempt fails before opening,
 * ask /users/me once per outage: an expired token answers 401 there, and the API layer's 401
 * handler signs the person out.
 */
function handleClose({ opened }) {
  if (!opened && !probed) {
    probed = true;
    api.me().catch(() => {});
  }
}

export function wireControls() {
  $('ws-reconnect').addEventListener('click', () => socket.reconnect());
  window.addEventListener('online', () => {
    if (running && socket.gaveUp) socket.reconnect();
  });
}
