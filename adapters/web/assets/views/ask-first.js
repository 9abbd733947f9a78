// The "ask first" dialog: before anything of an ask_first person's record is shown, the
// professional asserts that the person gave permission or that it is an emergency, with
// a reason (kept in the audit and read by the DPO). Resolves to { kind, reason } or null.

import { el, button, setFieldError } from '../dom.js';
import { createDialog, openDialog, removeOnClose } from '../dialogs.js';

/** The wire values of X-Access-Basis (care_kernel::BasisKind). */
export const BASIS = Object.freeze({ permission: 'permission-given', emergency: 'emergency' });

export function askFirst({ error } = {}) {
  return new Promise((resolve) => {
    document.getElementById('ask-first')?.remove();
    const dialog = createDialog({ id: 'ask-first', title: 'This person asked to be asked first' });
    removeOnClose(dialog);
    const radio = (id, value, text, hint) => el('div', { class: 'radio' },
      el('input', { id, type: 'radio', name: 'basis', value, class: 'radio-input', 'aria-describedby': `${id}-hint` }),
      el('label', { for: id, class: 'radio-label', text }),
      el('p', { id: `${id}-hint`, class: 'hint radio-hint', text: hint }));
    // role=alert: announced when shown; the group points at it (aria-describedby) while shown.
    const legendError = el('p', { id: 'basis-error', class: 'field-error', role: 'alert', hidden: true });
    const fieldset = el('fieldset', { class: 'fieldset', id: 'basis-fieldset' },
      el('legend', { class: 'legend', text: 'Why are you opening this record?' }),
      legendError,
      radio('basis-permission', BASIS.permission, 'The person gave permission', 'They agreed, now, to you seeing their record.'),
      radio('basis-emergency', BASIS.emergency, 'Emergency', 'You cannot ask them and need the record to care for them now.'));
    const reason = el('textarea', {
      id: 'basis-reason', name: 'basis-reason', class: 'textarea', rows: '3', maxlength: '500', required: true,
      'aria-describedby': 'basis-reason-hint',
    });
    const reasonGroup = el('div', { class: 'form-group' },
      el('label', { for: 'basis-reason', class: 'label', text: 'Reason' }),
      el('p', { id: 'basis-reason-hint', class: 'hint', text: 'At least 3 characters. The data protection officer can read it.' }),
      el('p', { id: 'basis-reason-error', class: 'field-error', hidden: true }),
      reason);
    const submit = el('button', { id: 'basis-submit', type: 'submit', class: 'button', text: 'Open the record' });
    const cancel = button('Cancel', { id: 'basis-cancel', class: 'button button-secondary' });
    const form = el('form', { novalidate: true },
      el('p', { text: 'You may open the record only with the person’s permission or in an emergency. This access is recorded and flagged for review.' }),
      error ? el('p', { class: 'message message-error', role: 'alert', text: error }) : null,
      fieldset, reasonGroup,
      el('div', { class: 'button-group' }, submit, cancel));
    dialog.append(form);

    const radios = () => fieldset.querySelectorAll('input[name="basis"]');
    let answer = null;
    dialog.addEventListener('close', () => resolve(answer), { once: true });
    cancel.addEventListener('click', () => dialog.close());
    // Escape (the dialog's `cancel`) cancels too: nothing is opened.
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const chosen = form.querySelector('input[name="basis"]:checked');
      const text = reason.value.trim();
      legendError.hidden = true;
      legendError.textContent = '';
      fieldset.classList.remove('form-group-error');
      fieldset.removeAttribute('aria-describedby');
      for (const r of radios()) r.removeAttribute('aria-invalid');
      setFieldError(reason, null);
      reason.setAttribute('aria-describedby', 'basis-reason-hint');
      let first = null;
      if (!chosen) {
        legendError.hidden = false;
        legendError.textContent = 'Error: choose permission or emergency';
        fieldset.classList.add('form-group-error');
        fieldset.setAttribute('aria-describedby', 'basis-error');
        for (const r of radios()) r.setAttribute('aria-invalid', 'true');
        first = document.getElementById('basis-permission');
      }
      if ([...text].length < 3) {
        setFieldError(reason, 'Give a reason of at least 3 characters');
        first = first || reason;
      }
      if (first) {
        first.focus();
        return;
      }
      answer = { kind: chosen.value, reason: text };
      dialog.close();
    });
    openDialog(dialog, document.getElementById('basis-permission'));
  });
}
