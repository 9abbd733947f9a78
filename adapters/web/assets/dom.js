// Small DOM helpers. The portal builds every element with these (never innerHTML), so
// that text from the API is always text, never markup.

/**
 * Creates an element. `attrs` keys: `text` (text content), `class`, boolean properties
 * (`hidden`, `checked`, `disabled`, `required`, `selected`, `multiple`), `on` (an object of
 * event listeners); anything else is set as an attribute. `style` is refused: the page's
 * Content-Security-Policy blocks inline styles, so styling is done with classes only.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'class') node.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key === 'style') throw new Error('inline styles are blocked by the CSP: use a class');
    else if (['hidden', 'checked', 'disabled', 'required', 'selected', 'multiple'].includes(key)) node[key] = Boolean(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

/** Appends children: nodes, strings (as text), arrays; null/false are skipped. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

let idCounter = 0;
/** A unique id for wiring labels, descriptions and tabs. */
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** Says something to screen-reader users through the page's polite status region. */
export function announce(text) {
  const region = document.getElementById('status');
  if (!region) return;
  // Emptying first makes the same message be announced again.
  region.textContent = '';
  window.setTimeout(() => { region.textContent = text; }, 50);
}

/** Sets the page title: the screen's name only, never anyone's personal data. */
export function setTitle(screen) {
  document.title = `${screen} — Care Record`;
}

/** A labelled form field (label, optional hint, error slot, control) in a wrapper. */
export function field({ id, label, type = 'text', hint, attrs = {}, control }) {
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const input = control || el(type === 'textarea' ? 'textarea' : 'input', {
    id,
    name: id,
    type: type === 'textarea' ? undefined : type,
    class: type === 'textarea' ? 'textarea' : 'input',
    ...attrs,
  });
  if (hintId) input.setAttribute('aria-describedby', hintId);
  const wrapper = el('div', { class: 'form-group' },
    el('label', { for: id, class: 'label', text: label }),
    hint ? el('p', { id: hintId, class: 'hint', text: hint }) : null,
    el('p', { id: errorId, class: 'field-error', hidden: true }),
    input,
  );
  return { wrapper, input };
}

/** A checkbox with its label after it. */
export function checkbox({ id, label, attrs = {} }) {
  const input = el('input', { id, name: id, type: 'checkbox', class: 'checkbox-input', ...attrs });
  const wrapper = el('div', { class: 'checkbox' }, input, el('label', { for: id, class: 'checkbox-label', text: label }));
  return { wrapper, input };
}

/** Shows an error next to a field (and marks the control invalid), or clears it. */
export function setFieldError(input, message) {
  const slot = document.getElementById(`${input.id}-error`);
  const group = input.closest('.form-group');
  const describedBy = (input.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && x !== `${input.id}-error`);
  if (message) {
    if (slot) {
      slot.textContent = `Error: ${message}`;
      slot.hidden = false;
      describedBy.push(slot.id);
    }
    input.setAttribute('aria-invalid', 'true');
    group?.classList.add('form-group-error');
  } else {
    if (slot) {
      slot.textContent = '';
      slot.hidden = true;
    }
    input.removeAttribute('aria-invalid');
    group?.classList.remove('form-group-error');
  }
  if (describedBy.length) input.setAttribute('aria-describedby', describedBy.join(' '));
  else input.removeAttribute('aria-describedby');
}

/** Clears every field error inside a form. */
export function clearFieldErrors(form) {
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) setFieldError(input, null);
}

/**
 * A message area: `show(kind, text)` fills it — errors as role=alert (announced at once),
 * other messages also through the polite status region.
 */
export function messageArea(id) {
  const area = el('div', { id, class: 'message-area' });
  return {
    area,
    show(kind, text, ...extra) {
      const isError = kind === 'error';
      replace(area, el('div', { class: ['message', `message-${kind}`], role: isError ? 'alert' : null },
        el('p', { text }), ...extra));
      if (!isError) announce(text);
    },
    clear() { area.replaceChildren(); },
  };
}

/**
 * A data table with a caption and column headers, in a keyboard-scrollable wrapper
 * (wide tables scroll sideways on small screens instead of breaking the layout).
 * `columns`: [{ label, className? }]; `rows`: [{ cells: [node|string], attrs? }] — the
 * first cell of a row is its row header.
 */
export function table({ id, caption, columns, rows, rowHeader = true }) {
  const captionId = uid('caption');
  const tbl = el('table', { id, class: 'table' },
    el('caption', { id: captionId, class: 'table-caption', text: caption }),
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col', class: c.className, text: c.label })))),
    el('tbody', {}, rows.map((r) => el('tr', r.attrs || {}, r.cells.map((cell, i) => (
      i === 0 && rowHeader ? el('th', { scope: 'row' }, cell) : el('td', {}, cell)
    ))))),
  );
  const wrap = el('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': captionId }, tbl);
  return { wrap, table: tbl };
}

/** A loading line (also announced). */
export function loading(text) {
  announce(text);
  return el('p', { class: 'loading', text });
}

/** A button. */
export function button(text, attrs = {}) {
  return el('button', { type: 'button', class: 'button', text, ...attrs });
}
