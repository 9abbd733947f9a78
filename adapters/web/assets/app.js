// The portal's entry module: the page shell (header, navigation), the hash router and
// the session's beginning and end. Routes carry no data (#/search, #/record, …): the
// person and query in hand are held in memory (memory.js).

import * as session from './session.js';
import { request, setUnauthenticatedHandler } from './api.js';
import { el, replace, setTitle, announce } from './dom.js';
import { label } from './format.js';
import { startIdleWatch, stopIdleWatch } from './idle.js';
import { closeAllDialogs } from './dialogs.js';
import { forget } from './memory.js';
import * as signin from './views/signin.js';
import * as search from './views/search.js';
import * as record from './views/record.js';
import * as consent from './views/consent.js';
import * as accessReport from './views/access-report.js';
import * as users from './views/users.js';
import * as feeds from './views/feeds.js';
import * as quarantine from './views/quarantine.js';
import * as audit from './views/audit.js';

const CLINICAL = ['gp', 'clinician', 'social_worker', 'pharmacist'];

/** Every screen: its route, title, nav label (if in the navigation) and roles (SPEC §2). */
const SCREENS = [
  { route: 'search', title: 'Search', nav: 'Search', roles: CLINICAL, view: search },
  { route: 'record', title: 'Record', roles: CLINICAL, view: record },
  { route: 'consent', title: 'Consent', nav: 'Consent', roles: ['dpo'], view: consent },
  { route: 'access-report', title: 'Access report', nav: 'Access report', roles: ['dpo'], view: accessReport },
  { route: 'users', title: 'Users', nav: 'Users', roles: ['system_manager'], view: users },
  { route: 'feeds', title: 'Feeds', nav: 'Feeds', roles: ['system_manager'], view: feeds },
  { route: 'quarantine', title: 'Quarantine', nav: 'Quarantine', roles: ['system_manager'], view: quarantine },
  { route: 'audit', title: 'Audit', nav: 'Audit', roles: ['auditor'], view: audit },
];

const main = document.getElementById('main');
let controller = null;

function screensFor(role) {
  return SCREENS.filter((s) => s.roles.includes(role));
}

function firstRoute(role) {
  const first = screensFor(role).find((s) => s.nav);
  return first ? first.route : 'home';
}

