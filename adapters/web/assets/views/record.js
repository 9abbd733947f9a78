// A person's record: GET /api/v1/people/{id} (demographics with provenance, banner
// alerts, freshness), then the Referrals and GP summary tabs. For an ask_first person
// the basis is asked for before anything of the record is requested or shown, and sent
// with each of the person's calls. Unknown and opted-out people look the same.

import { el, table, loading, announce, replace, button } from '../dom.js';
import { request, seg, headerText, PROBLEM, describe, isAbort, isRefused, fieldReason } from '../api.js';
import { formatDateTime, relativeTime, formatNhs, personName, label, dateElement } from '../format.js';
import { memory } from '../memory.js';
import { tabs } from '../tabs.js';
import { askFirst, BASIS } from './ask-first.js';
import { failure } from './failure.js';

const CATEGORY_ORDER = ['allergy', 'medication', 'environmental_hazard', 'safeguarding', 'communication_need', 'other'];
const SEVERITY_ORDER = ['high', 'moderate', 'low', 'unknown'];

function rank(list, value) {
  const i = list.indexOf(value);
  return i === -1 ? list.length : i;
}

/** Most severe category first (allergies first), then severity, then newest. */
export function sortAlerts(alerts) {
  return [...alerts].sort((a, b) => rank(CATEGORY_ORDER, a.category) - rank(CATEGORY_ORDER, b.category)
    || rank(SEVERITY_ORDER, a.severity) - rank(SEVERITY_ORDER, b.severity)
    || String(b.recorded).localeCompare(String(a.recorded)));
}

function basisHeaders(basis) {
  return basis ? { 'X-Access-Basis': basis.kind, 'X-Access-Reason': headerText(basis.reason) } : {};
}

function age(birth, until) {
  const b = new Date(`${birth}T00:00:00Z`);
  const u = until ? new Date(`${until}T00:00:00Z`) : new Date();
  let years = u.getUTCFullYear() - b.getUTCFullYear();
  if (u.getUTCMonth() < b.getUTCMonth() || (u.getUTCMonth() === b.getUTCMonth() && u.getUTCDate() < b.getUTCDate())) years -= 1;
  return years;
}

export async function render(view, { signal, navigate, role }) {
  const person = memory.person;
  if (!person) {
    navigate('search');
    return;
  }
  const heading = el('h1', { class: 'heading-xl', text: 'Record' });
  view.append(heading, loading('Loading the record…'));

  const cancelled = () => {
    memory.person = null;
    navigate('search');
  };

  let basis = null;
  if (person.askFirst) {
    basis = await askFirst();
    if (signal.aborted) return;
    if (!basis) {
      cancelled();
      return;
    }
  }

  let summary = null;
  while (!summary) {
    try {
      summary = await request(`/people/${seg(person.id)}`, { signal, headers: basisHeaders(basis) });
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      const basisRefused = e.type === PROBLEM.INVALID_REQUEST && basis && /^X-Access-/i.test(e.field || '');
      if (e.type === PROBLEM.PERMISSION_REQUIRED || basisRefused) {
        // Ask (again): the search did not say ask_first, or the reason was refused.
        basis = await askFirst({ error: basisRefused ? fieldReason(e) : null });
        if (signal.aborted) return;
        if (!basis) {
          cancelled();
          return;
        }
        continue;
      }
      if (e.type === PROBLEM.NOT_FOUND) {
        notFound(view);
        return;
      }
      failed(view, describe(e, 'open people’s records'), isRefused(e),
        () => navigate('record'));
      return;
    }
  }
  showRecord(view, summary, { signal, role, basis, personId: person.id });
}

/** Unknown and opted-out people alike. */
function notFound(view) {
  replace(view, el('div', { id: 'not-found', class: 'empty-state' },
    el('h1', { class: 'heading-xl', text: 'No record found' }),
    el('p', { text: 'There is no record you can see for this person.' }),
    el('p', {}, el('a', { href: '#/search', text: 'Back to search' }))));
  announce('No record found.');
}

