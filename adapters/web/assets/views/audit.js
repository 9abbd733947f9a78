// The auditor's screen: verify the audit hash chain (GET /audit/verify) and say clearly
// whether it is intact or where it first breaks.

import { el, loading, replace, announce } from '../dom.js';
import { request, isAbort } from '../api.js';
import { count } from '../format.js';
import { failure } from './failure.js';

export function render(view, { signal }) {
  const verify = el('button', { id: 'audit-verify', type: 'button', class: 'button', text: 'Verify the audit chain' });
  const result = el('div', { id: 'audit-result', class: 'audit-result', tabindex: '-1' });
  view.append(
    el('h1', { class: 'heading-xl', text: 'Audit' }),
    el('p', { class: 'lead', text: 'Every access to a person’s record is written to a hash chain. Verifying it proves that no event was changed, removed or reordered.' }),
    verify, result);

  let busy = false;
  verify.addEventListener('click', async () => {
    if (busy) return;
    busy = true;
    verify.setAttribute('aria-disabled', 'true');
    result.setAttribute('aria-busy', 'true');
    replace(result, loading('Verifying the audit chain… this reads every event.'));
    try {
      const v = await request('/audit/verify', { signal });
      if (v.valid) {
        replace(result, el('div', { class: 'message message-success', role: 'status' },
          el('h2', { class: 'heading-m', text: 'The audit chain is valid' }),
          el('p', { text: `All ${count(v.events)} events verified: none was changed, removed or reordered.` }),
          el('p', { class: 'hash' }, 'Head hash: ', el('code', { text: v.head_hash }))));
        // A status added to the page is not reliably read out: say it through the page's
        // live region. (A broken chain is a role=alert, read out when it appears.)
        announce(`The audit chain is valid: all ${count(v.events)} events verified.`);
      } else {
        replace(result, el('div', { class: 'message message-error', role: 'alert' },
          el('h2', { class: 'heading-m', text: 'The audit chain is broken' }),
          el('p', { text: `The first bad event is at position ${v.first_bad_position ?? 'unknown'} of ${count(v.events)}.` }),
          v.problem ? el('p', { text: `What is wrong: ${v.problem}` }) : null,
          el('p', { text: 'Report this as a security incident.' })));
      }
    } catch (e) {
      if (isAbort(e) || e.sessionEnded) return;
      replace(result, failure(e, 'verify the audit chain'));
    } finally {
      busy = false;
      verify.removeAttribute('aria-disabled');
      result.removeAttribute('aria-busy');
    }
  });
}
