// Formatting for people to read: dates and times in en-GB, relative times, NHS numbers
// and the API's coded values as words.

const DATE = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
const DATE_TIME = new Intl.DateTimeFormat('en-GB', {
  day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit',
});
const RELATIVE = new Intl.RelativeTimeFormat('en-GB', { numeric: 'auto' });

/** `1987-03-14` → `14 Mar 1987` (dates are calendar dates: no time zone shift). */
export function formatDate(iso) {
  if (!iso) return '';
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso);
  if (!m) return iso;
  return DATE.format(new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))));
}

/** An RFC 3339 time → `14 Mar 2025, 09:30` in the user's local time. */
export function formatDateTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : DATE_TIME.format(d);
}

/**
 * How long ago a time was, in words: `just now`, `3 minutes ago`, `yesterday`, `4 days
 * ago`; past a month, the date itself (`on 24 Nov 2025`), which reads better than
 * `last year`.
 */
export function relativeTime(iso, now = Date.now()) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const seconds = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  if (abs < 3600 * 0.9) return RELATIVE.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400 * 0.9) return RELATIVE.format(Math.round(seconds / 3600), 'hour');
  if (abs < 86400 * 31) return RELATIVE.format(Math.round(seconds / 86400), 'day');
  return `on ${DATE.format(d)}`;
}

/** A `<time>` element showing a relative time, with the exact time beside it. */
export function timeElement(iso, { relative = true } = {}) {
  const t = document.createElement('time');
  t.dateTime = iso;
  t.textContent = relative ? `${relativeTime(iso)} (${formatDateTime(iso)})` : formatDateTime(iso);
  return t;
}

/** A date as a `<time>` element. */
export function dateElement(iso) {
  const t = document.createElement('time');
  t.dateTime = iso;
  t.textContent = formatDate(iso);
  return t;
}

/** `9434765919` → `943 476 5919`. */
export function formatNhs(digits) {
  const d = String(digits || '').replace(/\s+/g, '');
  return /^\d{10}$/.test(d) ? `${d.slice(0, 3)} ${d.slice(3, 6)} ${d.slice(6)}` : d;
}

/** Digits of an NHS number as typed (spaces and hyphens allowed). */
export function nhsDigits(text) {
  return String(text || '').replace(/[\s-]+/g, '');
}

/** A person's name for headings: given names then family name. */
export function personName(given, family) {
  const name = [given, family].filter(Boolean).join(' ').trim();
  return name || 'Name not recorded';
}

/** A person's name for lists: family name first. */
export function listName(given, family) {
  if (family && given) return `${family.toUpperCase()}, ${given}`;
  return (family || given || 'Name not recorded');
}

const LABELS = {
  // roles
  gp: 'GP', clinician: 'Clinician', social_worker: 'Social worker', pharmacist: 'Pharmacist',
  system_manager: 'System manager', dpo: 'Data protection officer', auditor: 'Auditor', feed: 'Feed account',
  // alert categories and severities
  allergy: 'Allergy', medication: 'Medication', environmental_hazard: 'Environmental hazard',
  safeguarding: 'Safeguarding', communication_need: 'Communication need', other: 'Other',
  high: 'High', moderate: 'Moderate', low: 'Low', unknown: 'Unknown',
  // referral statuses, sources and involvement
  awaiting_decision: 'Awaiting decision', accepted: 'Accepted / allocated',
  closed_no_further_action: 'Closed — no further action', closed_transferred: 'Closed — transferred',
  police: 'Police', school: 'School', health_visitor: 'Health visitor', self: 'Self',
  early_help: 'Early help', child_in_need: 'Child in need', child_protection_plan: 'Child protection plan',
  looked_after_child: 'Looked-after child',
  // source kinds
  national: 'national', gp_practice: 'GP practice', acute: 'acute hospital', community: 'community health',
  social_care: 'social care',
  // consent
  participating: 'Participating', ask_first: 'Ask first', opted_out: 'Opted out',
  opt_out_by_person: 'Opt-out by the person', opt_out_by_representative: 'Opt-out by a representative',
  opt_in: 'Opted back in', evidence_status: 'Evidence status',
  not_requested: 'Not requested', requested: 'Requested', verified: 'Verified',
  // genders
  male: 'Male', female: 'Female',
};

/** A coded value in words (unknown codes: underscores to spaces, first letter capital). */
export function label(code) {
  if (code === null || code === undefined || code === '') return '';
  if (Object.hasOwn(LABELS, code)) return LABELS[code];
  const words = String(code).replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A duration in seconds in words: `1 hour`, `26 hours`, `45 minutes`. */
export function duration(seconds) {
  if (seconds % 3600 === 0) {
    const h = seconds / 3600;
    return `${h} hour${h === 1 ? '' : 's'}`;
  }
  if (seconds % 60 === 0) {
    const m = seconds / 60;
    return `${m} minute${m === 1 ? '' : 's'}`;
  }
  return `${seconds} seconds`;
}

/** A whole number with thousands separators. */
export function count(n) {
  return new Intl.NumberFormat('en-GB').format(n);
}