function failed(view, text, refused, retry) {
  replace(view,
    el('h1', { class: 'heading-xl', text: refused ? 'Record not available' : 'The record could not be opened' }),
    el('p', { class: ['message', refused ? 'message-refused' : 'message-error'], role: 'alert', text }),
    refused ? null : button('Try again', { class: 'button', on: { click: retry } }),
    el('p', {}, el('a', { href: '#/search', text: 'Back to search' })));
}

function showRecord(view, s, { signal, role, basis, personId }) {
  const d = s.demographics || {};
  const sourceNames = new Map((s.freshness || []).map((f) => [f.source, f.name]));
  const name = d.name ? personName(d.name.given, d.name.family) : 'Name not recorded';
  const deceased = s.vital_status === 'deceased' || Boolean(s.date_of_death);

  const header = el('div', { class: 'record-header' },
    el('h1', { id: 'record-name', class: 'heading-xl', text: name }),
    el('p', { class: 'record-ids' },
      'NHS number ', el('strong', { text: s.nhs_number_formatted || formatNhs(s.nhs_number) || 'not recorded' }),
      d.birth_date ? [' · Born ', el('strong', {}, dateElement(d.birth_date.value))] : null),
    deceased ? el('p', { id: 'deceased-marker', class: 'deceased-marker deceased' },
      el('strong', { text: 'Deceased' }),
      s.date_of_death ? [' — date of death ', dateElement(s.date_of_death)] : null) : null,
    basis ? el('p', { class: 'message message-info basis-note' },
      el('strong', { text: 'Ask first: ' }),
      `opened on the basis of ${basis.kind === BASIS.emergency ? 'an emergency' : 'the person’s permission'}. Reason: `,
      el('q', { text: basis.reason })) : null);

  const record = el('div', { id: 'record', class: 'record' },
    header,
    alertBanner(s.banner),
    freshness(s.freshness || []),
    demographics(s, d, sourceNames));

  const items = [];
  const referralsPanel = el('div', {});
  const gpPanel = el('div', {});
  // Pharmacists may not see referrals (SPEC §2): no tab is offered.
  if (role !== 'pharmacist') items.push({ id: 'referrals', label: 'Referrals', content: referralsPanel });
  items.push({ id: 'gp-summary', label: 'GP summary', content: gpPanel });
  record.append(el('section', { class: 'record-section', 'aria-label': 'Record details' },
    tabs({ label: 'Record details', items })));

  view.replaceChildren(record);
  announce(`Record opened${deceased ? '; the person has died' : ''}.`);

  const headers = basisHeaders(basis);
  if (role !== 'pharmacist') loadReferrals(referralsPanel, personId, headers, signal);
  loadGpSummary(gpPanel, personId, headers, signal, s.date_of_death);
}

// ---- banner alerts -------------------------------------------------------------------

function alertItem(a) {
  return el('li', {
    class: ['alert', `alert-${a.severity}`, `alert-cat-${a.category}`],
    'data-category': a.category, 'data-severity': a.severity,
  },
  el('p', { class: 'alert-title' },
    el('strong', { class: 'alert-category', text: label(a.category) }),
    el('span', { class: 'alert-severity', text: `${label(a.severity)} severity` })),
  el('p', { class: 'alert-description', text: a.description }),
  el('p', { class: 'alert-meta' },
    'Recorded ', dateElement(a.recorded), ` by ${a.source} (${label(a.source_kind)})`,
    a.active_to ? [' · active until ', dateElement(a.active_to)] : null));
}

