// /api-keys: create a key (name, scopes, optional expiry) — its secret is shown once, with a
// Copy button and a warning — list my keys (name, prefix, scopes, created, last used,
// expires) and revoke one after confirming.

import * as api from '../api.js';
import {
  h, busy, showMessage, clearMessage, messageBox, actionError, loadError, confirmDialog, toast,
  fmtDateTime, timeEl,
} from '../ui.js';

const SCOPES = [
  ['agents:read', 'Read agents', 'List, search and view agents.'],
  ['agents:write', 'Write agents', 'Upload, edit and delete your agents.'],
  ['tasks:read', 'Read tasks', 'List and view your tasks.'],
  ['tasks:write', 'Write tasks', 'Submit and cancel tasks.'],
];
const EXPIRY = [['', 'Never'], ['7', '7 days'], ['30', '30 days'], ['90', '90 days'], ['365', '1 year']];

export default {
  title: 'API keys',

  mount(root, { scope }) {
    const name = h('input', { id: 'k-name', type: 'text', maxlength: '100', autocomplete: 'off', placeholder: 'e.g. CI pipeline', 'data-testid': 'key-name' });
    const boxes = SCOPES.map(([value, label, hint]) => {
      const box = h('input', { type: 'checkbox', class: 'checkbox', id: `k-scope-${value.replace(':', '-')}`, value, 'data-testid': `key-scope-${value.replace(':', '-')}`, checked: value.endsWith(':read') });
      return { box, el: h('label', { class: 'check-row scope-option', for: box.id }, box, h('span', null, h('strong', null, label), h('span', { class: 'hint' }, ` ${value} — ${hint}`))) };
    });
    const expiry = h('select', { id: 'k-expiry', 'data-testid': 'key-expiry' }, EXPIRY.map(([v, l]) => h('option', { value: v }, l)));
    const msg = messageBox('key-error');
    const create = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'key-create' }, 'Create key');
    const reveal = h('div', { class: 'key-reveal', 'data-testid': 'key-reveal', hidden: true });
    const listMsg = messageBox('keys-error');
    const tbody = h('tbody');
    const table = h('table', { class: 'table', 'data-testid': 'keys-table' },
      h('thead', null, h('tr', null, ['Name', 'Prefix', 'Scopes', 'Created', 'Last used', 'Expires', ''].map((c) => h('th', { scope: 'col' }, c)))),
      tbody);
    const empty = h('p', { class: 'empty', 'data-testid': 'keys-empty', hidden: true }, 'No API keys yet. Create one above to call the API from scripts.');

    const form = h('form', { 'data-testid': 'key-form', novalidate: true },
      h('div', { class: 'field-row' },
        h('div', { class: 'field' }, h('label', { for: 'k-name' }, 'Name'), name),
        h('div', { class: 'field' }, h('label', { for: 'k-expiry' }, 'Expires'), expiry)),
      h('fieldset', { class: 'fieldset field' }, h('legend', null, 'Scopes'), boxes.map((b) => b.el)),
      msg,
      h('div', { class: 'form-actions' }, create));

    root.append(
      h('div', { class: 'page-head' },
        h('div', null,
          h('h1', { class: 'gradient-text' }, 'API keys'),
          h('p', { class: 'muted' }, 'Keys let scripts call the API as you: send ', h('code', null, 'Authorization: Bearer zs_…'), '. Each key can do only what its scopes allow.'))),
      h('section', { class: 'card', 'aria-labelledby': 'k-new' }, h('h2', { id: 'k-new' }, 'New key'), form, reveal),
      h('section', { class: 'card', 'aria-labelledby': 'k-list' },
        h('h2', { id: 'k-list' }, 'Your keys'), listMsg, h('div', { class: 'table-wrap' }, table), empty),
    );

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearMessage(msg);
      const scopes = boxes.filter((b) => b.box.checked).map((b) => b.box.value);
      if (!name.value.trim()) {
        showMessage(msg, 'Give the key a name, so you know later what uses it.');
        name.focus();
        return;
      }
      if (!scopes.length) {
        showMessage(msg, 'Pick at least one scope.');
        boxes[0].box.focus();
        return;
      }
      const restore = busy(create, 'Creating…');
      try {
        const key = await api.createApiKey({ name: name.value.trim(), scopes, expires_in_days: expiry.value ? Number(expiry.value) : undefined });
        if (!scope.alive) return;
        showKey(key);
        form.reset();
        boxes.forEach((b) => { b.box.checked = b.box.value.endsWith(':read'); });
        load();
      } catch (err) {
        if (scope.alive && err.status !== 401) showMessage(msg, actionError('Creating API keys', err));
      } finally {
        restore();
      }
    });

    function showKey(key) {
      const secret = h('code', { class: 'key-secret', 'data-testid': 'key-secret', tabindex: '0' }, key.key);
      const copyMsg = h('span', { class: 'hint', role: 'status', 'data-testid': 'key-copy-status' });
      const copy = h('button', {
        type: 'button', class: 'btn btn-primary btn-small', 'data-testid': 'key-copy',
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(key.key);
            copyMsg.textContent = 'Copied to the clipboard.';
          } catch {
            const range = document.createRange();
            range.selectNodeContents(secret);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
            copyMsg.textContent = 'Copying is blocked here: the key is selected, press Ctrl+C (⌘+C).';
          }
        },
      }, 'Copy');
      reveal.replaceChildren(
        h('p', { class: 'notice', role: 'alert' }, h('strong', null, `Key “${key.name}” created. `), 'Copy it now — it will not be shown again.'),
        h('div', { class: 'key-row' }, secret, copy),
        copyMsg,
        h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': 'key-done', onclick: () => { reveal.hidden = true; reveal.replaceChildren(); } }, 'I have saved it'));
      reveal.hidden = false;
      copy.focus();
    }

    async function revoke(key) {
      const ok = await confirmDialog({
        title: `Revoke “${key.name}”?`,
        message: `Anything using the key ${key.prefix}… stops working at once. This cannot be undone.`,
        confirmLabel: 'Revoke key',
      });
      if (!ok) return;
      try {
        await api.revokeApiKey(key.id);
        toast(`Key “${key.name}” revoked.`, 'success');
        load();
      } catch (err) {
        if (err.status !== 401) toast(`Could not revoke the key: ${actionError('Revoking API keys', err)}`, 'error');
      }
    }

    async function load() {
      try {
        const res = await api.listApiKeys();
        if (!scope.alive) return;
        clearMessage(listMsg);
        const keys = res?.keys || [];
        empty.hidden = keys.length > 0;
        table.hidden = !keys.length;
        tbody.replaceChildren(...keys.map((k) => h('tr', { 'data-testid': 'key-row', 'data-key-id': k.id },
          h('td', { 'data-label': 'Name' }, h('strong', { 'data-testid': 'key-row-name' }, k.name)),
          h('td', { 'data-label': 'Prefix' }, h('code', { 'data-testid': 'key-row-prefix' }, `${k.prefix}…`)),
          h('td', { 'data-label': 'Scopes' }, h('ul', { class: 'chips' }, (k.scopes || []).map((s) => h('li', { class: 'chip' }, s)))),
          h('td', { 'data-label': 'Created' }, timeEl(k.created_at)),
          h('td', { 'data-label': 'Last used' }, k.last_used_at ? timeEl(k.last_used_at) : 'never'),
          h('td', { 'data-label': 'Expires' }, k.expires_at ? h('span', { title: fmtDateTime(k.expires_at) }, fmtDateTime(k.expires_at)) : 'never'),
          h('td', { 'data-label': 'Actions', class: 'actions' },
            h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'key-revoke', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k) }, 'Revoke')))));
      } catch (err) {
        if (!scope.alive || err.status === 401) return;
        table.hidden = true;
        showMessage(listMsg, loadError('API keys', err));
      }
    }
    load();
  },
};
