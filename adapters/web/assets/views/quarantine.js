// The System Manager's quarantine: feed messages that could not be applied, with why.
// Detail (GET /quarantine/{id}) shows the message itself; "Re-submit" (POST
// …/resubmit) applies it again after a fix — a 422 means it still fails, and stays.

import { el, table, loading, messageArea, replace, button, checkbox } from '../dom.js';
import { request, seg, query, describe, isAbort, isRefused } from '../api.js';
import { formatDateTime, label, count } from '../format.js';
import { createDialog, openDialog, removeOnClose } from '../dialogs.js';
import { failure } from './failure.js';

export function render(view, { signal }) {
  const message = messageArea('quarantine-message');
  // Focus can be sent here when the button that was used has gone.
  message.area.setAttribute('tabindex', '-1');
  const openOnly = checkbox({ id: 'quarantine-open-only', label: 'Show only messages not yet re-submitted' });
  const body = el('div', { class: 'quarantine' });
  view.append(
    el('h1', { class: 'heading-xl', text: 'Quarantine' }),
    el('p', { class: 'lead', text: 'Feed messages that could not be applied. Fix the cause (the mapping, or the record they wait for), then re-submit. Wrong content is corrected at the source system, never here.' }),
    openOnly.wrapper, message.area, body);
  // Only the latest load's answer is shown (the filter may change while one is running).
  let loads = 0;
  openOnly.input.addEventListener('change', () => load());
  load();

  /** Loads and shows the list; resolves to true when this load's answer is shown. */
  async function load() {
    loads += 1;
    const mine = loads;
    body.setAttribute('aria-busy', 'true');
    replace(body, loading('Loading the quarantine…'));
    try {
      const entries = await request(`/quarantine${query({ open: openOnly.input.checked ? 'true' : undefined })}`, { signal });
      if (mine !== loads) return false;
      show(entries);
      return true;
    } catch (e) {
      if (isAbort(e) || e.sessionEnded || mine !== loads) return false;
      replace(body, failure(e, 'see the quarantine'));
      return false;
    } finally {
      if (mine === loads) body.removeAttribute('aria-busy');
    }
  }

  function show(entries) {
    if (entries.length === 0) {
      replace(body, el('p', { id: 'quarantine-empty', class: 'empty-state', text: 'The quarantine is empty: every message was applied.' }));
      return;
    }
    replace(body, table({
      id: 'quarantine-table',
      caption: `${entries.length} quarantined message${entries.length === 1 ? '' : 's'}, newest first`,
      columns: ['Received', 'Source', 'Format', 'Reference', 'Reason', 'Size', 'Status', 'Actions'].map((l) => ({ label: l })),
      rows: entries.map((q) => {
        const refId = `q-${q.id}`;
        const resolved = Boolean(q.resolved_at);
        return {
          attrs: { 'data-id': q.id, class: resolved ? 'row-resolved' : null },
          cells: [
            el('time', { id: refId, datetime: q.received_at, text: formatDateTime(q.received_at) }),
            q.source, q.format, q.reference || '—', q.reason, `${count(q.size_bytes)} bytes`,
            resolved
              ? el('span', { class: 'tag tag-active', text: `Resolved (${label(q.resolution || 'applied').toLowerCase()}) ${formatDateTime(q.resolved_at)}${q.resolved_by ? ` by ${q.resolved_by}` : ''}` })
              : el('span', { class: 'tag tag-stale', text: 'Open' }),
            el('div', { class: 'button-group button-group-tight' },
              button('View', { class: 'button button-small button-secondary quarantine-view', 'aria-describedby': refId, on: { click: () => detail(q) } }),
              resolved ? null : button('Re-submit', { class: 'button button-small quarantine-resubmit', 'aria-describedby': refId, on: { click: (ev) => resubmit(q, ev.currentTarget) } })),
          ],
        };
      }),
    }).wrap);
  }

  async function resubmit(q, btn) {
    if (btn.getAttribute('aria-disabled') === 'true') return;
    btn.setAttribute('aria-disabled', 'true');
    btn.textContent = 'Re-submitting…';
    message.clear();
    try {
      const done = await request(`/quarantine/${seg(q.id)}/resubmit`, { method: 'POST', signal });
      await load();
      if (signal.aborted) return;
      message.show('success', `Message ${q.reference || q.id} re-submitted: ${done.outcome === 'applied' ? 'applied' : 'it changed nothing (already up to date)'}. The entry is resolved.`);
      // The table was rebuilt: keep keyboard users on the entry (its View button), or on
      // the message when the entry is no longer listed.
      const view = body.querySelector(`tr[data-id="${CSS.escape(String(q.id))}"] .quarantine-view`);
      (view || message.area).focus();
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      btn.removeAttribute('aria-disabled');
      btn.textContent = 'Re-submit';
      if (e.status === 422) {
        message.show('error', `Message ${q.reference || q.id} still cannot be applied and stays in the quarantine: ${e.detail || e.title}`);
      } else {
        message.show(isRefused(e) ? 'refused' : 'error', describe(e, 're-submit messages'));
      }
    }
  }

  async function detail(q) {
    const dialog = createDialog({ id: 'quarantine-detail', title: 'Quarantined message', className: 'dialog-wide' });
    removeOnClose(dialog);
    const content = el('div', {}, loading('Loading the message…'));
    const close = button('Close', { class: 'button button-secondary', on: { click: () => dialog.close() } });
    dialog.append(content, el('div', { class: 'button-group' }, close));
    openDialog(dialog, close);
    try {
      const m = await request(`/quarantine/${seg(q.id)}`, { signal });
      const e = m.entry;
      const row = (k, v) => el('div', { class: 'summary-row' }, el('dt', { class: 'summary-key', text: k }), el('dd', { class: 'summary-value', text: v }));
      replace(content,
        el('dl', { class: 'summary-list summary-list-compact' },
          row('Source', e.source), row('Format', e.format), row('Received', formatDateTime(e.received_at)),
          row('Reference', e.reference || '—'), row('Reason', e.reason)),
        el('h3', { class: 'heading-s', text: 'Message as received' }),
        m.raw_is_utf8 ? null : el('p', { class: 'hint', text: 'Some bytes were not text and are shown as �.' }),
        el('pre', { class: 'raw', tabindex: '0', 'aria-label': 'Message as received', text: m.raw }));
    } catch (err) {
      if (isAbort(err) || err.sessionEnded) return;
      replace(content, el('p', { class: 'message message-error', role: 'alert', text: describe(err, 'read quarantined messages') }));
    }
  }
}
