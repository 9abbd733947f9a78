// Tabs (WAI-ARIA tabs pattern, automatic activation): one tab stop for the tab list,
// arrow keys move between tabs, Home/End to the first/last; each panel is focusable.

import { el } from './dom.js';

/**
 * items: [{ id, label, content }] → the tab list with its panels. Tab ids are
 * `tab-<id>`, panel ids `panel-<id>`.
 */
export function tabs({ label, items }) {
  const list = el('div', { role: 'tablist', 'aria-label': label, class: 'tab-list' });
  const panels = [];
  const buttons = items.map((item, i) => {
    const tab = el('button', {
      type: 'button', role: 'tab', id: `tab-${item.id}`, class: 'tab',
      'aria-controls': `panel-${item.id}`, 'aria-selected': i === 0 ? 'true' : 'false',
      tabindex: i === 0 ? '0' : '-1', text: item.label,
    });
    panels.push(el('div', {
      role: 'tabpanel', id: `panel-${item.id}`, class: 'tab-panel',
      'aria-labelledby': `tab-${item.id}`, tabindex: '0', hidden: i !== 0,
    }, item.content));
    return tab;
  });

  function select(index, focus) {
    buttons.forEach((b, i) => {
      const on = i === index;
      b.setAttribute('aria-selected', on ? 'true' : 'false');
      b.tabIndex = on ? 0 : -1;
      panels[i].hidden = !on;
    });
    if (focus) buttons[index].focus();
  }

  buttons.forEach((b, i) => {
    b.addEventListener('click', () => select(i, false));
    b.addEventListener('keydown', (event) => {
      const last = buttons.length - 1;
      const next = {
        ArrowRight: i === last ? 0 : i + 1,
        ArrowLeft: i === 0 ? last : i - 1,
        Home: 0,
        End: last,
      }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(next, true);
    });
    list.append(b);
  });

  return el('div', { class: 'tabs' }, list, panels);
}
