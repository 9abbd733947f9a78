// The one way the portal talks to the API: fetch with the bearer token, RFC 9457
// problems turned into ApiError (acted on by `type`, never by the words), successful
// calls recorded for the inactivity timer, and any 401 ending the session.

import * as session from './session.js';

const BASE = '/api/v1';
const P = 'https://carerecord.example/problems/';

/** The API's problem types (adapters/http/src/problem.rs, `types`). */
export const PROBLEM = Object.freeze({
  INVALID_REQUEST: `${P}invalid-request`,
  UNAUTHENTICATED: `${P}unauthenticated`,
  BAD_CREDENTIALS: `${P}bad-credentials`,
  ACCOUNT_LOCKED: `${P}account-locked`,
  RATE_LIMITED: `${P}rate-limited`,
  NETWORK_REFUSED: `${P}network-not-allowed`,
  FORBIDDEN: `${P}forbidden`,
  PURPOSE_REFUSED: `${P}purpose-not-permitted`,
  PERMISSION_REQUIRED: `${P}permission-required`,
  NOT_FOUND: `${P}not-found`,
  CONFLICT: `${P}conflict`,
  METHOD_NOT_ALLOWED: `${P}method-not-allowed`,
  UNSUPPORTED_MEDIA_TYPE: `${P}unsupported-media-type`,
  INTERNAL: `${P}internal`,
  UNAVAILABLE: `${P}unavailable`,
  // Not the API's: the server could not be reached at all.
  NETWORK_ERROR: 'about:network-error',
});

/** A failed API call, carrying the problem the API answered with. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.type = problem.type || PROBLEM.INTERNAL;
    this.title = problem.title || '';
    this.detail = problem.detail || '';
    this.field = problem.field || null;
    this.retryAfter = retryAfter;
    // Set when the session ended because of this error: the screen is already gone.
    this.sessionEnded = false;
  }

  is(type) {
    return this.type === type;
  }
}

let onUnauthenticated = () => {};

/** What to do when the API says the session is not (or no longer) valid. */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

/**
 * Header values are bytes: fetch refuses characters above U+00FF and the server reads
 * the raw bytes as UTF-8. So a free-text value (an access reason) is sent as its UTF-8
 * bytes, one byte per character, with line breaks and control characters made spaces.
 */
export function headerText(text) {
  const clean = String(text).replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  let bytes = '';
  for (const b of new TextEncoder().encode(clean)) bytes += String.fromCharCode(b);
  return bytes;
}

/**
 * Calls the API. Options: method, body (sent as JSON), headers, signal, `as`
 * ('json' | 'text' | 'blob'), auth (send the token; default true), onHeaders (called
 * with a successful response's headers, e.g. to read its `Date`).
 * Resolves to the parsed body (null for 204); rejects with ApiError (or AbortError).
 */
export async function request(path, { method = 'GET', body, headers = {}, signal, as = 'json', auth = true, onHeaders } = {}) {
  const sentToken = auth ? session.token() : null;
  const h = new Headers(headers);
  if (sentToken) h.set('Authorization', `Bearer ${sentToken}`);
  if (body !== undefined) h.set('Content-Type', 'application/json');
  if (as === 'json' && !h.has('Accept')) h.set('Accept', 'application/json, application/problem+json');
  const startedAt = Date.now();
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { type: PROBLEM.NETWORK_ERROR, title: 'The Care Record cannot be reached' });
  }

  if (response.ok) {
    if (sentToken && sentToken === session.token()) session.touch(startedAt);
    if (onHeaders) onHeaders(response.headers);
    if (response.status === 204) return null;
    if (as === 'text') return response.text();
    if (as === 'blob') return response.blob();
    return response.json();
  }

  let problem = { title: response.statusText };
  try {
    const type = response.headers.get('Content-Type') || '';
    if (type.includes('json')) problem = await response.json();
  } catch (e) {
    if (e.name === 'AbortError') throw e;
  }
  if (!problem.type) problem.type = response.status >= 500 ? PROBLEM.INTERNAL : PROBLEM.INVALID_REQUEST;
  const retry = Number(response.headers.get('Retry-After'));
  const error = new ApiError(response.status, problem, Number.isFinite(retry) && retry > 0 ? retry : null);

  // A 401 for a token we sent ends the session — unless a newer session has begun since.
  if (response.status === 401 && sentToken && sentToken === session.token()) {
    error.sessionEnded = true;
    onUnauthenticated(error);
  }
  throw error;
}

/** Encodes one path segment. */
export function seg(value) {
  return encodeURIComponent(String(value));
}

/** Builds a query string from the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Whether an error is an abort (the screen was left): such errors are ignored. */
export function isAbort(e) {
  return e && e.name === 'AbortError';
}

/**
 * Words for a failed call, by problem type. `action` completes "Your role cannot …".
 */
export function describe(error, action = 'do this') {
  // Not "reload the page": a reload signs the user out (the token lives only in memory).
  if (!(error instanceof ApiError)) return 'Something went wrong in the portal. Try again; if it keeps happening, sign out and sign in again.';
  switch (error.type) {
    case PROBLEM.FORBIDDEN: return `Your role cannot ${action}.`;
    case PROBLEM.PURPOSE_REFUSED: return 'The Care Record may only be used for direct care.';
    case PROBLEM.NETWORK_REFUSED: return 'This computer’s network is not allowed to use the Care Record. Contact your IT service desk.';
    case PROBLEM.NOT_FOUND: return 'No record found.';
    case PROBLEM.PERMISSION_REQUIRED: return 'Permission or an emergency must be recorded to see this.';
    case PROBLEM.RATE_LIMITED: return `Too many requests. Wait ${error.retryAfter ? `${error.retryAfter} seconds` : 'a minute'} and try again.`;
    case PROBLEM.UNAUTHENTICATED: return 'Your session has ended. Sign in again.';
    case PROBLEM.UNAVAILABLE: return 'The Care Record is unavailable at the moment. Try again in a few minutes.';
    case PROBLEM.INTERNAL: return 'Something went wrong on the server. Try again; if it keeps happening, contact the service desk.';
    case PROBLEM.NETWORK_ERROR: return 'The Care Record cannot be reached. Check your connection and try again.';
    case PROBLEM.INVALID_REQUEST:
    case PROBLEM.CONFLICT:
      return sentence(error.detail || error.title || 'The request was not accepted.');
    default: return sentence(error.detail || error.title || 'The request failed.');
  }
}

/** Whether an error is a refusal for the role (shown as a "refused" state). */
export function isRefused(error) {
  return error instanceof ApiError && error.status === 403 && error.type !== PROBLEM.PERMISSION_REQUIRED;
}

/** The API's detail ("field: reason") as a sentence. */
export function sentence(text) {
  const t = String(text).trim();
  if (!t) return t;
  const s = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

/**
 * The reason part of an invalid-request detail ("postcode: is not a UK postcode"), as a
 * sentence; given the field's label, a reason that needs a subject gets it ("Postcode is
 * not a UK postcode.").
 */
export function fieldReason(error, fieldLabel) {
  const d = error.detail || '';
  const prefix = `${error.field}: `;
  const reason = error.field && d.startsWith(prefix) ? d.slice(prefix.length) : d;
  if (fieldLabel && /^(is|are|must|has|have|should|cannot|can't|does|do)\b/i.test(reason)) {
    return sentence(`${fieldLabel} ${reason}`);
  }
  return sentence(reason);
}
