// The System Manager's feed status: per source, the last message, the counts and
// whether it has gone quiet for longer than expected ("Stale").

import { el, table, loading, replace, button, announce } from '../dom.js';
import { request, isAbort } from '../api.js';
import { formatDateTime, relativeTime, label, duration, count } from '../format.js';
import { failure } from './failure.js';

export function render(view, { signal }) {
  const body = el('div', { class: 'feeds' });
  const refresh = button('Refresh', { class: 'button button-secondary', id: 'feeds-refresh', on: { click: load } });
  view.append(
    el('h1', { class: 'heading-xl', text: 'Feeds' }),
    el('p', { class: 'lead', text: 'What each source system has sent. A stale source has been quiet for longer than its expected interval.' }),
    el('div', { class: 'button-group' }, refresh),
    body);
  load();

  async function load() {
    body.setAttribute('aria-busy', 'true');
    replace(body, loading('Loading feed status…'));
    try {
      const dto = await request('/feeds', { signal });
      show(dto.sources || []);
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      replace(body, failure(e, 'see feed status'));
    } finally {
      body.removeAttribute('aria-busy');
    }
  }

  function show(sources) {
    if (sources.length === 0) {
      replace(body, el('p', { id: 'feeds-empty', class: 'empty-state', text: 'No feed sources are registered.' }));
      return;
    }
    const stale = sources.filter((s) => s.stale).length;
    replace(body,
      stale ? el('p', { class: 'message message-warning' }, el('strong', { text: `${stale} of ${sources.length} sources are stale.` }),
        ' Their information may be out of date: check the source systems and interfaces.') : null,
      table({
        id: 'feeds-table',
        caption: `${sources.length} feed source${sources.length === 1 ? '' : 's'}`,
        columns: ['Source', 'Kind', 'Last message', 'Expected every', 'Applied', 'Unchanged', 'Quarantined', 'Status'].map((l) => ({ label: l })),
        rows: sources.map((s) => ({
          attrs: { 'data-source': s.source, class: s.stale ? 'stale' : null },
          cells: [
            [el('strong', { text: s.name }), el('br'), el('span', { class: 'hint-inline', text: s.source })],
            label(s.source_kind),
            s.last_message_at
              ? el('time', { datetime: s.last_message_at, title: formatDateTime(s.last_message_at) }, `${relativeTime(s.last_message_at)} (${formatDateTime(s.last_message_at)})`)
              : 'Never',
            duration(s.expected_interval_seconds),
            count(s.applied), count(s.unchanged), count(s.quarantined),
            s.stale ? el('span', { class: 'tag tag-stale', text: 'Stale' }) : el('span', { class: 'tag tag-active', text: 'OK' }),
          ],
        })),
      }).wrap);
    announce(`${sources.length} feed sources${stale ? `, ${stale} stale` : ''}.`);
  }
}
