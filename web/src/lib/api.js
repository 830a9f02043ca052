// Calls to the issuer that served the page (same origin only). Every
// error answer is an RFC 9457 problem document; it is raised as a
// ProblemError whose `name` is the problem type's last segment.

export class ProblemError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.type = String(problem.type || '').split('/').pop() || 'network';
  }

  /** For `invalid-input`: the field the detail names (`field: rule`). */
  field() {
    const detail = this.problem.detail || '';
    const colon = detail.indexOf(':');
    return colon > 0 ? detail.slice(0, colon) : null;
  }

  /** For `invalid-input`: the rule the field broke, in the API's words. */
  rule() {
    const detail = this.problem.detail || '';
    const colon = detail.indexOf(':');
    return colon > 0 ? detail.slice(colon + 1).trim() : detail;
  }
}

async function raise(response) {
  let problem = { title: response.statusText };
  try {
    problem = await response.json();
  } catch {
    // Not a problem document: keep the status line.
  }
  throw new ProblemError(response.status, problem);
}

export async function request(method, path, { json, body, contentType, token } = {}) {
  const headers = {};
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (contentType) {
    headers['Content-Type'] = contentType;
  }
  // The session token travels in a header only, never in a URL.
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  } catch {
    throw new ProblemError(0, { type: 'network', title: 'offline' });
  }
  if (!response.ok) await raise(response);
  return response;
}

export async function getJson(path) {
  return (await request('GET', path)).json();
}

export async function getBytes(path) {
  return new Uint8Array(await (await request('GET', path)).arrayBuffer());
}

export async function getText(path) {
  return (await request('GET', path)).text();
}
