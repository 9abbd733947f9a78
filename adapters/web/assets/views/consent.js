// The DPO's consent screen: find a person by NHS number (GET /consent/{nhs} and, to be
// sure who it is, /identity/{nhs}), see the level and its full history, and record a
// change (POST /consent/{nhs}/changes): opt out (for the person or by a representative),
// ask first, opt back in, or the status of a representative's evidence.

import { el, field, checkbox, setFieldError, clearFieldErrors, table, loading, messageArea, replace, announce } from '../dom.js';
import { request, seg, PROBLEM, describe, isAbort, isRefused, fieldReason } from '../api.js';
import { formatDateTime, formatNhs, nhsDigits, personName, label, dateElement } from '../format.js';

/** Which input shows an error the API names. */
const FIELD_INPUT = {
  reason: null, // depends on the form
  representative_name: 'rep-name',
  relationship: 'rep-relationship',
  lacks_capacity_confirmed: 'rep-lacks-capacity',
  authority_confirmed: 'rep-has-authority',
  evidence_reference: 'rep-evidence',
  evidence_status: 'evidence-status',
};

export function render(view, { signal }) {
  const nhs = field({
    id: 'consent-nhs', label: 'NHS number', hint: '10 digits, for example 943 476 5919',
    attrs: { inputmode: 'numeric', autocomplete: 'off', spellcheck: 'false', class: 'input input-width-10' },
  });
  const find = el('button', { id: 'consent-find', type: 'submit', class: 'button', text: 'Find' });
  const findForm = el('form', { id: 'consent-find-form', class: 'inline-form', novalidate: true }, nhs.wrapper, find);
  const message = messageArea('consent-message');
  const result = el('div', { class: 'consent-result' });

  view.append(
    el('h1', { class: 'heading-xl', text: 'Consent' }),
    el('p', { class: 'lead', text: 'Find a person’s consent to the shared care record, see its history and record a change.' }),
    findForm, message.area, result);

  // Each lookup has a number: only the latest one's answer is shown, so a slow answer
  // for an earlier search never replaces (or is taken for) a later one.
  let lookup = 0;
  // A change being sent: further submits are ignored until it is answered (a second
  // click would be refused as a conflict).
  let sending = false;

  findForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(findForm);
    message.clear();
    const digits = nhsDigits(nhs.input.value);
    if (!/^\d{10}$/.test(digits)) {
      setFieldError(nhs.input, 'An NHS number is 10 digits');
      message.show('error', 'An NHS number is 10 digits.');
      nhs.input.focus();
      return;
    }
    await load(digits);
  });

  /**
   * Looks up and shows a person's consent. Resolves to true when this lookup's answer is
   * the one on the screen (false if a later lookup overtook it, or it failed).
   */
  async function load(digits, done) {
    lookup += 1;
    const mine = lookup;
    const latest = () => mine === lookup;
    result.setAttribute('aria-busy', 'true');
    replace(result, loading('Finding consent…'));
    try {
      const [consent, identity] = await Promise.all([
        request(`/consent/${seg(digits)}`, { signal }),
        request(`/identity/${seg(digits)}`, { signal }).catch((e) => {
          if (e.type === PROBLEM.NOT_FOUND) return null;
          throw e;
        }),
      ]);
      if (!latest()) return false;
      show(consent, identity, digits, mine);
      if (done) message.show('success', done);
      return true;
    } catch (e) {
      if (isAbort(e) || e.sessionEnded || !latest()) return false;
      result.replaceChildren();
      if (e.type === PROBLEM.INVALID_REQUEST && e.field === 'nhs_number') {
        setFieldError(nhs.input, fieldReason(e, 'The NHS number'));
        nhs.input.focus();
      }
      message.show(isRefused(e) ? 'refused' : 'error', describe(e, 'manage consent'));
      return false;
    } finally {
      if (latest()) result.removeAttribute('aria-busy');
    }
  }

  /**
   * Shows one lookup's answer. `digits` (the NHS number looked up) and `shownBy` (the
   * lookup's number) are captured by the change forms built here: a change goes to the
   * person shown beside its form, never to whoever was searched for since.
   */
  function show(c, identity, digits, shownBy) {
    const target = { digits, shownBy };
    const who = identity
      ? el('dl', { class: 'summary-list summary-list-compact', id: 'consent-identity' },
        row('Name', personName(identity.given_name, identity.family_name)),
        row('Date of birth', identity.birth_date ? dateElement(identity.birth_date) : 'Not recorded'),
        row('NHS number', identity.nhs_number_formatted || formatNhs(identity.nhs_number)),
        row('Postcode', identity.postcode || 'Not recorded'),
        identity.date_of_death ? row('Date of death', dateElement(identity.date_of_death)) : null)
      : el('p', { class: 'message message-info', text: 'The care record holds no one with this NHS number yet. A consent decision can still be recorded: it applies when their record arrives.' });

    const rep = c.representative;
    const levelBox = el('div', { class: ['consent-level-box', `level-${c.level}`] },
      el('p', { id: 'consent-level', class: 'consent-level', tabindex: '-1' }, 'Current level: ', el('strong', { text: label(c.level) })),
      rep ? el('p', { class: 'consent-representative' },
        `Opted out by a representative: ${rep.name} (${rep.relationship}). Evidence ${rep.evidence_reference}: ${label(rep.evidence_status).toLowerCase()}.`) : null);

    const history = c.history || [];
    const historyBlock = history.length
      ? table({
        id: 'consent-history',
        caption: `Consent history (${history.length} change${history.length === 1 ? '' : 's'}, oldest first)`,
        columns: ['When', 'Change', 'From', 'To', 'Who', 'Why', 'Representative'].map((l) => ({ label: l })),
        rows: history.map((h) => ({
          cells: [
            el('time', { datetime: h.at, text: formatDateTime(h.at) }),
            h.kind === 'evidence_status' && h.evidence_status ? `Evidence ${label(h.evidence_status).toLowerCase()}` : label(h.kind),
            label(h.from), label(h.to),
            `${h.by} (${label(h.role)}, ${h.organisation})`,
            h.reason,
            h.representative ? `${h.representative.name}, ${h.representative.relationship}; evidence ${h.representative.evidence_reference}` : '—',
          ],
        })),
      }).wrap
      : el('p', { id: 'consent-history-empty', class: 'empty-state', text: 'No changes recorded: the person takes part by default.' });

    replace(result,
      el('h2', { class: 'heading-l', text: 'Person' }), who,
      el('h2', { class: 'heading-l', text: 'Consent' }), levelBox,
      el('h3', { class: 'heading-m', text: 'History' }), historyBlock,
      el('h2', { class: 'heading-l', text: 'Record a change' }),
      c.level !== 'opted_out' ? optOutForm(target) : null,
      c.level === 'participating' ? simpleForm(target, {
        id: 'askfirst', title: 'Set to ask first', button: 'Set to ask first', change: 'ask_first',
        hint: 'Professionals will have to confirm permission or an emergency each time they open the record.',
        done: 'Consent set to ask first.',
      }) : null,
      c.level !== 'participating' ? simpleForm(target, {
        id: 'optin', title: 'Opt back in', button: 'Opt back in', change: 'opt_in',
        hint: 'The record becomes available again for direct care.',
        done: 'The person has opted back in: their record is available again.',
      }) : null,
      rep ? evidenceForm(target, rep) : null);
    announce(`Consent found: ${label(c.level)}.`);
  }

  function row(term, value) {
    return el('div', { class: 'summary-row' }, el('dt', { class: 'summary-key', text: term }), el('dd', { class: 'summary-value' }, value));
  }

  /**
   * Sends a change for the person shown (`target`); shows field errors by the API's field
   * names. If another person was looked up meanwhile, the answer changes nothing on the
   * screen: it is about someone no longer shown.
   */
  async function send(target, body, reasonInput, submit, done) {
    if (sending) return;
    sending = true;
    submit.setAttribute('aria-disabled', 'true');
    const stillShown = () => target.shownBy === lookup;
    try {
      await request(`/consent/${seg(target.digits)}/changes`, { method: 'POST', body, signal });
      if (!stillShown()) return;
      if (await load(target.digits, done)) document.getElementById('consent-level')?.focus();
    } catch (e) {
      if (isAbort(e) || e.sessionEnded || !stillShown()) return;
      if (e.type === PROBLEM.INVALID_REQUEST && e.field) {
        const id = e.field === 'reason' ? reasonInput.id : FIELD_INPUT[e.field];
        const input = id && document.getElementById(id);
        if (input) {
          setFieldError(input, fieldReason(e, document.querySelector(`label[for="${input.id}"]`)?.textContent));
          input.focus();
        }
      }
      message.show(isRefused(e) ? 'refused' : 'error', describe(e, 'change consent'));
    } finally {
      sending = false;
      submit.removeAttribute('aria-disabled');
    }
  }

  function reasonField(id, hint) {
    return field({ id, label: 'Reason', type: 'textarea', hint, attrs: { rows: '3', required: true } });
  }

  function optOutForm(target) {
    const reason = reasonField('optout-reason', 'For example: “Opt-out form received from the person, 3 March”.');
    const byRep = checkbox({ id: 'optout-by-representative', label: 'Recorded by a representative (the person lacks capacity)' });
    const repName = field({ id: 'rep-name', label: 'Representative’s name', attrs: { autocomplete: 'off' } });
    const repRel = field({ id: 'rep-relationship', label: 'Relationship to the person', hint: 'For example: daughter, attorney, deputy', attrs: { autocomplete: 'off' } });
    const lacks = checkbox({ id: 'rep-lacks-capacity', label: 'The representative confirms the person lacks capacity to decide' });
    const authority = checkbox({ id: 'rep-has-authority', label: 'The representative confirms they have the authority to act for the person' });
    const evidence = field({ id: 'rep-evidence', label: 'Evidence reference', hint: 'For example the lasting power of attorney reference', attrs: { autocomplete: 'off' } });
    // Checkboxes get their own error slot so that setFieldError can show it.
    for (const box of [lacks, authority]) {
      box.wrapper.classList.add('form-group');
      box.wrapper.prepend(el('p', { id: `${box.input.id}-error`, class: 'field-error', hidden: true }));
    }
    const repFields = el('fieldset', { id: 'rep-fields', class: 'fieldset fieldset-conditional', hidden: true },
      el('legend', { class: 'legend', text: 'Representative' }),
      repName.wrapper, repRel.wrapper, lacks.wrapper, authority.wrapper, evidence.wrapper);
    byRep.input.setAttribute('aria-controls', 'rep-fields');
    byRep.input.setAttribute('aria-expanded', 'false');
    byRep.input.addEventListener('change', () => {
      repFields.hidden = !byRep.input.checked;
      byRep.input.setAttribute('aria-expanded', String(byRep.input.checked));
    });
    const submit = el('button', { id: 'optout-submit', type: 'submit', class: 'button button-warning', text: 'Record opt-out' });
    const form = el('form', { id: 'optout-form', class: 'change-form', novalidate: true, 'aria-labelledby': 'optout-title' },
      el('h3', { id: 'optout-title', class: 'heading-m', text: 'Record an opt-out' }),
      el('p', { class: 'hint', text: 'Once opted out, no one can see the record, not even in an emergency.' }),
      reason.wrapper, byRep.wrapper, repFields, submit);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (sending) return;
      clearFieldErrors(form);
      message.clear();
      const missing = [];
      const need = (input, text) => {
        const ok = input.type === 'checkbox' ? input.checked : input.value.trim() !== '';
        if (!ok) { setFieldError(input, text); missing.push(input); }
      };
      need(reason.input, 'Enter the reason');
      const body = { change: 'opt_out', reason: reason.input.value.trim() };
      if (byRep.input.checked) {
        need(repName.input, 'Enter the representative’s name');
        need(repRel.input, 'Enter their relationship to the person');
        need(lacks.input, 'The representative must confirm the person lacks capacity');
        need(authority.input, 'The representative must confirm their authority');
        need(evidence.input, 'Enter the evidence reference');
        body.representative = {
          name: repName.input.value.trim(),
          relationship: repRel.input.value.trim(),
          lacks_capacity_confirmed: lacks.input.checked,
          authority_confirmed: authority.input.checked,
          evidence_reference: evidence.input.value.trim(),
        };
      }
      if (missing.length) {
        message.show('error', 'Some details are missing: see the marked fields.');
        missing[0].focus();
        return;
      }
      await send(target, body, reason.input, submit, 'Opt-out recorded: the record is no longer available to anyone.');
    });
    return form;
  }

  /** Clears the form's errors; false (with the field marked) when no reason was given. */
  function reasonGiven(form, reason) {
    clearFieldErrors(form);
    message.clear();
    if (reason.input.value.trim()) return true;
    setFieldError(reason.input, 'Enter the reason');
    message.show('error', 'Enter the reason for the change.');
    reason.input.focus();
    return false;
  }

  function simpleForm(target, { id, title, button: text, change, hint, done }) {
    const reason = reasonField(`${id}-reason`);
    const submit = el('button', { id: `${id}-submit`, type: 'submit', class: 'button', text });
    const form = el('form', { id: `${id}-form`, class: 'change-form', novalidate: true, 'aria-labelledby': `${id}-title` },
      el('h3', { id: `${id}-title`, class: 'heading-m', text: title }),
      el('p', { class: 'hint', text: hint }),
      reason.wrapper, submit);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (sending || !reasonGiven(form, reason)) return;
      await send(target, { change, reason: reason.input.value.trim() }, reason.input, submit, done);
    });
    return form;
  }

  function evidenceForm(target, rep) {
    const select = el('select', { id: 'evidence-status', name: 'evidence-status', class: 'select' },
      ['requested', 'verified'].map((v) => el('option', { value: v, text: label(v), selected: v === rep.evidence_status })));
    const statusGroup = el('div', { class: 'form-group' },
      el('label', { for: 'evidence-status', class: 'label', text: 'Evidence status' }),
      el('p', { id: 'evidence-status-error', class: 'field-error', hidden: true }), select);
    const reason = reasonField('evidence-reason');
    const submit = el('button', { id: 'evidence-submit', type: 'submit', class: 'button button-secondary', text: 'Update evidence status' });
    const form = el('form', { id: 'evidence-form', class: 'change-form', novalidate: true, 'aria-labelledby': 'evidence-title' },
      el('h3', { id: 'evidence-title', class: 'heading-m', text: 'Representative’s evidence' }),
      el('p', { class: 'hint', text: `Evidence ${rep.evidence_reference} is ${label(rep.evidence_status).toLowerCase()}.` }),
      statusGroup, reason.wrapper, submit);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (sending || !reasonGiven(form, reason)) return;
      await send(target, { change: 'evidence_status', evidence_status: select.value, reason: reason.input.value.trim() },
        reason.input, submit, `Evidence marked ${label(select.value).toLowerCase()}.`);
    });
    return form;
  }
}

