// The System Manager's users: list (GET /users), create (POST /users), disable and
// enable, and reset a password (PUT /users/{name}/password). Password policy refusals
// come back from the API as invalid-request problems naming `password`: shown as given.

import { el, field, setFieldError, clearFieldErrors, table, loading, messageArea, replace, button } from '../dom.js';
import { request, seg, PROBLEM, describe, isAbort, isRefused, fieldReason } from '../api.js';
import { formatDateTime, label } from '../format.js';
import { createDialog, openDialog, removeOnClose } from '../dialogs.js';
import { failure } from './failure.js';

const ROLES = ['gp', 'clinician', 'social_worker', 'pharmacist', 'system_manager', 'dpo', 'auditor', 'feed'];
const FIELD_INPUT = {
  username: 'user-username', display_name: 'user-display-name', organisation: 'user-organisation',
  role: 'user-role', password: 'user-password', feed_source: 'user-feed-source',
  // The API names a feed source it does not know as `source`.
  source: 'user-feed-source',
};

export function render(view, { signal, user: me }) {
  const message = messageArea('users-message');
  const list = el('div', { class: 'users-list' });
  view.append(
    el('h1', { class: 'heading-xl', text: 'Users' }),
    message.area,
    el('h2', { class: 'heading-l', text: 'Accounts' }),
    list,
    createForm());

  load();

  async function load() {
    list.setAttribute('aria-busy', 'true');
    replace(list, loading('Loading users…'));
    try {
      const users = await request('/users', { signal });
      showUsers(users);
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      replace(list, failure(e, 'manage users'), isRefused(e) ? null : button('Try again', { on: { click: load } }));
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  function showUsers(users) {
    if (users.length === 0) {
      replace(list, el('p', { id: 'users-empty', class: 'empty-state', text: 'There are no users.' }));
      return;
    }
    const sorted = [...users].sort((a, b) => a.username.localeCompare(b.username));
    replace(list, table({
      id: 'users-table',
      caption: `${users.length} user account${users.length === 1 ? '' : 's'}`,
      columns: ['User name', 'Name', 'Organisation', 'Role', 'Status', 'Created', 'Actions'].map((l) => ({ label: l })),
      rows: sorted.map((u) => {
        const nameId = `user-${u.username.replace(/[^A-Za-z0-9_-]/g, '_')}`;
        const actions = el('div', { class: 'button-group button-group-tight' },
          u.disabled
            ? button('Enable', { class: 'button button-small button-secondary user-enable', 'aria-describedby': nameId, on: { click: () => setEnabled(u, true) } })
            : button('Disable', {
              class: 'button button-small button-warning user-disable', 'aria-describedby': nameId,
              // Disabling yourself would end this session at once.
              disabled: u.username === me,
              on: { click: () => setEnabled(u, false) },
            }),
          button('Reset password', { class: 'button button-small button-secondary user-reset', 'aria-describedby': nameId, on: { click: () => resetPassword(u) } }));
        return {
          attrs: { 'data-username': u.username, class: u.disabled ? 'row-disabled' : null },
          cells: [
            el('span', { id: nameId, text: u.username }),
            u.display_name,
            u.organisation,
            `${label(u.role)}${u.feed_source ? ` (${u.feed_source})` : ''}`,
            el('span', { class: ['tag', u.disabled ? 'tag-disabled' : 'tag-active'], text: u.disabled ? 'Disabled' : 'Active' }),
            el('time', { datetime: u.created_at, text: formatDateTime(u.created_at) }),
            actions,
          ],
        };
      }),
    }).wrap);
  }

  async function setEnabled(u, enable) {
    message.clear();
    try {
      await request(`/users/${seg(u.username)}/${enable ? 'enable' : 'disable'}`, { method: 'POST', signal });
      await load();
      message.show('success', enable ? `${u.username} is enabled and can sign in.` : `${u.username} is disabled: they cannot sign in and their sessions have ended.`);
      // The row was rebuilt: keep keyboard users where they were.
      document.querySelector(`tr[data-username="${CSS.escape(u.username)}"] button`)?.focus();
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      message.show(isRefused(e) ? 'refused' : 'error', describe(e, 'manage users'));
    }
  }

  function resetPassword(u) {
    const dialog = createDialog({ id: 'reset-dialog', title: `Reset the password of ${u.username}` });
    removeOnClose(dialog);
    const pw = field({
      id: 'reset-password', label: 'New password', type: 'password',
      hint: 'At least 12 characters, not a common password and not containing the user name. Their sessions end.',
      attrs: { autocomplete: 'new-password', class: 'input input-width-20' },
    });
    const errors = el('div', { id: 'reset-error', class: 'message-area' });
    const submit = el('button', { id: 'reset-submit', type: 'submit', class: 'button', text: 'Set password' });
    const cancel = button('Cancel', { id: 'reset-cancel', class: 'button button-secondary', on: { click: () => dialog.close() } });
    const form = el('form', { novalidate: true }, errors, pw.wrapper, el('div', { class: 'button-group' }, submit, cancel));
    dialog.append(form);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      setFieldError(pw.input, null);
      errors.replaceChildren();
      if (!pw.input.value) {
        setFieldError(pw.input, 'Enter the new password');
        pw.input.focus();
        return;
      }
      try {
        await request(`/users/${seg(u.username)}/password`, { method: 'PUT', body: { password: pw.input.value }, signal });
        dialog.close();
        message.show('success', `The password of ${u.username} has been reset; their sessions have ended.`);
      } catch (e) {
        if (isAbort(e) || e.sessionEnded) return;
        const text = e.type === PROBLEM.INVALID_REQUEST && e.field === 'password' ? fieldReason(e, 'The password') : describe(e, 'reset passwords');
        if (e.type === PROBLEM.INVALID_REQUEST && e.field === 'password') setFieldError(pw.input, text);
        errors.replaceChildren(el('p', { class: 'message message-error', role: 'alert', text }));
        pw.input.focus();
      }
    });
    openDialog(dialog, pw.input);
  }

  function createForm() {
    const username = field({ id: 'user-username', label: 'User name', hint: 'Letters, digits and - _ . @', attrs: { autocomplete: 'off', spellcheck: 'false', class: 'input input-width-20' } });
    const display = field({ id: 'user-display-name', label: 'Full name', attrs: { autocomplete: 'off', class: 'input input-width-20' } });
    const orgList = el('datalist', { id: 'organisation-list' });
    const org = field({ id: 'user-organisation', label: 'Organisation code', hint: 'For example DEMO-GP', attrs: { autocomplete: 'off', spellcheck: 'false', list: 'organisation-list', class: 'input input-width-20' } });
    const roleSelect = el('select', { id: 'user-role', name: 'user-role', class: 'select' },
      el('option', { value: '', text: 'Choose a role' }),
      ROLES.map((r) => el('option', { value: r, text: label(r) })));
    const role = field({ id: 'user-role', label: 'Role', control: roleSelect });
    const feedSource = field({ id: 'user-feed-source', label: 'Feed source', hint: 'The source this feed account submits for', attrs: { autocomplete: 'off', class: 'input input-width-20' } });
    feedSource.wrapper.hidden = true;
    roleSelect.addEventListener('change', () => { feedSource.wrapper.hidden = roleSelect.value !== 'feed'; });
    const password = field({
      id: 'user-password', label: 'Initial password', type: 'password',
      hint: 'At least 12 characters, not a common password and not containing the user name.',
      attrs: { autocomplete: 'new-password', class: 'input input-width-20' },
    });
    const submit = el('button', { id: 'user-create-submit', type: 'submit', class: 'button', text: 'Create user' });
    const form = el('form', { id: 'user-create-form', class: 'change-form', novalidate: true, 'aria-labelledby': 'user-create-title' },
      el('h2', { id: 'user-create-title', class: 'heading-l', text: 'Create a user' }),
      username.wrapper, display.wrapper, org.wrapper, orgList, role.wrapper, feedSource.wrapper, password.wrapper, submit);

    // Suggest the organisations that exist (a convenience: the field accepts any code).
    request('/organisations', { signal }).then((orgs) => {
      replace(orgList, orgs.map((o) => el('option', { value: o.id, text: o.name })));
    }).catch(() => {});

    let busy = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy) return;
      clearFieldErrors(form);
      message.clear();
      const missing = [];
      for (const [f, text] of [[username, 'Enter a user name'], [display, 'Enter the person’s name'], [org, 'Enter the organisation code'],
        [role, 'Choose a role'], [password, 'Enter an initial password']]) {
        if (!f.input.value.trim()) { setFieldError(f.input, text); missing.push(f.input); }
      }
      if (roleSelect.value === 'feed' && !feedSource.input.value.trim()) {
        setFieldError(feedSource.input, 'Enter the feed source');
        missing.push(feedSource.input);
      }
      if (missing.length) {
        message.show('error', 'Some details are missing: see the marked fields.');
        missing[0].focus();
        return;
      }
      busy = true;
      submit.setAttribute('aria-disabled', 'true');
      try {
        const created = await request('/users', {
          method: 'POST', signal,
          body: {
            username: username.input.value.trim(),
            display_name: display.input.value.trim(),
            organisation: org.input.value.trim(),
            role: roleSelect.value,
            feed_source: roleSelect.value === 'feed' ? feedSource.input.value.trim() : undefined,
            password: password.input.value,
          },
        });
        form.reset();
        feedSource.wrapper.hidden = true;
        await load();
        message.show('success', `User ${created.username} created.`);
      } catch (e) {
        if (isAbort(e) || e.sessionEnded) return;
        if (e.type === PROBLEM.INVALID_REQUEST && FIELD_INPUT[e.field]) {
          const input = document.getElementById(FIELD_INPUT[e.field]);
          const text = fieldReason(e, document.querySelector(`label[for="${input.id}"]`)?.textContent);
          setFieldError(input, text);
          input.focus();
          message.show('error', text);
        } else {
          message.show(isRefused(e) ? 'refused' : 'error', describe(e, 'create users'));
        }
      } finally {
        busy = false;
        submit.removeAttribute('aria-disabled');
      }
    });
    return form;
  }
}
