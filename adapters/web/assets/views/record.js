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

/**
 * A tab's failure, under the tab's heading, with "Try again" (which reloads the tab and
 * keeps keyboard focus in its panel) unless trying again cannot help.
 */
function panelError(panel, heading, e, action, reload) {
  if (e.type === PROBLEM.NOT_FOUND) {
    replace(panel, heading, el('p', { class: 'message message-refused', text: 'No record found.' }));
    return;
  }
  const retry = isRefused(e) ? null : button('Try again', {
    class: 'button button-secondary',
    on: {
      click: () => {
        const tabPanel = panel.closest('[role="tabpanel"]');
        reload();
        tabPanel?.focus();
      },
    },
  });
  replace(panel, heading, failure(e, action), retry);
}

async function loadReferrals(panel, id, headers, signal) {
  const heading = () => el('h2', { class: 'heading-m', text: 'Children’s social care referrals' });
  replace(panel, heading(), loading('Loading referrals…'));
  try {
    const dto = await request(`/people/${seg(id)}/referrals`, { signal, headers });
    const list = dto.referrals || [];
    if (list.length === 0) {
      replace(panel, heading(), el('p', { id: 'referrals-empty', class: 'empty-state', text: 'No referrals recorded.' }));
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
    replace(panel, heading(), t.wrap);
  } catch (e) {
    if (isAbort(e) || e.sessionEnded) return;
    panelError(panel, heading(), e, 'see referrals', () => loadReferrals(panel, id, headers, signal));
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
    const all = dto.alerts || [];
    if (all.length === 0) {
      replace(panel, heading(), el('p', { id: 'gp-alerts-empty', class: 'empty-state', text: 'No GP alerts.' }));
      return;
    }
    replace(panel, heading(), gpAlerts(all));
  } catch (e) {
    if (isAbort(e) || e.sessionEnded) return;
    panelError(panel, heading(), e, 'see the GP summary', () => loadGpSummary(panel, id, headers, signal, dateOfDeath));
  }
}

// ---- GP alerts -----------------------------------------------------------------------

/** Today's date as YYYY-MM-DD in UTC: the date the record's rules use (SPEC, alerts). */
function todayUtc() {
  return new Date().toISOString().slice(0, 10);
}

/**
 * The GP summary's alerts in groups, so that an alert that no longer applies is never
 * read as one that does: active ones (in the banner's order: category, then most
 * severe, then newest), any not yet in force, and ended ones (`active_to` before today),
 * each ended alert saying so in words. An alert is active from `active_from` to
 * `active_to` inclusive.
 */
export function groupGpAlerts(alerts, today = todayUtc()) {
  const ended = [];
  const upcoming = [];
  const active = [];
  for (const a of alerts) {
    if (a.active_to && a.active_to < today) ended.push(a);
    else if (a.active_from && a.active_from > today) upcoming.push(a);
    else active.push(a);
  }
  return {
    active: sortAlerts(active),
    upcoming: [...upcoming].sort((a, b) => String(a.active_from).localeCompare(String(b.active_from))),
    // Most recently ended first.
    ended: [...ended].sort((a, b) => String(b.active_to).localeCompare(String(a.active_to))
      || String(b.recorded).localeCompare(String(a.recorded))),
  };
}

function gpAlerts(all) {
  const { active, upcoming, ended } = groupGpAlerts(all);
  const plural = (n) => `${n} alert${n === 1 ? '' : 's'}`;
  const parts = [];

  parts.push(el('h3', { id: 'gp-alerts-active-heading', class: 'heading-s', text: `Active GP alerts (${active.length})` }));
  if (active.length) {
    parts.push(table({
      id: 'gp-alerts-active',
      caption: `Active alerts (${plural(active.length)}): allergies first, then most severe`,
      columns: ['Category', 'Description', 'Severity', 'Recorded', 'Active until', 'Source'].map((l) => ({ label: l })),
      rows: active.map((a) => ({
        attrs: { class: `alert-row alert-${a.severity}`, 'data-category': a.category, 'data-status': 'active' },
        cells: [label(a.category), a.description, label(a.severity), dateElement(a.recorded),
          a.active_to ? dateElement(a.active_to) : 'Open-ended', a.source],
      })),
    }).wrap);
  } else {
    parts.push(el('p', { id: 'gp-alerts-none-active', class: 'empty-state', text: 'No active GP alerts.' }));
  }

  if (upcoming.length) {
    parts.push(
      el('h3', { class: 'heading-s', text: `GP alerts not yet in force (${upcoming.length})` }),
      table({
        id: 'gp-alerts-upcoming',
        caption: `Alerts not yet in force (${plural(upcoming.length)}): soonest first`,
        columns: ['Category', 'Description', 'Severity', 'Recorded', 'Status', 'Source'].map((l) => ({ label: l })),
        rows: upcoming.map((a) => ({
          attrs: { class: 'alert-row alert-row-upcoming', 'data-category': a.category, 'data-status': 'upcoming' },
          cells: [label(a.category), a.description, label(a.severity), dateElement(a.recorded),
            el('span', { class: 'tag tag-stale' }, 'Starts ', dateElement(a.active_from),
              a.active_to ? [', ends ', dateElement(a.active_to)] : null),
            a.source],
        })),
      }).wrap);
  }

  if (ended.length) {
    parts.push(
      el('h3', { class: 'heading-s', text: `Ended GP alerts (${ended.length})` }),
      el('p', { class: 'hint', text: 'These alerts have ended and no longer apply. They are shown for history only.' }),
      table({
        id: 'gp-alerts-ended',
        caption: `Ended alerts (${plural(ended.length)}): most recently ended first`,
        columns: ['Category', 'Description', 'Severity', 'Recorded', 'Status', 'Source'].map((l) => ({ label: l })),
        rows: ended.map((a) => ({
          attrs: { class: 'alert-row alert-row-ended', 'data-category': a.category, 'data-status': 'ended' },
          cells: [label(a.category), a.description, label(a.severity), dateElement(a.recorded),
            el('span', { class: 'tag tag-ended' }, 'Ended ', dateElement(a.active_to)),
            a.source],
        })),
      }).wrap);
  }

  return el('div', { id: 'gp-alerts', class: 'gp-alerts' }, parts);
}
