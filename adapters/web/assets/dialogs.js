// Modal dialogs: native <dialog> opened with showModal(), so focus moves into it, the
// rest of the page is inert and Escape sends `cancel`. Focus goes back to what opened it.

import { el } from './dom.js';

/** Creates a dialog (appended to <body>) with a heading that names it. */
export function createDialog({ id, title, className }) {
  const titleId = `${id}-title`;
  const dialog = el('dialog', { id, class: ['dialog', className], 'aria-labelledby': titleId },
    el('h2', { id: titleId, class: 'dialog-title', text: title }));
  document.body.append(dialog);
  return dialog;
}

/** Opens a dialog modally and focuses `focus` (else the first control). */
export function openDialog(dialog, focus) {
  const opener = document.activeElement;
  if (!dialog.open) dialog.showModal();
  const target = focus || dialog.querySelector('input, textarea, select, button');
  if (target) target.focus();
  dialog.addEventListener('close', () => {
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
  }, { once: true });
}

/** Closes every open dialog (except those whose id is in `keep`). */
export function closeAllDialogs(keep = []) {
  for (const d of document.querySelectorAll('dialog[open]')) {
    if (!keep.includes(d.id)) d.close();
  }
}

/** Removes a dialog when it closes (for dialogs built per use). */
export function removeOnClose(dialog) {
  dialog.addEventListener('close', () => dialog.remove(), { once: true });
}
