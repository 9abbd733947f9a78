// Inactivity: the server ends a session after idle_timeout_seconds without a request.
// The portal counts from the last successful call, warns shortly before the end with a
// live countdown, and ends the session locally when the time has passed.

import { el, button, announce } from './dom.js';
import { createDialog, openDialog } from './dialogs.js';
import { request, describe, isAbort } from './api.js';
import * as session from './session.js';

let timer = null;
let handlers = null;
let dialog = null;
let countdown = null;
let errorArea = null;
let stayButton = null;
let staying = false;

/** How long before the end to warn: 60 s, or a quarter of a short timeout. */
function warningLeadMs() {
  const timeoutMs = session.who().idleTimeoutSeconds * 1000;
  return Math.min(60_000, timeoutMs * 0.25);
}

function build() {
  dialog = createDialog({ id: 'idle-warning', title: 'Are you still there?', className: 'dialog-warning' });
  const textId = 'idle-warning-text';
  dialog.setAttribute('aria-describedby', textId);
  countdown = el('span', { class: 'countdown', role: 'timer' });
  errorArea = el('div', { class: 'message-area' });
  stayButton = button('Stay signed in', { id: 'idle-stay', class: 'button' });
  const signOutButton = button('Sign out', { id: 'idle-signout', class: 'button button-secondary' });
  dialog.append(
    el('p', { id: textId }, 'For your security you will be signed out in ', countdown,
      ' because nothing has been done for a while.'),
    errorArea,
    el('div', { class: 'button-group' }, stayButton, signOutButton),
  );
  stayButton.addEventListener('click', stay);
  signOutButton.addEventListener('click', () => {
    dialog.close();
    handlers.onSignOut();
  });
  // Escape means the user is here: treat it as "Stay signed in" rather than leaving
  // the warning unanswered.
  dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    stay();
  });
}

async function stay() {
  if (staying) return;
  staying = true;
  errorArea.replaceChildren();
  try {
    // Any authenticated request restarts the server's timer; this one changes nothing.
    await request('/sessions/current');
    if (dialog.open) dialog.close();
    announce('You are still signed in.');
  } catch (e) {
    if (!isAbort(e) && !e.sessionEnded) {
      errorArea.append(el('p', { class: 'message message-error', role: 'alert', text: describe(e) }));
    }
  } finally {
    staying = false;
  }
}

function secondsText(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s >= 60) {
    const m = Math.floor(s / 60);
    const r = s % 60;
    return `${m} minute${m === 1 ? '' : 's'}${r ? ` ${r} second${r === 1 ? '' : 's'}` : ''}`;
  }
  return `${s} second${s === 1 ? '' : 's'}`;
}

function tick() {
  if (!session.isActive()) {
    stopIdleWatch();
    return;
  }
  const now = Date.now();
  // Already on this browser's clock (session.js converts the server's expires_at).
  const { expiresAt } = session.who();
  if (expiresAt && now >= expiresAt) {
    handlers.onExpire('lifetime');
    return;
  }
  const left = session.idleDeadline() - now;
  if (left <= 0) {
    handlers.onExpire('inactivity');
    return;
  }
  if (left <= warningLeadMs()) {
    countdown.textContent = secondsText(left);
    if (!dialog.open) {
      errorArea.replaceChildren();
      openDialog(dialog, stayButton);
    }
  } else if (dialog.open) {
    // A call made meanwhile (another tab of work finishing) restarted the timer.
    dialog.close();
  }
}

/** Starts watching the session. handlers: onExpire(reason), onSignOut(). */
export function startIdleWatch(h) {
  handlers = h;
  if (!dialog) build();
  stopIdleWatch();
  timer = window.setInterval(tick, 500);
  // Timers are throttled in background tabs: check again as soon as the tab is back.
  document.addEventListener('visibilitychange', tick);
}

/** Stops watching (the session ended) and closes the warning. */
export function stopIdleWatch() {
  if (timer !== null) window.clearInterval(timer);
  timer = null;
  document.removeEventListener('visibilitychange', tick);
  if (dialog && dialog.open) dialog.close();
}
