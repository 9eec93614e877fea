// Form fields generated from an agent's input JSON Schema, for the "Run a task" form.
//
// An object schema with properties gets one control per property: string → text input or
// textarea, enum → select, number/integer → number input with min/max, boolean → checkbox,
// array of strings → comma-separated list, anything else → a JSON textarea for that property.
// Required properties are marked. Any other schema gets one JSON textarea. read() builds the
// input value or names the control to fix; showError() puts the server's message (with its
// JSON pointer) next to the matching control.

import { h, parseList } from './ui.js';

/** True when the schema can be turned into per-property controls. */
export function isObjectSchema(schema) {
  return Boolean(schema && typeof schema === 'object' && schema.type === 'object'
    && schema.properties && typeof schema.properties === 'object' && Object.keys(schema.properties).length);
}

export class SchemaForm {
  /** @param {object} schema  an object schema (see isObjectSchema) */
  constructor(schema, idPrefix = 'in') {
    this.schema = schema;
    this.required = new Set(Array.isArray(schema.required) ? schema.required : []);
    this.controls = new Map(); // property → { kind, el, msg, prop }
    this.el = h('div', { class: 'schema-form', 'data-testid': 'schema-form' },
      Object.entries(schema.properties).map(([name, prop], i) => this.#field(name, prop || {}, `${idPrefix}-${i}`)));
  }

  #field(name, prop, id) {
    const required = this.required.has(name);
    const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== 'null') : prop.type;
    const hintText = [prop.description, prop.title && prop.title !== name ? null : null].filter(Boolean).join(' ');
    const msg = h('span', { class: 'field-error', id: `${id}-err`, role: 'alert', hidden: true });
    const common = { id, name, 'data-testid': `input-${name}`, 'aria-describedby': `${id}-hint ${id}-err`, 'aria-required': required ? 'true' : null };
    let kind;
    let el;
    if (Array.isArray(prop.enum)) {
      kind = 'enum';
      el = h('select', common,
        required ? null : h('option', { value: '' }, '—'),
        prop.enum.map((v, i) => h('option', { value: String(i) }, String(v))));
      if (prop.default !== undefined) {
        const i = prop.enum.findIndex((v) => JSON.stringify(v) === JSON.stringify(prop.default));
        if (i >= 0) el.value = String(i);
      }
    } else if (type === 'number' || type === 'integer') {
      kind = type;
      el = h('input', {
        ...common, type: 'number', inputmode: type === 'integer' ? 'numeric' : 'decimal',
        step: type === 'integer' ? '1' : 'any',
        min: prop.minimum ?? prop.exclusiveMinimum ?? null, max: prop.maximum ?? prop.exclusiveMaximum ?? null,
        value: prop.default ?? null,
      });
    } else if (type === 'boolean') {
      kind = 'boolean';
      el = h('input', { ...common, type: 'checkbox', class: 'checkbox' });
      el.checked = prop.default === true;
    } else if (type === 'array' && (prop.items?.type === 'string' || !prop.items)) {
      kind = 'list';
      el = h('input', { ...common, type: 'text', autocomplete: 'off', placeholder: 'comma, separated, values', value: Array.isArray(prop.default) ? prop.default.join(', ') : null });
    } else if (type === 'string') {
      kind = 'string';
      const short = Number(prop.maxLength) > 0 && Number(prop.maxLength) <= 120;
      el = short
        ? h('input', { ...common, type: 'text', autocomplete: 'off', maxlength: prop.maxLength ?? null, value: prop.default ?? null })
        : h('textarea', { ...common, rows: '4', maxlength: prop.maxLength ?? null });
      if (!short && prop.default !== undefined) el.value = String(prop.default);
    } else {
      kind = 'json';
      el = h('textarea', { ...common, rows: '3', class: 'mono', spellcheck: 'false', placeholder: 'JSON value' });
      if (prop.default !== undefined) el.value = JSON.stringify(prop.default);
    }
    this.controls.set(name, { kind, el, msg, prop });
    const label = h('label', { for: id }, prop.title || name,
      required ? h('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : h('span', { class: 'optional' }, ' (optional)'));
    const hint = h('span', { id: `${id}-hint`, class: 'hint' }, hintText || describeType(kind, prop));
    if (kind === 'boolean') {
      return h('div', { class: 'field field-check' }, h('div', { class: 'check-row' }, el, label), hint, msg);
    }
    return h('div', { class: 'field' }, label, el, hint, msg);
  }

  clearErrors() {
    for (const c of this.controls.values()) {
      c.msg.hidden = true;
      c.msg.textContent = '';
      c.el.removeAttribute('aria-invalid');
    }
  }

  /** Put `message` next to the control of JSON pointer `path` ("/text"); false if none matches. */
  showError(path, message) {
    const name = String(path || '').split('/').filter(Boolean)[0];
    const c = name !== undefined ? this.controls.get(name.replace(/~1/g, '/').replace(/~0/g, '~')) : null;
    if (!c) return false;
    c.msg.textContent = message;
    c.msg.hidden = false;
    c.el.setAttribute('aria-invalid', 'true');
    c.el.focus();
    return true;
  }

  /** {value} or {error, control} for the first problem found. */
  read() {
    this.clearErrors();
    const out = {};
    for (const [name, c] of this.controls) {
      const { kind, el, prop } = c;
      const fail = (text) => {
        this.showError(`/${name}`, text);
        return { error: `${prop.title || name}: ${text}`, control: el };
      };
      const required = this.required.has(name);
      if (kind === 'boolean') {
        out[name] = el.checked;
        continue;
      }
      const raw = el.value;
      if (raw.trim() === '') {
        if (required && kind !== 'string') return fail('this field is required.');
        if (required && kind === 'string') return fail('this field is required.');
        continue;
      }
      if (kind === 'enum') out[name] = prop.enum[Number(raw)];
      else if (kind === 'number' || kind === 'integer') {
        const n = Number(raw);
        if (!Number.isFinite(n)) return fail('enter a number.');
        if (kind === 'integer' && !Number.isInteger(n)) return fail('enter a whole number.');
        out[name] = n;
      } else if (kind === 'list') out[name] = parseList(raw);
      else if (kind === 'json') {
        try {
          out[name] = JSON.parse(raw);
        } catch {
          return fail('this is not valid JSON.');
        }
      } else out[name] = raw;
    }
    return { value: out };
  }
}

function describeType(kind, prop) {
  switch (kind) {
    case 'number':
    case 'integer': {
      const lo = prop.minimum ?? prop.exclusiveMinimum;
      const hi = prop.maximum ?? prop.exclusiveMaximum;
      const range = lo != null && hi != null ? ` from ${lo} to ${hi}` : lo != null ? `, at least ${lo}` : hi != null ? `, at most ${hi}` : '';
      return `${kind === 'integer' ? 'A whole number' : 'A number'}${range}.`;
    }
    case 'list': return 'A list: separate the values with commas.';
    case 'boolean': return 'Yes or no.';
    case 'enum': return 'Pick one.';
    case 'json': return 'Any JSON value.';
    default: return prop.maxLength ? `Text, at most ${prop.maxLength} characters.` : 'Text.';
  }
}
