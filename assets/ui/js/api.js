// The ZeroState JSON API (/api/v1): the session token, one function per route the UI uses.
//
// Every failure (HTTP error, malformed response, network outage) is thrown as an ApiError whose
// `message` is fit to show to a person; `code` is the server's stable error code and `path` the
// JSON pointer it named, if any. The server's error body is {"error":{"code","message","path?"}}.
// A 401 from an authenticated call also reaches the handler set with onUnauthorized().

const TOKEN_KEY = 'zs_token';
const BASE = '/api/v1';

// ----------------------------------------------------------------- token --
// localStorage can throw (e.g. storage disabled); fall back to memory so the
// session still works for this page load.
let memoryToken = null;

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || memoryToken;
  } catch {
    return memoryToken;
  }
}

export function setToken(token) {
  memoryToken = token;
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    /* memory only */
  }
}

export function clearToken() {
  memoryToken = null;
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* nothing stored */
  }
}

// ----------------------------------------------------------------- errors --

export class ApiError extends Error {
  /**
   * @param {string} message  human-readable text
   * @param {{status?: number, code?: string}} info  status 0 = no response
   */
  constructor(message, { status = 0, code = 'network_error', path = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.path = path;
  }
}

// Called (once per failing request) when an authenticated call answers 401 for the token that
// is still the current one.
let unauthorizedHandler = () => {};
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

function fallbackMessage(status) {
  switch (status) {
    case 400: return 'The server rejected the request as invalid.';
    case 401: return 'Your session has expired. Please log in again.';
    case 403: return 'You are not allowed to do that.';
    case 404: return 'Not found.';
    case 409: return 'That conflicts with something that already exists.';
    case 413: return 'The upload is too large for the server.';
    case 415: return 'The server does not accept this kind of content.';
    case 422: return 'Some of the values are not valid.';
    case 429: return 'Too many requests — please wait a moment and try again.';
    case 500: return 'The server hit an internal error. Please try again.';
    case 502:
    case 503:
    case 504: return 'The server is unavailable right now. Please try again shortly.';
    default: return `The request failed (HTTP ${status}).`;
  }
}

// ---------------------------------------------------------------- request --

/**
 * @param {string} method
 * @param {string} path     path below /api/v1, e.g. "/tasks"
 * @param {object} [opts]
 * @param {any}    [opts.json]   body sent as JSON
 * @param {FormData} [opts.form] body sent as multipart/form-data
 * @param {boolean} [opts.auth=true] send the bearer token / treat 401 as expiry
 */
async function request(method, path, { json, form, auth = true, headers: extra } = {}) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  let body;
  if (form) {
    body = form; // the browser sets the multipart boundary header itself
  } else if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const sentToken = auth ? getToken() : null;
  if (sentToken) headers.Authorization = `Bearer ${sentToken}`;

  let res;
  try {
    res = await fetch(BASE + path, { method, headers, body, credentials: 'same-origin' });
  } catch {
    throw new ApiError('Cannot reach the server. Check your network connection and try again.');
  }

  let text = '';
  try {
    text = await res.text();
  } catch {
    throw new ApiError('The connection dropped while reading the server response.');
  }
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text; // e.g. a proxy's HTML error page
    }
  }

  if (!res.ok) {
    const e = data && typeof data === 'object' && data.error && typeof data.error === 'object'
      ? data.error
      : null;
    const message = (e && typeof e.message === 'string' && e.message) || fallbackMessage(res.status);
    const err = new ApiError(message, {
      status: res.status,
      code: (e && e.code) || `http_${res.status}`,
      path: (e && typeof e.path === 'string' && e.path) || null,
    });
    // Login/register answer 401 for bad credentials; that is not an expiry. A 401 for a token
    // that is no longer the current one (a request that raced a sign-in or a password change)
    // says nothing about the current session.
    if (res.status === 401 && auth && sentToken && sentToken === getToken()) unauthorizedHandler(err);
    throw err;
  }
  return data;
}

function query(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `?${s}` : '';
}

// ------------------------------------------------------------- endpoints --

const enc = encodeURIComponent;

// users
export const register = ({ email, password, full_name }) =>
  request('POST', '/users/register', { json: { email, password, full_name }, auth: false });
export const login = ({ email, password }) =>
  request('POST', '/users/login', { json: { email, password }, auth: false });
/**
 * End the session `token` on the server: it stops working at once. Sent without the 401
 * handler: a token the server no longer takes is already signed out.
 */
export const logout = (token) =>
  request('POST', '/users/logout', { auth: false, headers: { Authorization: `Bearer ${token}` } });
export const me = () => request('GET', '/users/me');
export const updateMe = ({ full_name }) => request('PATCH', '/users/me', { json: { full_name } });
export const changePassword = ({ current_password, new_password }) =>
  request('POST', '/users/me/password', { json: { current_password, new_password } });

// API keys
export const listApiKeys = () => request('GET', '/users/me/api-keys');
export const createApiKey = ({ name, scopes, expires_in_days }) =>
  request('POST', '/users/me/api-keys', { json: { name, scopes, ...(expires_in_days ? { expires_in_days } : {}) } });
export const revokeApiKey = (id) => request('DELETE', `/users/me/api-keys/${enc(id)}`);

// agents
/** params: q, capability, min_price, max_price, min_rating, status, owner, sort, limit, offset */
export const listAgents = (params = {}) => request('GET', `/agents${query(params)}`);
export const getAgent = (id) => request('GET', `/agents/${enc(id)}`);
export const agentVersions = (id) => request('GET', `/agents/${enc(id)}/versions`);
export const agentReviews = (id, { limit, offset } = {}) =>
  request('GET', `/agents/${enc(id)}/reviews${query({ limit, offset })}`);
export const postReview = (id, { rating, comment }) =>
  request('POST', `/agents/${enc(id)}/reviews`, { json: { rating, comment } });
export const validateInput = (id, input) =>
  request('POST', `/agents/${enc(id)}/validate-input`, { json: { input } });
export const patchAgent = (id, patch) => request('PATCH', `/agents/${enc(id)}`, { json: patch });
export const deleteAgent = (id) => request('DELETE', `/agents/${enc(id)}`);
export const rollbackAgent = (id, version) =>
  request('POST', `/agents/${enc(id)}/rollback`, { json: { version } });
export const deleteAgentVersion = (id, version) =>
  request('DELETE', `/agents/${enc(id)}/binary${query({ version })}`);
/** formData fields: wasm_binary (File), version */
export const addAgentVersion = (id, formData) =>
  request('POST', `/agents/${enc(id)}/binary`, { form: formData });
/** formData fields: wasm_binary (File), name, description, version, capabilities, price, manifest? */
export const uploadAgent = (formData) => request('POST', '/agents/upload', { form: formData });

// tasks
export const submitTask = (body) => request('POST', '/tasks/submit', { json: body });
/** params: status, priority, agent_id, limit, cursor */
export const listTasks = (params = {}) => request('GET', `/tasks${query(params)}`);
export const getTask = (id) => request('GET', `/tasks/${enc(id)}`);
export const cancelTask = (id) => request('POST', `/tasks/${enc(id)}/cancel`);
export const taskStats = () => request('GET', '/tasks/stats');

// analytics
export const analytics = ({ window, scope } = {}) => request('GET', `/analytics${query({ window, scope })}`);

/** WebSocket URL for live updates (the token travels as a query parameter). */
export function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}${BASE}/ws/connect?token=${enc(getToken() || '')}`;
}
