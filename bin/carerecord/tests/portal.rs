//! The web portal in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`) against the real `carerecord demo` binary on a
//! random port. Each role signs in and walks its main paths; the `ask_first` dialog, the
//! opted-out person who is not found, the deceased filter and the inactivity sign-out
//! are checked as a user meets them; axe-core scans every main screen; and a screenshot
//! of each is saved under `target/screenshots/` (CI keeps them as artefacts).
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`) and,
//! for the accessibility scan, axe-core's `axe.min.js` at `CARE_AXE_CORE`. Without them
//! the test says so in one line and passes, unless `CARE_BROWSER_TESTS=required` (as
//! `.ci/run` sets it), when a missing browser fails the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cast, PASSWORD, Server, cast, start, test_nhs};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const REQUIRED: &str = "CARE_BROWSER_TESTS";
const AXE: &str = "CARE_AXE_CORE";
/// How long a screen may take to show what it should.
const PATIENCE: Duration = Duration::from_secs(15);

/// What a browser test needs from the machine, or why it cannot run.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    axe: Option<String>,
}

fn tools() -> Result<Tools, String> {
    let find = |var: &str, candidates: &[&str]| -> Option<PathBuf> {
        std::env::var_os(var)
            .map(PathBuf::from)
            .into_iter()
            .chain(candidates.iter().map(PathBuf::from))
            .find(|p| p.is_file())
    };
    let chromium = find(
        "CARE_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    )
    .ok_or("no chromium (install Debian's chromium, or set CARE_CHROMIUM)")?;
    let chromedriver = find("CARE_CHROMEDRIVER", &["/usr/bin/chromedriver"])
        .ok_or("no chromedriver (install Debian's chromium-driver, or set CARE_CHROMEDRIVER)")?;
    let axe = match std::env::var_os(AXE) {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("{AXE}={}: {e}", path.to_string_lossy()))?,
        ),
        None => None,
    };
    Ok(Tools {
        chromium,
        chromedriver,
        axe,
    })
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn driver(tools: &Tools) -> Driver {
    let port = free_port();
    let child = Command::new(&tools.chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

/// A browser window on the portal.
struct Page {
    client: Client,
    base: String,
    shots: PathBuf,
    axe: Option<String>,
    /// Serious or critical accessibility violations, by screen.
    violations: Vec<String>,
    /// Keeps the browser's profile until the page is closed.
    _profile: tempfile::TempDir,
}

impl Page {
    async fn open(driver: &Driver, tools: &Tools, server: &Server) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": tools.chromium,
                // The flags the machine notes ask for: headless, no sandbox as root, and
                // none of Chromium's own network traffic (this machine's network is
                // closed, and refused connections slow every start).
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,1600", "--lang=en-GB",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a Chromium session");
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let page = Self {
            client,
            base: server.base.clone(),
            shots,
            axe: tools.axe.clone(),
            violations: Vec::new(),
            _profile: profile,
        };
        page.client.goto(&page.base).await.unwrap();
        page.el("#signin-form").await;
        page
    }

    /// The element `css` once it is in the page and shown.
    async fn el(&self, css: &str) -> fantoccini::elements::Element {
        let started = Instant::now();
        loop {
            if let Ok(found) = self.client.find(Locator::Css(css)).await
                && found.is_displayed().await.unwrap_or(false)
            {
                return found;
            }
            if started.elapsed() > PATIENCE {
                let url = self.client.current_url().await.unwrap();
                let body = self.js("return document.body.innerText;", vec![]).await;
                panic!("{css} did not appear within {PATIENCE:?} on {url}; the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `css` is in the page and shown, right now.
    async fn shown(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Waits until `css` shows text containing `want` (case-insensitive).
    async fn text_with(&self, css: &str, want: &str) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.to_lowercase().contains(&want.to_lowercase()) {
                return text;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{css} did not come to say {want:?}; it says {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |v| v.len())
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Types into a field, replacing what it held.
    async fn fill(&self, css: &str, value: &str) {
        let field = self.el(css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Sets a date field (typing into one depends on the browser's locale) or a select.
    async fn set(&self, css: &str, value: &str) {
        self.el(css).await;
        self.js(
            "const e = document.querySelector(arguments[0]);
             e.value = arguments[1];
             e.dispatchEvent(new Event('input', {bubbles: true}));
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![json!(css), json!(value)],
        )
        .await;
    }

    async fn click(&self, css: &str) {
        self.el(css).await.click().await.unwrap();
    }

    async fn sign_in(&self, user: &str) {
        self.fill("#signin-username", user).await;
        self.fill("#signin-password", PASSWORD).await;
        self.click("#signin-submit").await;
        self.text_with("#whoami", user).await;
        self.safe_by_construction(user).await;
    }

    async fn sign_out(&self) {
        self.click("#signout").await;
        self.el("#signin-form").await;
    }

    /// The nav links the signed-in role is offered.
    async fn nav(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for link in self.client.find_all(Locator::Css("#nav a")).await.unwrap() {
            if link.is_displayed().await.unwrap() {
                ids.push(link.attr("id").await.unwrap().unwrap_or_default());
            }
        }
        ids.sort();
        ids
    }

    /// What the issue asks of the page itself: the token in no storage, cookie or URL,
    /// and no inline style (the Content-Security-Policy would block it anyway).
    async fn safe_by_construction(&self, context: &str) {
        let state = self
            .js(
                "return {
                    local: localStorage.length,
                    session: sessionStorage.length,
                    cookie: document.cookie,
                    url: location.href,
                    styled: document.querySelectorAll('[style]').length,
                    title: document.title,
                 };",
                vec![],
            )
            .await;
        assert_eq!(state["local"], 0, "{context}: localStorage used");
        assert_eq!(state["session"], 0, "{context}: sessionStorage used");
        assert_eq!(state["cookie"], "", "{context}: a cookie set");
        assert_eq!(state["styled"], 0, "{context}: inline style attributes");
        let url = state["url"].as_str().unwrap();
        assert!(
            !url.contains("token") && !url.contains('?'),
            "{context}: the URL carries data: {url}"
        );
    }

    /// Saves a screenshot and scans the screen with axe-core (WCAG 2.1 A and AA).
    async fn screen(&mut self, name: &str) {
        // The picture from the top of the page, once focus and transitions settle.
        self.js("window.scrollTo(0, 0);", vec![]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        let Some(axe) = &self.axe else { return };
        let loaded = self
            .js("return typeof window.axe !== 'undefined';", vec![])
            .await;
        if loaded != json!(true) {
            self.js(axe, vec![]).await;
        }
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag',
                     values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
                   .then(r => done({passes: r.passes.length, violations: r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                          + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))}))
                   .catch(e => done({passes: 0, violations: ['axe failed: ' + e]}));",
                vec![],
            )
            .await
            .unwrap();
        // A scan that checked nothing would pass anything.
        assert!(
            found["passes"].as_u64().unwrap_or(0) > 0 || found["violations"] != json!([]),
            "{name}: axe-core checked no rule: {found}"
        );
        for v in found["violations"].as_array().unwrap() {
            self.violations
                .push(format!("{name}: {}", v.as_str().unwrap_or_default()));
        }
    }

    async fn close(self) -> Vec<String> {
        self.client.close().await.unwrap();
        self.violations
    }
}

/// The portal in a real browser: every role's main paths, on the demo dataset.
#[tokio::test(flavor = "multi_thread")]
async fn the_portal_in_a_real_browser() {
    let tools = match tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var(REQUIRED).as_deref() == Ok("required") => {
            panic!("browser tests required ({REQUIRED}=required) but cannot run: {why}")
        }
        Err(why) => {
            eprintln!("browser tests skipped: {why}");
            return;
        }
    };
    if tools.axe.is_none() && std::env::var(REQUIRED).as_deref() == Ok("required") {
        panic!("browser tests required but {AXE} is not set: the accessibility scan needs it");
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("portal.db").display());
    let server = start("demo", &url, &[]);
    let cast = cast();
    let driver = driver(&tools).await;

    let mut page = Page::open(&driver, &tools, &server).await;
    page.screen("sign-in").await;
    bad_credentials_are_shown(&page).await;
    each_role_is_offered_only_its_screens(&page).await;
    a_gp_finds_a_person_and_reads_the_record(&mut page, &cast).await;
    deceased_people_are_found_only_when_asked_for(&page, &cast).await;
    opted_out_looks_exactly_like_unknown(&page, &cast).await;
    a_pharmacist_has_no_referrals_tab(&page, &cast).await;
    ask_first_asks_before_showing_anything(&mut page, &cast).await;
    the_dpo_changes_consent_and_reports_access(&mut page, &cast).await;
    the_system_manager_manages_users_feeds_and_quarantine(&mut page).await;
    the_auditor_verifies_the_chain(&mut page).await;
    let violations = page.close().await;

    // Inactivity: a second server on the same database with a short idle timeout.
    let short = start("serve", &url, &[("CARE_SESSION_IDLE_TIMEOUT", "12")]);
    let page = Page::open(&driver, &tools, &short).await;
    inactivity_warns_then_signs_out(&page).await;
    a_server_that_has_gone_is_said_plainly(&page, short).await;
    page.close().await;

    assert!(
        violations.is_empty(),
        "accessibility (axe-core) serious or critical violations:\n{}",
        violations.join("\n")
    );
    if tools.axe.is_none() {
        eprintln!("accessibility scan skipped: set {AXE} to axe-core's axe.min.js");
    }
}

async fn bad_credentials_are_shown(page: &Page) {
    page.fill("#signin-username", "gp").await;
    page.fill("#signin-password", "not-the-password-at-all")
        .await;
    page.click("#signin-submit").await;
    page.el("#signin-error").await;
    assert!(!page.shown("#whoami").await, "a wrong password signed in");
}

async fn each_role_is_offered_only_its_screens(page: &Page) {
    let clinical = vec!["nav-search".to_owned()];
    let expected: [(&str, Vec<String>); 7] = [
        ("gp", clinical.clone()),
        ("clinician", clinical.clone()),
        ("social_worker", clinical.clone()),
        ("pharmacist", clinical),
        (
            "dpo",
            vec!["nav-access-report".to_owned(), "nav-consent".to_owned()],
        ),
        (
            "system_manager",
            vec![
                "nav-feeds".to_owned(),
                "nav-quarantine".to_owned(),
                "nav-users".to_owned(),
            ],
        ),
        ("auditor", vec!["nav-audit".to_owned()]),
    ];
    for (user, screens) in expected {
        page.sign_in(user).await;
        assert_eq!(page.nav().await, screens, "{user}'s screens");
        page.sign_out().await;
    }
}

/// Searches by NHS number (typed as people write it, with spaces).
async fn search_nhs(page: &Page, nhs: &str) {
    page.click("#nav-search").await;
    page.fill("#search-nhs", &formatted(nhs)).await;
    page.click("#search-submit").await;
}

fn formatted(nhs: &str) -> String {
    format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..])
}

/// Opens the record of the search result for `id`.
async fn open_record(page: &Page, id: &str) {
    let row = page
        .el(&format!("#search-results tr[data-person-id='{id}']"))
        .await;
    row.find(Locator::Css(".open-record"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn a_gp_finds_a_person_and_reads_the_record(page: &mut Page, cast: &Cast) {
    page.sign_in("gp").await;
    search_nhs(page, &cast.participating_nhs).await;
    let row = format!(
        "#search-results tr[data-person-id='{}']",
        cast.participating
    );
    let text = page
        .text_with(&row, &formatted(&cast.participating_nhs))
        .await;
    assert!(
        text.contains(&cast.participating_postcode),
        "the result shows the postcode: {text}"
    );
    page.screen("search-results").await;

    open_record(page, &cast.participating).await;
    let name = page.el("#record-name").await.text().await.unwrap();
    assert!(!name.trim().is_empty(), "the record names the person");
    page.el("#demographics").await;
    let title = page.client.title().await.unwrap();
    let url = page.client.current_url().await.unwrap().to_string();
    for (what, value) in [("title", &title), ("URL", &url)] {
        assert!(
            !value.contains(name.trim()),
            "the {what} names the person: {value}"
        );
        assert!(
            !value.contains(&cast.participating_nhs) && !value.contains(&cast.participating),
            "the {what} identifies the person: {value}"
        );
    }
    // The banner: partner alerts, most severe category first.
    let order = page
        .js(
            "return [...document.querySelectorAll('#alert-banner li.alert')]
                .map(li => li.dataset.category);",
            vec![],
        )
        .await;
    let rank = |c: &str| {
        [
            "allergy",
            "medication",
            "environmental_hazard",
            "safeguarding",
            "communication_need",
            "other",
        ]
        .iter()
        .position(|k| *k == c)
        .unwrap_or_else(|| panic!("unknown alert category {c}"))
    };
    let ranks: Vec<usize> = order
        .as_array()
        .unwrap()
        .iter()
        .map(|c| rank(c.as_str().unwrap()))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "the banner is ordered by category: {order}"
    );
    assert!(
        !ranks.is_empty() || page.shown("#no-alerts").await,
        "the banner shows alerts or says there are none"
    );
    assert!(
        page.count("#freshness li").await >= 1,
        "freshness per source"
    );

    page.click("#tab-referrals").await;
    page.el("#panel-referrals").await;
    let started = Instant::now();
    while page.count("#panel-referrals tbody tr").await == 0 {
        assert!(started.elapsed() < PATIENCE, "the referrals did not show");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page.screen("record").await;
    page.click("#tab-gp-summary").await;
    page.el("#panel-gp-summary").await;
    assert!(
        !page.shown("#panel-referrals").await,
        "one tab panel at a time"
    );
    page.screen("gp-summary").await;
    page.safe_by_construction("the record").await;
    page.sign_out().await;
}

async fn deceased_people_are_found_only_when_asked_for(page: &Page, cast: &Cast) {
    page.sign_in("clinician").await;
    page.click("#nav-search").await;
    let search = async |include: bool| {
        page.fill("#search-nhs", "").await;
        page.fill("#search-family", &cast.deceased_family).await;
        page.set("#search-birth-date", &cast.deceased_birth_date)
            .await;
        let tick = page.el("#search-include-deceased").await;
        if tick.is_selected().await.unwrap() != include {
            tick.click().await.unwrap();
        }
        page.click("#search-submit").await;
    };
    search(false).await;
    page.text_with("#search-empty", "No record found").await;
    search(true).await;
    let row = format!("#search-results tr[data-person-id='{}']", cast.deceased);
    page.el(&row).await;
    page.el(&format!("{row} .deceased")).await;
    page.sign_out().await;
}

async fn opted_out_looks_exactly_like_unknown(page: &Page, cast: &Cast) {
    page.sign_in("social_worker").await;
    search_nhs(page, &cast.opted_out_nhs).await;
    let opted_out = page.text_with("#search-empty", "No record found").await;
    assert_eq!(page.count("#search-results tr[data-person-id]").await, 0);
    search_nhs(page, &test_nhs(77)).await;
    let unknown = page.text_with("#search-empty", "No record found").await;
    assert_eq!(opted_out, unknown, "opted out and unknown differ");
    page.sign_out().await;
}

async fn a_pharmacist_has_no_referrals_tab(page: &Page, cast: &Cast) {
    page.sign_in("pharmacist").await;
    search_nhs(page, &cast.participating_nhs).await;
    open_record(page, &cast.participating).await;
    page.el("#record-name").await;
    page.el("#tab-gp-summary").await;
    assert!(
        !page.shown("#tab-referrals").await,
        "a pharmacist is offered referrals"
    );
    page.sign_out().await;
}

async fn ask_first_asks_before_showing_anything(page: &mut Page, cast: &Cast) {
    page.sign_in("gp").await;
    search_nhs(page, &cast.ask_first_nhs).await;
    open_record(page, &cast.ask_first).await;
    page.el("#ask-first").await;
    assert!(
        !page.shown("#record-name").await && !page.shown("#demographics").await,
        "part of an ask-first record showed before permission"
    );
    page.screen("ask-first").await;
    page.click("#basis-cancel").await;
    assert!(
        !page.shown("#record-name").await,
        "cancel showed the record"
    );

    open_record(page, &cast.ask_first).await;
    page.click("#basis-emergency").await;
    page.fill(
        "#basis-reason",
        "Unconscious on arrival in the emergency department",
    )
    .await;
    page.click("#basis-submit").await;
    page.el("#record-name").await;
    page.el("#demographics").await;
    page.sign_out().await;
}

/// The DPO finds a person's consent by NHS number and sees its level.
async fn find_consent(page: &Page, nhs: &str, level: &str) {
    page.click("#nav-consent").await;
    page.fill("#consent-nhs", nhs).await;
    page.click("#consent-find").await;
    page.text_with("#consent-level", level).await;
}

async fn the_dpo_changes_consent_and_reports_access(page: &mut Page, cast: &Cast) {
    page.sign_in("dpo").await;
    find_consent(page, &cast.spare_nhs, "Participating").await;
    page.fill("#optout-reason", "Asked at the practice to opt out")
        .await;
    page.click("#optout-submit").await;
    page.text_with("#consent-level", "Opted out").await;
    assert!(
        page.count("#consent-history tbody tr").await >= 1,
        "history"
    );
    page.screen("consent").await;

    // The opted-out person has gone for the clinicians.
    page.sign_out().await;
    page.sign_in("gp").await;
    search_nhs(page, &cast.spare_nhs).await;
    page.text_with("#search-empty", "No record found").await;
    page.sign_out().await;

    page.sign_in("dpo").await;
    find_consent(page, &cast.spare_nhs, "Opted out").await;
    page.fill("#optin-reason", "Wishes to take part again")
        .await;
    page.click("#optin-submit").await;
    page.text_with("#consent-level", "Participating").await;

    // The GP read the participating person's record earlier: the report shows it.
    page.click("#nav-access-report").await;
    page.fill("#report-nhs", &cast.participating_nhs).await;
    page.set("#report-from", "2020-01-01").await;
    page.set("#report-to", "2099-12-31").await;
    page.click("#report-run").await;
    page.text_with("#report-results", "gp").await;
    page.el("#report-csv").await;
    page.screen("access-report").await;
    page.sign_out().await;
}

async fn the_system_manager_manages_users_feeds_and_quarantine(page: &mut Page) {
    page.sign_in("system_manager").await;
    page.click("#nav-users").await;
    page.el("#users-table tr[data-username='gp']").await;
    page.fill("#user-username", "portal_nurse").await;
    page.fill("#user-display-name", "Portal Nurse").await;
    page.set("#user-organisation", "DEMO-ACUTE").await;
    page.set("#user-role", "clinician").await;
    page.fill("#user-password", "Portal-Nurse-Lighthouse-77")
        .await;
    page.click("#user-create-submit").await;
    let row = "#users-table tr[data-username='portal_nurse']";
    page.el(row).await;
    page.click(&format!("{row} .user-disable")).await;
    page.text_with(row, "disabled").await;
    page.screen("users").await;

    page.click("#nav-feeds").await;
    page.el("#feeds-table tr[data-source]").await;
    page.screen("feeds").await;

    page.click("#nav-quarantine").await;
    let started = Instant::now();
    while !page.shown("#quarantine-table").await && !page.shown("#quarantine-empty").await {
        assert!(started.elapsed() < PATIENCE, "the quarantine did not show");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page.screen("quarantine").await;
    page.sign_out().await;
}

async fn the_auditor_verifies_the_chain(page: &mut Page) {
    page.sign_in("auditor").await;
    page.click("#nav-audit").await;
    page.click("#audit-verify").await;
    page.text_with("#audit-result", "valid").await;
    page.screen("audit").await;
    page.sign_out().await;
}

async fn inactivity_warns_then_signs_out(page: &Page) {
    page.sign_in("gp").await;
    // The warning comes before the 12 s timeout; staying signed in restarts it.
    page.el("#idle-warning").await;
    page.click("#idle-stay").await;
    let started = Instant::now();
    while page.shown("#idle-warning").await {
        assert!(started.elapsed() < PATIENCE, "the warning did not close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(page.shown("#whoami").await, "staying signed in signed out");
    // Left alone, the session ends and the sign-in screen says why.
    let waited = Instant::now();
    loop {
        if page.shown("#signin-notice").await {
            let notice = page.el("#signin-notice").await.text().await.unwrap();
            if notice.to_lowercase().contains("inactivity") {
                break;
            }
        }
        assert!(
            waited.elapsed() < Duration::from_secs(40),
            "no sign-out after inactivity"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!page.shown("#whoami").await, "still signed in");
}

async fn a_server_that_has_gone_is_said_plainly(page: &Page, mut server: Server) {
    page.sign_in("gp").await;
    page.click("#nav-search").await;
    let _ = server.child.kill();
    let _ = server.child.wait();
    page.fill("#search-nhs", &formatted(&test_nhs(78))).await;
    page.click("#search-submit").await;
    page.text_with("#search-error", "cannot be reached").await;
    assert!(
        page.shown("#whoami").await,
        "an unreachable server is not a sign-out"
    );
}
