// The "Upload agent" dialog: the form (module file, name, description, version, capabilities,
// price, and advanced manifest fields: input schema, memory and time limits), then the build's
// progress, live from agent_update messages, with a link to the new agent's page.
//
// The server is the only judge of a module: its error message is shown as it is, in the
// dialog. Build listeners outlive the dialog until the build ends, so closing it early still
// gets a toast when the agent is ready or rejected.

import * as api from './api.js';
import * as live from './live.js';
import { onUserChange } from './session.js';
import {
  h, modal, busy, showMessage, clearMessage, messageBox, errorText, statusBadge, setBadge,
  parseList, fmtBytes, fmtDuration, toast, seg,
} from './ui.js';

const RANK = { validating: 0, compiling: 1, ready: 2, rejected: 2 };
const MIB = 1024 * 1024;
const MAX_WATCH_MS = 30 * 60_000; // a build that has not ended by then is left to the agent page

function field(id, label, input, { hint, optional } = {}) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label, optional ? h('span', { class: 'optional' }, ' (optional)') : null),
    input,
    hint ? h('span', { id: `${id}-hint`, class: 'hint' }, hint) : null);
}

/** Open the dialog. onCreated(agent) runs once the server accepted an upload. */
export function openUploadDialog({ onCreated } = {}) {
  const msg = messageBox('upload-error');
  const input = (id, props) => h('input', { id, ...props });

  const file = input('upload-file', { name: 'wasm_binary', type: 'file', accept: '.wasm,application/wasm', required: true, 'data-testid': 'upload-file' });
  const name = input('upload-name', { name: 'name', type: 'text', autocomplete: 'off', required: true, maxlength: '100', 'data-testid': 'upload-name' });
  const description = h('textarea', { id: 'upload-description', name: 'description', rows: '2', placeholder: 'What does this agent do?', 'data-testid': 'upload-description' });
  const version = input('upload-version', { name: 'version', type: 'text', value: '1.0.0', autocomplete: 'off', required: true, 'data-testid': 'upload-version' });
  const price = input('upload-price', { name: 'price', type: 'number', min: '0', step: 'any', value: '0.01', required: true, inputmode: 'decimal', 'data-testid': 'upload-price' });
  const caps = input('upload-capabilities', { name: 'capabilities', type: 'text', autocomplete: 'off', placeholder: 'e.g. text, nlp', 'aria-describedby': 'upload-capabilities-hint', 'data-testid': 'upload-capabilities' });
  const schema = h('textarea', { id: 'upload-schema', rows: '4', class: 'mono', spellcheck: 'false', placeholder: '{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}', 'aria-describedby': 'upload-schema-hint', 'data-testid': 'upload-schema' });
  const memory = input('upload-memory', { type: 'number', min: '1', step: '1', inputmode: 'numeric', placeholder: 'server default', 'data-testid': 'upload-memory' });
  const timeout = input('upload-timeout', { type: 'number', min: '1', step: '1', inputmode: 'numeric', placeholder: 'server default', 'data-testid': 'upload-timeout' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'upload-submit' }, 'Upload agent');

  file.addEventListener('change', () => {
    const f = file.files?.[0];
    if (f && !name.value.trim()) name.value = f.name.replace(/\.wasm$/i, '');
  });

  const form = h('form', { class: 'upload-form', 'data-testid': 'upload-form', novalidate: true },
    h('p', { class: 'muted small' }, 'Publish a WebAssembly (WASI command) module as an agent. It is checked and compiled on the server; you can follow the build here.'),
    field('upload-file', 'Module file (.wasm)', file),
    h('div', { class: 'field-row' },
      field('upload-name', 'Name', name),
      field('upload-version', 'Version', version)),
    field('upload-description', 'Description', description, { optional: true }),
    h('div', { class: 'field-row' },
      field('upload-capabilities', 'Capabilities', caps, { hint: 'Comma-separated; tasks that need them can go to this agent.' }),
      field('upload-price', 'Price per task (credits)', price)),
    h('details', { class: 'advanced', 'data-testid': 'upload-advanced' },
      h('summary', null, 'Advanced: input schema and limits'),
      field('upload-schema', 'Input JSON Schema', schema, { optional: true, hint: 'Tasks whose input does not match are refused; the “Run a task” form is generated from it.' }),
      h('div', { class: 'field-row' },
        field('upload-memory', 'Memory limit (MiB)', memory, { optional: true }),
        field('upload-timeout', 'Time limit (s)', timeout, { optional: true }))),
    msg,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn btn-ghost', 'data-testid': 'upload-cancel', onclick: () => dlg.close() }, 'Cancel'),
      submit),
  );

  const progress = h('div', { class: 'upload-progress', 'data-testid': 'upload-progress', hidden: true });
  const dlg = modal({ title: 'Upload an agent', testid: 'upload-dialog', body: [form, progress], wide: true });
  file.focus();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearMessage(msg);
    const f = file.files?.[0];
    if (!f) return fail('Choose a .wasm file to upload.', file);
    if (!name.value.trim()) return fail('Give the agent a name.', name);
    const p = Number(price.value || '0');
    if (!Number.isFinite(p) || p < 0) return fail('The price must be a number of 0 or more.', price);

    const manifest = {};
    if (schema.value.trim()) {
      try {
        manifest.input_schema = JSON.parse(schema.value);
      } catch (err) {
        return fail(`The input schema is not valid JSON: ${errorText(err)}`, schema);
      }
    }
    const limits = {};
    if (memory.value) {
      const mib = Number(memory.value);
      if (!Number.isInteger(mib) || mib < 1) return fail('The memory limit must be a whole number of MiB.', memory);
      limits.memory_bytes = mib * MIB;
    }
    if (timeout.value) {
      const secs = Number(timeout.value);
      if (!Number.isInteger(secs) || secs < 1) return fail('The time limit must be a whole number of seconds.', timeout);
      limits.timeout_secs = secs;
    }
    if (Object.keys(limits).length) manifest.limits = limits;

    const data = new FormData();
    data.append('wasm_binary', f, f.name);
    if (Object.keys(manifest).length) data.append('manifest', JSON.stringify(manifest));
    data.append('name', name.value.trim());
    data.append('description', description.value.trim());
    data.append('version', version.value.trim() || '1.0.0');
    const capList = parseList(caps.value);
    if (capList.length) data.append('capabilities', capList.join(','));
    data.append('price', String(p));

    const restore = busy(submit, 'Uploading…');
    try {
      const res = await api.uploadAgent(data);
      form.hidden = true;
      showProgress(res);
      onCreated?.(res);
    } catch (err) {
      if (err.status === 401) {
        dlg.close();
        return;
      }
      fail(errorText(err), err.code === 'invalid_wasm_module' || err.code === 'payload_too_large' ? file : null);
    } finally {
      restore();
    }
  });

  function fail(text, control) {
    showMessage(msg, text);
    control?.focus();
  }

  function showProgress(res) {
    const id = res.agent_id;
    let status = res.status || 'validating';
    let agent = { build: res.build, rejection: res.rejection };
    const badge = statusBadge(status, 'upload-status');
    const note = h('div', { class: 'build-note', 'data-testid': 'upload-build' });
    // The form (and its message box) is hidden now: build problems are said here.
    const progressMsg = messageBox('upload-progress-error');
    const linkEl = h('a', { class: 'btn btn-primary', href: `/agents/${seg(id)}`, 'data-testid': 'upload-agent-link', onclick: () => dlg.close() }, 'Open agent page');
    progress.replaceChildren(
      h('p', { class: 'result-title' }, '✓ Uploaded ', h('strong', null, res.name), ` v${res.version}`, ' · ', fmtBytes(res.binary_size)),
      h('p', { class: 'build-line' }, 'Build: ', badge),
      note,
      progressMsg,
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'btn btn-ghost', 'data-testid': 'upload-another', onclick: () => { dlg.close(); openUploadDialog({ onCreated }); } }, 'Upload another'),
        linkEl),
    );
    progress.hidden = false;
    linkEl.focus();

    let tick = null;
    const renderNote = () => {
      note.replaceChildren(buildNote(status, agent));
      clearInterval(tick);
      if (status === 'compiling' && progress.isConnected) {
        tick = setInterval(() => {
          if (!progress.isConnected) clearInterval(tick);
          else note.replaceChildren(buildNote(status, agent));
        }, 500);
      }
    };
    const apply = (next, full) => {
      if ((RANK[next] ?? 0) < (RANK[status] ?? 0)) return;
      status = next;
      if (full) agent = full;
      setBadge(badge, status);
      renderNote();
      if (status === 'ready' || status === 'rejected') finish();
    };
    const refresh = () => api.getAgent(id).then((a) => {
      clearMessage(progressMsg);
      apply(a.status, a);
    }).catch((err) => {
      if (err.status === 401) return;
      const text = `Could not check the build of “${res.name}”: ${errorText(err)}`;
      if (progress.isConnected) showMessage(progressMsg, text, 'warning');
      else toast(text, 'warning');
    });
    const offUpdate = live.on('agent_update', (d) => {
      if (d.agent_id !== id || d.action === 'stats') return;
      if (d.status === 'compiling' || d.status === 'rejected') refresh(); // build timings or the reason
      else if (d.status) apply(d.status);
    });
    const offReconnect = live.on('reconnected', refresh);
    let done = false;
    // The listeners end with the build, on sign-out, or after a long wait at the latest.
    const stopListening = () => {
      done = true;
      clearInterval(tick);
      clearTimeout(giveUp);
      offUpdate();
      offReconnect();
      offUser();
    };
    const giveUp = setTimeout(() => { if (!done) stopListening(); }, MAX_WATCH_MS);
    const offUser = onUserChange((u) => { if (!u && !done) stopListening(); });
    function finish() {
      if (done) return;
      stopListening();
      if (!progress.isConnected) {
        if (status === 'ready') toast(`Agent “${res.name}” is ready.`, 'success');
        else toast(`Agent “${res.name}” was rejected: ${agent?.rejection?.message || 'see its page'}`, 'error');
      }
    }
    renderNote();
    refresh();
  }
}

