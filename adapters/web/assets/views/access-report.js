// The DPO's access report: who (organisation and role) accessed a person's record over a
// period — GET /access-reports/{nhs}?from&to — as a table, and as a CSV download
// (format=csv), fetched with the bearer token and saved through a Blob URL.

import { el, field, setFieldError, clearFieldErrors, table, loading, messageArea, replace, button } from '../dom.js';
import { request, seg, query, PROBLEM, describe, isAbort, isRefused, fieldReason } from '../api.js';
import { formatDate, formatDateTime, formatNhs, nhsDigits, label, count } from '../format.js';

function isoDay(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

const FIELD_INPUT = { nhs_number: 'report-nhs', from: 'report-from', to: 'report-to' };

export function render(view, { signal }) {
  const today = new Date();
  const yearAgo = new Date(today.getFullYear() - 1, today.getMonth(), today.getDate());
  const nhs = field({
    id: 'report-nhs', label: 'NHS number', hint: '10 digits, for example 943 476 5919',
    attrs: { inputmode: 'numeric', autocomplete: 'off', spellcheck: 'false', class: 'input input-width-10' },
  });
  const from = field({ id: 'report-from', label: 'From', type: 'date', attrs: { value: isoDay(yearAgo), class: 'input input-width-10' } });
  const to = field({ id: 'report-to', label: 'To (inclusive)', type: 'date', attrs: { value: isoDay(today), class: 'input input-width-10' } });
  const run = el('button', { id: 'report-run', type: 'submit', class: 'button', text: 'Run report' });
  const form = el('form', { id: 'report-form', class: 'report-form', novalidate: true },
    nhs.wrapper,
    el('fieldset', { class: 'fieldset' }, el('legend', { class: 'legend', text: 'Period' }),
      el('div', { class: 'date-pair' }, from.wrapper, to.wrapper)),
    run);
  const message = messageArea('report-message');
  const result = el('div', { class: 'report-result' });
  const csv = button('Download CSV', { id: 'report-csv', class: 'button button-secondary', hidden: true });

  view.append(
    el('h1', { class: 'heading-xl', text: 'Access report' }),
    el('p', { class: 'lead', text: 'Which organisations accessed a person’s record, when and in what role.' }),
    form, message.area, result, el('div', { class: 'button-group' }, csv));

  let last = null; // { nhs, from, to } of the report shown
  // Each run has a number: only the latest run's answer is shown, so the table and the
  // CSV are always for the NHS number and period on the screen.
  let runs = 0;

  function params(p) {
    return `/access-reports/${seg(p.nhs)}${query({ from: p.from, to: p.to, format: p.format })}`;
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    message.clear();
    const p = { nhs: nhsDigits(nhs.input.value), from: from.input.value, to: to.input.value };
    const problems = [];
    if (!/^\d{10}$/.test(p.nhs)) problems.push([nhs.input, 'An NHS number is 10 digits']);
    if (!p.from) problems.push([from.input, 'Enter the first day of the period']);
    if (!p.to) problems.push([to.input, 'Enter the last day of the period']);
    if (p.from && p.to && p.from > p.to) problems.push([to.input, 'The last day must not be before the first']);
    if (problems.length) {
      for (const [input, text] of problems) setFieldError(input, text);
      message.show('error', `${problems[0][1]}.`);
      problems[0][0].focus();
      return;
    }
    csv.hidden = true;
    last = null;
    runs += 1;
    const mine = runs;
    result.setAttribute('aria-busy', 'true');
    replace(result, loading('Running the report…'));
    try {
      const report = await request(params(p), { signal });
      if (mine !== runs) return;
      last = p;
      show(report, p);
    } catch (e) {
      if (isAbort(e) || e.sessionEnded || mine !== runs) return;
      result.replaceChildren();
      if (e.type === PROBLEM.INVALID_REQUEST && FIELD_INPUT[e.field]) {
        const input = document.getElementById(FIELD_INPUT[e.field]);
        setFieldError(input, fieldReason(e, document.querySelector(`label[for="${input.id}"]`)?.textContent));
        input.focus();
      }
      if (e.type === PROBLEM.NOT_FOUND) message.show('error', 'No record found: the care record holds no one with this NHS number.');
      else message.show(isRefused(e) ? 'refused' : 'error', describe(e, 'run access reports'));
    } finally {
      if (mine === runs) result.removeAttribute('aria-busy');
    }
  });

  function show(report, p) {
    const rows = report.rows || [];
    const period = `from ${formatDate(p.from)} to ${formatDate(p.to)}`;
    if (rows.length === 0) {
      replace(result, el('p', { id: 'report-empty', class: 'empty-state', text: `No one accessed the record of NHS number ${formatNhs(p.nhs)} ${period}.` }));
    } else {
      replace(result, table({
        id: 'report-results',
        caption: `Accesses to the record of NHS number ${formatNhs(p.nhs)} ${period}`,
        columns: ['Organisation', 'Role', 'First access', 'Last access', 'Accesses', 'Of which ask first (asserted)', 'Refused attempts']
          .map((l) => ({ label: l })),
        rows: rows.map((r) => ({
          cells: [r.organisation, label(r.role),
            el('time', { datetime: r.first_access, text: formatDateTime(r.first_access) }),
            el('time', { datetime: r.last_access, text: formatDateTime(r.last_access) }),
            count(r.accesses), count(r.with_basis), count(r.refused)],
        })),
      }).wrap);
    }
    csv.hidden = false;
    message.show('info', rows.length ? `Report ready: ${rows.length} row${rows.length === 1 ? '' : 's'}.` : 'Report ready: no accesses in this period.');
  }

  let downloading = false;
  csv.addEventListener('click', async () => {
    if (!last || downloading) return;
    // The report shown when clicked, even if another is run meanwhile.
    const p = last;
    downloading = true;
    csv.textContent = 'Preparing CSV…';
    try {
      // The bearer token cannot go in a link, so the file is fetched here and handed to
      // the browser as a Blob.
      const blob = await request(params({ ...p, format: 'csv' }), { signal, as: 'blob', headers: { Accept: 'text/csv' } });
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: `access-report-${p.from}-to-${p.to}.csv`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      // Revoke after the click has been handled, so the download has its data.
      window.setTimeout(() => URL.revokeObjectURL(url), 1000);
      message.show('success', 'The CSV file has been downloaded.');
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      message.show('error', describe(e, 'export access reports'));
    } finally {
      downloading = false;
      csv.textContent = 'Download CSV';
    }
  });
}