function alertBanner(banner) {
  const headingId = 'alerts-heading';
  const section = el('section', { id: 'alert-banner', class: 'alert-banner', 'aria-labelledby': headingId });
  if (!banner) {
    section.classList.add('alert-banner-none');
    section.append(el('h2', { id: headingId, class: 'heading-m', text: 'Alerts' }),
      el('p', { class: 'message-refused', text: 'Your role cannot see alerts.' }));
    return section;
  }
  if (banner.length === 0) {
    section.classList.add('alert-banner-none');
    section.append(el('h2', { id: headingId, class: 'heading-m', text: 'Alerts' }),
      el('p', { id: 'no-alerts', text: 'No alerts from partner organisations.' }));
    return section;
  }
  const sorted = sortAlerts(banner);
  section.append(
    el('h2', { id: headingId, class: 'heading-m', text: `Alerts (${sorted.length})` }),
    el('ul', { class: 'alert-list' }, sorted.map(alertItem)));
  return section;
}

// ---- freshness -----------------------------------------------------------------------

function freshness(list) {
  const when = (iso) => el('time', { datetime: iso, title: formatDateTime(iso), text: relativeTime(iso) });
  const items = list.map((f) => el('li', { class: f.stale ? 'stale' : null, 'data-source': f.source },
    el('strong', { text: f.name || f.source }), ` (${label(f.source_kind)}): `,
    f.last_message_at ? ['last message ', when(f.last_message_at)] : 'no message since the service started',
    ' · updated this record ', when(f.last_update_for_person),
    f.stale ? [' ', el('span', { class: 'tag tag-stale', text: 'Stale' }),
      el('span', { class: 'stale-text', text: ' information may be stale' })] : null));
  const staleCount = list.filter((f) => f.stale).length;
  return el('section', { class: ['freshness', staleCount ? 'freshness-stale' : null], 'aria-labelledby': 'freshness-heading' },
    el('h2', { id: 'freshness-heading', class: 'heading-s', text: 'How up to date this is' }),
    staleCount ? el('p', { class: 'freshness-warning', text: `Warning: ${staleCount} of ${list.length} sources ${staleCount === 1 ? 'has' : 'have'} been quiet for longer than expected. What ${staleCount === 1 ? 'it holds' : 'they hold'} may be out of date: check with the source before relying on it.` }) : null,
    el('ul', { id: 'freshness', class: 'freshness-list' }, list.length ? items
      : el('li', { text: 'No source has sent anything about this person.' })));
}

// ---- demographics --------------------------------------------------------------------

function demographics(s, d, sourceNames) {
  const provenance = (p) => p ? el('span', { class: 'provenance' },
    `From ${sourceNames.get(p.source) || p.source} (${label(p.source_kind)}), as of `,
    el('time', { datetime: p.as_of, text: formatDateTime(p.as_of) })) : null;
  const row = (term, value, p) => el('div', { class: 'summary-row' },
    el('dt', { class: 'summary-key', text: term }),
    el('dd', { class: 'summary-value' }, el('span', { class: 'summary-text' }, value), provenance(p)));
  const notRecorded = el('span', { class: 'not-recorded', text: 'Not recorded' });

  const rows = [
    row('Name', d.name ? personName(d.name.given, d.name.family) : notRecorded.cloneNode(true), d.name?.provenance),
    row('NHS number', s.nhs_number_formatted || formatNhs(s.nhs_number) || notRecorded.cloneNode(true)),
    row('Date of birth', d.birth_date
      ? [dateElement(d.birth_date.value), ` (${age(d.birth_date.value, s.date_of_death)} years${s.date_of_death ? ' at death' : ''})`]
      : notRecorded.cloneNode(true), d.birth_date?.provenance),
    row('Gender', d.gender ? label(d.gender.value) : notRecorded.cloneNode(true), d.gender?.provenance),
    row('Address', d.address
      ? el('span', { class: 'address' }, [...d.address.lines, d.address.postcode].filter(Boolean).flatMap((l, i) => (i ? [el('br'), l] : [l])))
      : notRecorded.cloneNode(true), d.address?.provenance),
    row('Registered GP', d.registered_gp
      ? `${d.registered_gp.name ? `${d.registered_gp.name} ` : ''}(${d.registered_gp.code})`
      : notRecorded.cloneNode(true), d.registered_gp?.provenance),
  ];
  if (s.date_of_death) rows.push(row('Date of death', dateElement(s.date_of_death)));
  return el('section', { class: 'record-section', 'aria-labelledby': 'demographics-heading' },
    el('h2', { id: 'demographics-heading', class: 'heading-m', text: 'Personal details' }),
    el('p', { class: 'hint', text: 'Each detail shows where it came from. If one is wrong, it must be corrected in that source system.' }),
    el('dl', { id: 'demographics', class: 'summary-list' }, rows));
}