function currentRoute() {
  return location.hash.replace(/^#\/?/, '');
}

/** Goes to a screen (re-rendering it if it is already the current one). */
export function navigate(route) {
  if (currentRoute() === route) renderRoute();
  else location.hash = `#/${route}`;
}

/** Changes the address without adding to history or rendering. */
function setRoute(route) {
  history.replaceState(null, '', `#/${route}`);
}

// ---- shell --------------------------------------------------------------------------

function renderShell() {
  const who = session.who();
  const account = document.getElementById('account');
  const nav = document.getElementById('nav');
  if (!who) {
    account.hidden = true;
    nav.hidden = true;
    nav.replaceChildren();
    document.getElementById('whoami').textContent = '';
    return;
  }
  replace(document.getElementById('whoami'),
    'Signed in as ', el('strong', { text: who.user }),
    ` · ${label(who.role)} (${who.role}) · ${who.organisation}`);
  account.hidden = false;
  const items = screensFor(who.role).filter((s) => s.nav);
  replace(nav, el('ul', { class: 'nav-list' }, items.map((s) => el('li', { class: 'nav-item' },
    el('a', { id: `nav-${s.route}`, class: 'nav-link', href: `#/${s.route}`, text: s.nav })))));
  nav.hidden = items.length === 0;
}

function markNav(route) {
  for (const link of document.querySelectorAll('#nav a')) {
    const here = link.id === `nav-${route}` || (route === 'record' && link.id === 'nav-search');
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

/** Replaces the main content and moves focus to it (so screen readers start there). */
function beginScreen(route) {
  if (controller) controller.abort();
  controller = new AbortController();
  // Leaving a screen closes its dialogs; the inactivity warning stays.
  closeAllDialogs(['idle-warning']);
  const view = el('div', { class: 'screen' });
  main.replaceChildren(view);
  markNav(route);
  window.scrollTo(0, 0);
  main.focus();
  return { view, signal: controller.signal };
}

function simpleScreen(route, title, heading, ...body) {
  const { view } = beginScreen(route);
  setTitle(title);
  view.append(el('h1', { class: 'heading-xl', text: heading }), ...body);
}

// ---- routing ------------------------------------------------------------------------

function renderRoute() {
  const route = currentRoute();
  const who = session.who();
  if (!who) {
    if (route !== 'signin') setRoute('signin');
    showSignIn(null);
    return;
  }
  if (route === '' || route === 'signin') {
    const first = firstRoute(who.role);
    setRoute(first);
    renderRoute();
    return;
  }
  if (route === 'home') {
    simpleScreen('home', 'Home', 'No screens for this role',
      el('p', { text: 'This account has no screens in the portal (feed accounts send messages through the API).' }));
    return;
  }
  const screen = SCREENS.find((s) => s.route === route);
  if (!screen) {
    simpleScreen(route, 'Page not found', 'Page not found',
      el('p', {}, 'There is no such page. ',
        el('a', { href: `#/${firstRoute(who.role)}`, text: 'Go to your first screen' }), '.'));
    return;
  }
  if (!screen.roles.includes(who.role)) {
    simpleScreen(route, screen.title, `${screen.title}: not available`,
      el('p', { class: 'message message-refused', text: `Your role cannot use the ${screen.title} screen.` }),
      el('p', {}, el('a', { href: `#/${firstRoute(who.role)}`, text: 'Go to your first screen' })));
    return;
  }
  const { view, signal } = beginScreen(route);
  setTitle(screen.title);
  screen.view.render(view, { signal, navigate, role: who.role, user: who.user });
}

// ---- session ------------------------------------------------------------------------

function showSignIn(notice) {
  const { view, signal } = beginScreen('signin');
  signin.render(view, { signal, notice, onSignedIn });
}

function onSignedIn(dto, sentAt, serverDate) {
  session.begin(dto, sentAt, serverDate);
  startIdleWatch({ onExpire, onSignOut: signOut });
  renderShell();
  announce(`Signed in as ${dto.user}.`);
  setRoute(firstRoute(dto.role));
  renderRoute();
}

/** Ends the session locally: forget the token and everything held, back to sign-in. */
function endSession(notice) {
  if (controller) controller.abort();
  session.end();
  stopIdleWatch();
  closeAllDialogs();
  forget();
  renderShell();
  setRoute('signin');
  showSignIn(notice);
}

function onExpire(reason) {
  endSession(reason === 'inactivity'
    ? 'You have been signed out after a period of inactivity. Sign in again to continue.'
    : 'Your session reached its maximum length and has ended. Sign in again to continue.');
}

/**
 * Signs out: the screen, what was held and the token go at once, whatever the server
 * does; then the server is told to end the session, with the token saved for that one
 * call. Its failure changes nothing here (the session then ends by itself on the server).
 * A second click finds no session and does nothing.
 */
function signOut() {
  if (!session.isActive()) return;
  const saved = session.token();
  endSession('You have signed out.');
  // auth: false — the session is over locally, so a 401 must not end anything again.
  request('/sessions/current', {
    method: 'DELETE', auth: false, headers: { Authorization: `Bearer ${saved}` },
  }).catch(() => {});
}

setUnauthenticatedHandler(() => {
  endSession('Your session has ended. Sign in again to continue.');
});

// ---- start --------------------------------------------------------------------------

document.getElementById('signout').addEventListener('click', signOut);
// The skip link focuses <main> itself: following "#main" would change the route.
document.getElementById('skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', renderRoute);
renderShell();
renderRoute();