/** What the build is doing, or why it was rejected. */
export function buildNote(status, agent) {
  const b = agent?.build || {};
  if (status === 'rejected') {
    const r = agent?.rejection;
    return h('p', { class: 'build-rejected', role: 'alert', 'data-testid': 'build-rejection' },
      r ? `Rejected: ${r.message} (${r.code})` : 'Rejected.');
  }
  if (status === 'ready') {
    const took = b.compile_ms != null ? ` Compiled in ${fmtDuration(b.compile_ms)}.` : '';
    return h('p', { class: 'build-ready' }, `Ready to run tasks.${took}`);
  }
  if (status === 'validating') return h('p', { class: 'muted' }, 'Validating the module…');
  const started = b.compile_started_at ? Date.parse(b.compile_started_at) : NaN;
  const elapsed = Number.isNaN(started) ? null : Math.max(0, Date.now() - started);
  const estimate = Number(b.estimated_compile_ms) || null;
  const parts = ['Compiling to native code'];
  if (elapsed !== null) parts.push(`for ${fmtDuration(elapsed)}`);
  if (estimate) parts.push(`of about ${fmtDuration(estimate)}`);
  return h('div', null,
    h('p', { class: 'muted' }, `${parts.join(' ')}…`),
    h('progress', estimate && elapsed !== null
      ? { max: String(estimate), value: String(Math.min(elapsed, estimate)), 'aria-label': 'Compile progress' }
      : { 'aria-label': 'Compile progress' }));
}
