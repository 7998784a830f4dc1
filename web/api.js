// The daemon's REST API (/api/v1): JSON in and out, errors in the one shape
// {"error": {"code", "message", "field"}}. Mutating routes need the bearer
// token when the daemon has one: a 401 asks for it (kept in sessionStorage,
// so it lasts as long as the tab) and the request is tried again once.

const TOKEN_KEY = 'dacld.token';

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (t) => (t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY)),
};

let askToken = async () => null; // set by the page: opens the token dialog
export function setTokenPrompt(fn) {
  askToken = fn;
}

async function once(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const t = token.get();
  if (t && method !== 'GET') headers.Authorization = `Bearer ${t}`;
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code || 'http_error', e.message || `${res.status} ${res.statusText}`, e.field);
  }
  return data;
}

// One API call; on 401 asks for the token (up to twice) and retries.
export async function api(path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(path, opts);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || attempt >= 2) throw e;
      const t = await askToken(attempt > 0 || token.get() !== '');
      if (!t) throw new ApiError(401, 'unauthorized', 'This action needs the daemon’s access token.', null);
      token.set(t);
    }
  }
}

export const FINAL = new Set(['succeeded', 'failed', 'canceled']);
export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled', 'interrupted'];
