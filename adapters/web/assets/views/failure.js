// How a screen says that a call failed: a refusal for the role ("Your role cannot …")
// looks different from an error, and both are announced.

import { el } from '../dom.js';
import { describe, isRefused } from '../api.js';

/** The message for a failed call; `action` completes "Your role cannot …". */
export function failure(error, action) {
  return el('p', {
    class: ['message', isRefused(error) ? 'message-refused' : 'message-error'],
    role: 'alert',
    text: describe(error, action),
  });
}
