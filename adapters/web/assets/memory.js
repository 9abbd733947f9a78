// What the portal holds about the task in hand — the last search and the selected
// person — in memory only: never in the URL, the title or browser storage. Dropped when
// the session ends.

export const memory = {
  /** { criteria, results } of the last search. */
  search: null,
  /** { id, askFirst } of the person whose record is open. */
  person: null,
};

export function forget() {
  memory.search = null;
  memory.person = null;
}
