// Search: GET /api/v1/people by NHS number, by family name and date of birth, or by
// postcode. The last search is kept in memory so that coming back from a record shows it
// again; nothing of it goes into the address or title.

import { el, field, checkbox, setFieldError, clearFieldErrors, table, loading, announce, replace } from '../dom.js';
import { request, query, PROBLEM, describe, isAbort, isRefused, fieldReason } from '../api.js';
import { formatDate, formatNhs, nhsDigits, listName, dateElement } from '../format.js';
import { memory } from '../memory.js';

/** Which input shows an error the API names by its query parameter. */
const FIELD_INPUT = {
  nhs_number: 'search-nhs',
  family: 'search-family',
  birth_date: 'search-birth-date',
  postcode: 'search-postcode',
};

export function render(view, { signal, navigate }) {
  const nhs = field({
    id: 'search-nhs', label: 'NHS number', hint: '10 digits, for example 943 476 5919',
    attrs: { inputmode: 'numeric', autocomplete: 'off', spellcheck: 'false', class: 'input input-width-10' },
  });
  const family = field({
    id: 'search-family', label: 'Family name', hint: 'The start of the name is enough',
    attrs: { autocomplete: 'off', spellcheck: 'false', class: 'input input-width-20' },
  });
  const birth = field({ id: 'search-birth-date', label: 'Date of birth', type: 'date', attrs: { class: 'input input-width-10' } });
  const postcode = field({
    id: 'search-postcode', label: 'Postcode',
    attrs: { autocomplete: 'off', spellcheck: 'false', autocapitalize: 'characters', class: 'input input-width-10' },
  });
  const deceased = checkbox({ id: 'search-include-deceased', label: 'Include people who have died' });
  const submit = el('button', { id: 'search-submit', type: 'submit', class: 'button', text: 'Search' });
  const errorEl = el('div', { id: 'search-error', class: 'error-summary', role: 'alert', hidden: true });
  const results = el('div', { class: 'results', 'aria-live': 'off' });

  const form = el('form', { id: 'search-form', class: 'search-form', novalidate: true },
    el('p', { class: 'hint', text: 'Search one way: by NHS number, by family name and date of birth, or by postcode.' }),
    el('div', { class: 'search-ways' },
      el('fieldset', { class: 'fieldset' }, el('legend', { class: 'legend', text: 'By NHS number' }), nhs.wrapper),
      el('fieldset', { class: 'fieldset' }, el('legend', { class: 'legend', text: 'By family name and date of birth' }),
        family.wrapper, birth.wrapper),
      el('fieldset', { class: 'fieldset' }, el('legend', { class: 'legend', text: 'By postcode' }), postcode.wrapper)),
    deceased.wrapper,
    submit);

  view.append(el('h1', { class: 'heading-xl', text: 'Find a person' }), errorEl, form, results);

  const inputs = { nhs: nhs.input, family: family.input, birth: birth.input, postcode: postcode.input };

  function showError(text) {
    replace(errorEl, el('h2', { class: 'error-summary-title', text: 'There is a problem' }), el('p', { text }));
    errorEl.hidden = false;
  }

  function clearErrors() {
    clearFieldErrors(form);
    errorEl.hidden = true;
    errorEl.replaceChildren();
  }

  /** Light checks before asking the API (it checks everything again). */
  function criteria() {
    const c = {
      nhs: nhsDigits(inputs.nhs.value),
      family: inputs.family.value.trim(),
      birth: inputs.birth.value,
      postcode: inputs.postcode.value.trim(),
      includeDeceased: deceased.input.checked,
    };
    const ways = [c.nhs !== '', c.family !== '' || c.birth !== '', c.postcode !== ''].filter(Boolean).length;
    if (ways === 0) {
      setFieldError(inputs.nhs, 'Enter an NHS number, a family name and date of birth, or a postcode');
      return { error: 'Enter an NHS number, a family name and date of birth, or a postcode.', focus: inputs.nhs };
    }
    if (ways > 1) {
      return { error: 'Search one way at a time: clear the details you do not need.', focus: inputs.nhs };
    }
    if (c.nhs && !/^\d{10}$/.test(c.nhs)) {
      setFieldError(inputs.nhs, 'An NHS number is 10 digits');
      return { error: 'An NHS number is 10 digits.', focus: inputs.nhs };
    }
    if ((c.family || c.birth) && !(c.family && c.birth)) {
      const missing = c.family ? inputs.birth : inputs.family;
      const text = c.family ? 'Enter the date of birth too' : 'Enter the family name too';
      setFieldError(missing, text);
      return { error: `${text}.`, focus: missing };
    }
    return { criteria: c };
  }

  function showResults(dto) {
    const hits = dto.results || [];
    if (hits.length === 0) {
      replace(results, el('div', { id: 'search-empty', class: 'empty-state' },
        el('h2', { class: 'heading-m', text: 'No record found' }),
        el('p', { text: 'Check the details and try again. People who have died are only found with “Include people who have died”.' })));
      announce('No record found.');
      return;
    }
    const rows = hits.map((h) => {
      const nameId = `name-${h.id}`;
      const name = el('span', { id: nameId, class: 'person-name', text: listName(h.given_name, h.family_name) });
      const markers = [];
      if (h.date_of_death) {
        markers.push(el('span', { class: 'tag tag-deceased deceased', text: `Deceased ${formatDate(h.date_of_death)}` }));
      }
      if (h.ask_first) {
        markers.push(el('span', { class: 'tag tag-ask-first', text: 'Ask first' }));
      }
      const open = el('button', {
        type: 'button', class: 'button button-small open-record', text: 'Open record', 'aria-describedby': nameId,
      });
      open.addEventListener('click', () => {
        memory.person = { id: h.id, askFirst: Boolean(h.ask_first) };
        navigate('record');
      });
      return {
        attrs: { 'data-person-id': h.id },
        cells: [
          [name, markers.length ? el('span', { class: 'markers' }, markers) : null],
          h.birth_date ? dateElement(h.birth_date) : 'Not recorded',
          h.postcode || 'Not recorded',
          h.nhs_number_formatted || formatNhs(h.nhs_number) || 'Not recorded',
          open,
        ],
      };
    });
    const found = `${hits.length} ${hits.length === 1 ? 'person' : 'people'} found`;
    const t = table({
      id: 'search-results',
      caption: found,
      columns: [{ label: 'Name' }, { label: 'Date of birth' }, { label: 'Postcode' }, { label: 'NHS number' }, { label: 'Action' }],
      rows,
    });
    replace(results,
      dto.truncated ? el('p', { class: 'message message-warning', text: 'More people matched than are shown. Narrow the search.' }) : null,
      hits.some((h) => h.ask_first) ? el('p', { class: 'hint', text: '“Ask first”: the person asked to be asked before their record is opened. You will be asked to confirm permission or an emergency.' }) : null,
      t.wrap);
    announce(`${found}.`);
  }

  let busy = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    clearErrors();
    const checked = criteria();
    if (checked.error) {
      showError(checked.error);
      checked.focus.focus();
      return;
    }
    const c = checked.criteria;
    busy = true;
    submit.textContent = 'Searching…';
    submit.setAttribute('aria-disabled', 'true');
    results.setAttribute('aria-busy', 'true');
    replace(results, loading('Searching…'));
    try {
      const dto = await request(`/people${query({
        nhs_number: c.nhs || undefined,
        family: c.family || undefined,
        birth_date: c.birth || undefined,
        postcode: c.postcode || undefined,
        include_deceased: c.includeDeceased ? 'true' : undefined,
      })}`, { signal });
      memory.search = { criteria: c, results: dto };
      showResults(dto);
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      results.replaceChildren();
      memory.search = null;
      if (e.type === PROBLEM.INVALID_REQUEST && e.field && FIELD_INPUT[e.field]) {
        const input = document.getElementById(FIELD_INPUT[e.field]);
        const text = fieldReason(e, document.querySelector(`label[for="${input.id}"]`)?.textContent);
        setFieldError(input, text);
        showError(text);
        input.focus();
      } else if (isRefused(e)) {
        showError(describe(e, 'search for people'));
      } else {
        showError(describe(e));
      }
    } finally {
      busy = false;
      submit.textContent = 'Search';
      submit.removeAttribute('aria-disabled');
      results.removeAttribute('aria-busy');
    }
  });

  // Back from a record (or a cancelled "ask first"): show the last search again.
  if (memory.search) {
    const c = memory.search.criteria;
    inputs.nhs.value = c.nhs ? formatNhs(c.nhs) : '';
    inputs.family.value = c.family;
    inputs.birth.value = c.birth;
    inputs.postcode.value = c.postcode;
    deceased.input.checked = c.includeDeceased;
    showResults(memory.search.results);
  }
}