// ---- tabs ----------------------------------------------------------------------------

function panelError(panel, e, action) {
  if (e.type === PROBLEM.NOT_FOUND) {
    replace(panel, el('p', { class: 'message message-refused', text: 'No record found.' }));
  } else {
    replace(panel, failure(e, action));
  }
}

async function loadReferrals(panel, id, headers, signal) {
  replace(panel, el('h2', { class: 'heading-m', text: 'Children’s social care referrals' }), loading('Loading referrals…'));
  try {
    const dto = await request(`/people/${seg(id)}/referrals`, { signal, headers });
    const list = dto.referrals || [];
    const heading = el('h2', { class: 'heading-m', text: 'Children’s social care referrals' });
    if (list.length === 0) {
      replace(panel, heading, el('p', { id: 'referrals-empty', class: 'empty-state', text: 'No referrals recorded.' }));
      return;
    }
    const t = table({
      id: 'referrals-table',
      caption: `${list.length} referral${list.length === 1 ? '' : 's'}, most recently received first`,
      columns: ['Received', 'Team or specialty', 'Referred by', 'Status', 'Closed', 'Level of involvement', 'Source']
        .map((l) => ({ label: l })),
      rows: list.map((r) => ({
        attrs: { 'data-referral-id': r.id, 'data-status': r.status },
        cells: [
          dateElement(r.received), r.team, label(r.referral_source),
          el('span', { class: ['tag', `tag-status-${r.status}`], text: label(r.status) }),
          r.closed ? dateElement(r.closed) : '—',
          r.involvement ? label(r.involvement) : 'Not recorded',
          r.source,
        ],
      })),
    });
    replace(panel, heading, t.wrap);
  } catch (e) {
    if (isAbort(e) || e.sessionEnded) return;
    panelError(panel, e, 'see referrals');
  }
}

async function loadGpSummary(panel, id, headers, signal, dateOfDeath) {
  const heading = () => el('h2', { class: 'heading-m', text: 'GP summary' });
  replace(panel, heading(), loading('Loading the GP summary…'));
  try {
    const dto = await request(`/people/${seg(id)}/gp-summary`, { signal, headers });
    if (dto.state === 'closed_after_death') {
      const died = dto.date_of_death || dateOfDeath;
      replace(panel, heading(), el('div', { id: 'gp-closed', class: 'message message-info' },
        el('p', {}, el('strong', { text: 'The GP record is closed. ' }),
          'It closed when the person died', died ? [' on ', dateElement(died)] : null, '.'),
        el('p', { text: 'GP information, including GP alerts, is no longer shown after death.' })));
      return;
    }
    const alerts = sortAlerts(dto.alerts || []);
    if (alerts.length === 0) {
      replace(panel, heading(), el('p', { id: 'gp-alerts-empty', class: 'empty-state', text: 'No GP alerts.' }));
      return;
    }
    const t = table({
      id: 'gp-alerts',
      caption: `GP alerts (${alerts.length}), most severe first`,
      columns: ['Category', 'Description', 'Severity', 'Recorded', 'Active until', 'Source'].map((l) => ({ label: l })),
      rows: alerts.map((a) => ({
        attrs: { class: `alert-row alert-${a.severity}`, 'data-category': a.category },
        cells: [label(a.category), a.description, label(a.severity), dateElement(a.recorded),
          a.active_to ? dateElement(a.active_to) : 'Open-ended', a.source],
      })),
    });
    replace(panel, heading(), t.wrap);
  } catch (e) {
    if (isAbort(e) || e.sessionEnded) return;
    panelError(panel, e, 'see the GP summary');
  }
}

