// The signed-in session. The bearer token lives only in this module's variable: never
// in a URL, Web Storage, a cookie or IndexedDB — so a page reload means signing in
// again, which is intended (a shared computer keeps nothing).

let current = null;
let lastActivity = 0;

/**
 * When the session ends by its maximum length, on this browser's clock. `expires_at` is
 * on the server's clock, which may differ from ours: measured from the server's time at
 * sign-in (the response's `Date` header) it is a length of time, counted here from when
 * the sign-in was sent. `Date` has whole seconds, so the server's time is taken as the
 * end of that second: the local end can come a moment early, never late. Without the
 * header, the local clock is trusted.
 */
function localExpiry(expiresAt, sentAt, serverDate) {
  const end = expiresAt ? Date.parse(expiresAt) : NaN;
  if (!Number.isFinite(end)) return null;
  const serverNow = serverDate ? Date.parse(serverDate) : NaN;
  if (Number.isFinite(serverNow)) return sentAt + (end - (serverNow + 1000));
  return sentAt + (end - Date.now());
}

/**
 * Starts a session from the API's SessionDto; `at` is when the sign-in was sent and
 * `serverDate` the sign-in response's `Date` header (if any).
 */
export function begin(dto, at = Date.now(), serverDate = null) {
  current = {
    token: dto.token,
    user: dto.user,
    role: dto.role,
    organisation: dto.organisation,
    idleTimeoutSeconds: Number(dto.idle_timeout_seconds) || 900,
    // Local time (ms since the epoch), comparable with Date.now().
    expiresAt: localExpiry(dto.expires_at, at, serverDate),
  };
  lastActivity = at;
}

/** Forgets the session (and so the token). */
export function end() {
  current = null;
  lastActivity = 0;
}

export function isActive() {
  return current !== null;
}

export function token() {
  return current ? current.token : null;
}

/** Who is signed in (without the token). */
export function who() {
  if (!current) return null;
  const { user, role, organisation, idleTimeoutSeconds, expiresAt } = current;
  return { user, role, organisation, idleTimeoutSeconds, expiresAt };
}

/**
 * Records a successful API call. `at` is when the request was *sent*: the server's idle
 * timer restarted no earlier than that, so counting from it can only end the session
 * locally a moment early, never late.
 */
export function touch(at) {
  if (current && at > lastActivity) lastActivity = at;
}

/**
 * The server writes a session's last use at most every 15 s (or a quarter of a short
 * timeout: SESSION_TOUCH_GRANULARITY in the application), so after a request its idle
 * timer may have restarted up to that much earlier. Counting from there ends the session
 * locally a little early, never after the server has.
 */
function touchGranularityMs() {
  return Math.min(15_000, (current.idleTimeoutSeconds * 1000) / 4);
}

/** When the server may end the session if nothing else is sent (ms since the epoch). */
export function idleDeadline() {
  if (!current) return 0;
  return lastActivity + current.idleTimeoutSeconds * 1000 - touchGranularityMs();
}
