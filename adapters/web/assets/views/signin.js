// Sign in: POST /api/v1/sessions. Refusals are told apart by problem type (wrong
// details, locked account, too many attempts, network not allowed).

import { el, field, setFieldError, clearFieldErrors, announce, setTitle } from '../dom.js';
import { request, ApiError, PROBLEM, describe, isAbort } from '../api.js';

function minutes(seconds) {
  const m = Math.max(1, Math.ceil(seconds / 60));
  return `${m} minute${m === 1 ? '' : 's'}`;
}

function refusal(error) {
  switch (error.type) {
    case PROBLEM.BAD_CREDENTIALS:
      return 'The user name or password is not right. Check them and try again.';
    case PROBLEM.ACCOUNT_LOCKED:
      return `This account is locked after too many failed sign-ins. Try again in ${error.retryAfter ? minutes(error.retryAfter) : 'a while'}, or ask your system manager.`;
    case PROBLEM.RATE_LIMITED:
      return `Too many sign-in attempts. Wait ${error.retryAfter ? `${error.retryAfter} seconds` : 'a minute'} and try again.`;
    default:
      return describe(error);
  }
}

export function render(view, { signal, notice, onSignedIn }) {
  setTitle('Sign in');
  const noticeEl = el('div', { id: 'signin-notice', class: 'notice', hidden: !notice },
    notice ? el('p', { text: notice }) : null);
  const errorEl = el('div', { id: 'signin-error', class: 'error-summary', role: 'alert', hidden: true });
  const username = field({
    id: 'signin-username', label: 'User name',
    attrs: { autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', class: 'input input-width-20' },
  });
  const password = field({
    id: 'signin-password', label: 'Password', type: 'password',
    attrs: { autocomplete: 'current-password', class: 'input input-width-20' },
  });
  const submit = el('button', { id: 'signin-submit', type: 'submit', class: 'button', text: 'Sign in' });
  const form = el('form', { id: 'signin-form', novalidate: true, 'aria-describedby': 'signin-intro' },
    username.wrapper, password.wrapper, submit);

  view.append(
    el('h1', { class: 'heading-xl', text: 'Sign in to Care Record' }),
    el('p', { id: 'signin-intro', class: 'lead', text: 'For approved health and social care professionals. Everything you open is recorded.' }),
    noticeEl,
    errorEl,
    form,
  );
  if (notice) announce(notice);

  function showError(text) {
    errorEl.replaceChildren(el('h2', { class: 'error-summary-title', text: 'You could not be signed in' }), el('p', { text }));
    errorEl.hidden = false;
  }

  let busy = false;
  form.addEventListener('submit', async (event) => {
    // form-action 'none': a form never really submits.
    event.preventDefault();
    if (busy) return;
    clearFieldErrors(form);
    errorEl.hidden = true;
    const name = username.input.value.trim();
    const pass = password.input.value;
    let invalid = false;
    if (!name) { setFieldError(username.input, 'Enter your user name'); invalid = true; }
    if (!pass) { setFieldError(password.input, 'Enter your password'); invalid = true; }
    if (invalid) {
      showError('Enter your user name and password.');
      (name ? password.input : username.input).focus();
      return;
    }
    busy = true;
    submit.textContent = 'Signing in…';
    submit.setAttribute('aria-disabled', 'true');
    const sentAt = Date.now();
    let serverDate = null;
    try {
      const dto = await request('/sessions', {
        method: 'POST', body: { username: name, password: pass }, auth: false, signal,
        onHeaders: (h) => { serverDate = h.get('Date'); },
      });
      password.input.value = '';
      onSignedIn(dto, sentAt, serverDate);
    } catch (e) {
      if (isAbort(e)) return;
      password.input.value = '';
      showError(e instanceof ApiError ? refusal(e) : describe(e));
      password.input.focus();
    } finally {
      busy = false;
      submit.textContent = 'Sign in';
      submit.removeAttribute('aria-disabled');
    }
  });
}
