// Client-side routes on the History API: which page a path shows, and moving between pages
// without a reload. Links stay real <a href> elements; a plain left click on a same-origin
// link is turned into navigate(), anything else (middle click, Ctrl/⌘, target) is left to the
// browser. It never renders anything itself: start() hands every change to its callback.

let routes = [];
let onChange = () => {};

/**
 * @param {Array<{path: string, page: object}>} table  paths like "/agents/:id"
 * @param {(match: {page: object, params: object, path: string, query: URLSearchParams}) => void} callback
 */
export function start(table, callback) {
  routes = table.map((r) => ({ ...r, ...compile(r.path) }));
  onChange = callback;
  window.addEventListener('popstate', dispatch);
  document.addEventListener('click', interceptLink);
  dispatch();
}

function compile(path) {
  const keys = [];
  const source = path
    .split('/')
    .map((part) => {
      if (part.startsWith(':')) {
        keys.push(part.slice(1));
        return '([^/]+)';
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { regex: new RegExp(`^${source}/?$`), keys };
}

/** The route of a pathname; null when nothing matches. */
export function match(pathname) {
  for (const r of routes) {
    const m = r.regex.exec(pathname);
    if (!m) continue;
    const params = {};
    r.keys.forEach((k, i) => {
      try {
        params[k] = decodeURIComponent(m[i + 1]);
      } catch {
        params[k] = m[i + 1];
      }
    });
    return { page: r.page, params, route: r };
  }
  return null;
}

function dispatch() {
  const found = match(location.pathname);
  onChange({
    page: found?.page || null,
    params: found?.params || {},
    path: location.pathname,
    query: new URLSearchParams(location.search),
  });
}

/** Go to an app URL ("/tasks?status=failed"); replace keeps the history entry. */
export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  const same = target.pathname === location.pathname && target.search === location.search;
  if (replace || same) history.replaceState(null, '', target.pathname + target.search + target.hash);
  else history.pushState(null, '', target.pathname + target.search + target.hash);
  dispatch();
}

/**
 * Mirror a page's state in the query string without re-rendering it (the back button then
 * brings the previous state back through a normal dispatch).
 */
export function setQuery(params, { replace = false } = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '' && v !== false) qs.set(k, String(v));
  }
  const search = qs.toString() ? `?${qs}` : '';
  if (search === location.search) return;
  const url = location.pathname + search;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
}

function interceptLink(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest?.('a[href]');
  if (!a || a.target || a.hasAttribute('download') || a.dataset.external !== undefined) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  if (url.pathname.startsWith('/api/') || /\.[a-z0-9]+$/i.test(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}
