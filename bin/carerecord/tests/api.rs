//! The HTTP API end to end: the real `carerecord` binary (`demo`, then `serve` beside it
//! on the same database) on random ports, talked to over HTTP. On SQLite always, and on
//! a fresh PostgreSQL database when `CARE_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use care_access_audit::Outcome;
use care_application::{AuditLog, Clock, SecurityEventKind};
use care_in_memory::SystemClock;
use care_kernel::{Action, DenyReason, Role};
use care_persistence::{Database, SqlAuditLog};
mod common;

use common::{Cast, PASSWORD, Server, cast, start, test_nhs};
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const POSTGRES_URL: &str = "CARE_TEST_POSTGRES_URL";

struct Api {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
    text: String,
}

impl Answer {
    /// Sends the request and reads the whole answer.
    async fn of(req: reqwest::RequestBuilder) -> Self {
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        // The document declares no field nullable: a field without a value is left out,
        // in every answer the tests see (problems included).
        assert!(
            !content_type.contains("json") || !holds_null(&body),
            "an answer holds a null: {text}"
        );
        Answer {
            status,
            content_type,
            body,
            text,
        }
    }
}

impl Api {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.base.clone(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Answer::of(req).await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), &[], None).await
    }

    async fn sign_in(&self, user: &str, password: &str) -> Answer {
        self.call(
            Method::POST,
            "/api/v1/sessions",
            None,
            &[],
            Some(json!({"username": user, "password": password})),
        )
        .await
    }

    async fn token(&self, user: &str) -> String {
        let a = self.sign_in(user, PASSWORD).await;
        assert_eq!(a.status, StatusCode::CREATED, "sign in {user}: {}", a.text);
        a.body["token"].as_str().unwrap().to_owned()
    }
}

/// Whether a JSON value holds a null anywhere.
fn holds_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(holds_null),
        Value::Object(fields) => fields.values().any(holds_null),
        _ => false,
    }
}

fn assert_problem(a: &Answer, status: u16, kind: &str, what: &str) {
    assert_eq!(a.status.as_u16(), status, "{what}: {}", a.text);
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{what}: content type {:?}",
        a.content_type
    );
    assert_eq!(a.body["status"], status, "{what}: {}", a.text);
    assert!(
        a.body["type"].as_str().unwrap_or_default().ends_with(kind),
        "{what}: expected problem type {kind}, got {}",
        a.text
    );
}

/// SPEC §2 over HTTP: every endpoint against every role.
async fn every_endpoint_against_every_role(api: &Api, cast: &Cast) {
    let p = &cast.participating;
    let nhs = &cast.participating_nhs;
    let endpoints: Vec<(String, &[&str])> = vec![
        (
            format!("/api/v1/people?nhs_number={nhs}"),
            &["gp", "clinician", "social_worker", "pharmacist"],
        ),
        (
            format!("/api/v1/people/{p}"),
            &["gp", "clinician", "social_worker", "pharmacist"],
        ),
        (
            format!("/api/v1/people/{p}/referrals"),
            &["gp", "clinician", "social_worker"],
        ),
        (
            format!("/api/v1/people/{p}/gp-summary"),
            &["gp", "clinician", "social_worker", "pharmacist"],
        ),
        (format!("/api/v1/people/{p}/sources"), &["system_manager"]),
        (format!("/api/v1/consent/{nhs}"), &["dpo"]),
        (format!("/api/v1/identity/{nhs}"), &["dpo"]),
        (
            format!("/api/v1/access-reports/{nhs}?from=2020-01-01&to=2030-12-31"),
            &["dpo"],
        ),
        ("/api/v1/audit/verify".to_owned(), &["auditor"]),
        ("/api/v1/users".to_owned(), &["system_manager"]),
        ("/api/v1/organisations".to_owned(), &["system_manager"]),
        ("/api/v1/feeds".to_owned(), &["system_manager"]),
        (
            "/api/v1/quarantine?limit=20".to_owned(),
            &["system_manager"],
        ),
        (
            "/api/v1/security-events?limit=20".to_owned(),
            &["system_manager"],
        ),
    ];
    let mut grid = String::new();
    for role in Role::ALL {
        let token = api.token(role.as_str()).await;
        for (path, allowed) in &endpoints {
            let a = api.get(path, &token).await;
            if allowed.contains(&role.as_str()) {
                assert_eq!(
                    a.status,
                    StatusCode::OK,
                    "{} GET {path}: {}",
                    role.as_str(),
                    a.text
                );
            } else {
                assert_problem(
                    &a,
                    403,
                    "/forbidden",
                    &format!("{} GET {path}", role.as_str()),
                );
            }
            grid.push_str(&format!(
                "{} {} {}\n",
                role.as_str(),
                path,
                a.status.as_u16()
            ));
        }
    }
    // Without a session, every API endpoint answers 401 problem+json.
    for (path, _) in &endpoints {
        let a = api.call(Method::GET, path, None, &[], None).await;
        assert_problem(
            &a,
            401,
            "/unauthenticated",
            &format!("anonymous GET {path}"),
        );
    }
}

/// A role the operation rules out is refused (403, audited as such) before anything the
/// request carries is judged: a malformed path, query or body, or a body of another media
/// type, gets the same refusal a well-formed one would, never a 400 or 415 that goes
/// unaudited. The role the operation is for gets the input's own problem.
async fn refused_before_input_is_judged(api: &Api, db: &Database) {
    let audit = SqlAuditLog::new(db.clone());
    let json = "application/json";
    // (role, method, path, content type, body, the action and resource audited)
    let cases: &[(&str, Method, &str, &str, &str, Action, &str)] = &[
        (
            "gp",
            Method::POST,
            "/api/v1/users",
            json,
            "{",
            Action::ManageUsers,
            "users:create",
        ),
        (
            "gp",
            Method::POST,
            "/api/v1/users",
            "text/plain",
            "x",
            Action::ManageUsers,
            "users:create",
        ),
        (
            "clinician",
            Method::PUT,
            "/api/v1/users/%20!/password",
            json,
            r#"{"password": 1}"#,
            Action::ManageUsers,
            "users:reset_password",
        ),
        (
            "pharmacist",
            Method::POST,
            "/api/v1/users/%20!/disable",
            json,
            "",
            Action::ManageUsers,
            "users:disable",
        ),
        (
            "pharmacist",
            Method::POST,
            "/api/v1/users/%20!/enable",
            json,
            "",
            Action::ManageUsers,
            "users:enable",
        ),
        (
            "auditor",
            Method::POST,
            "/api/v1/organisations",
            json,
            "[]",
            Action::ManageUsers,
            "organisations:create",
        ),
        (
            "gp",
            Method::POST,
            "/api/v1/consent/123/changes",
            json,
            r#"{"change": 5}"#,
            Action::AdministerConsent,
            "consent:change",
        ),
        (
            "gp",
            Method::GET,
            "/api/v1/consent/123",
            json,
            "",
            Action::AdministerConsent,
            "consent",
        ),
        (
            "social_worker",
            Method::GET,
            "/api/v1/identity/123",
            json,
            "",
            Action::FindIdentity,
            "identity",
        ),
        (
            "social_worker",
            Method::GET,
            "/api/v1/access-reports/123",
            json,
            "",
            Action::RunAccessReport,
            "access_report",
        ),
        (
            "dpo",
            Method::GET,
            "/api/v1/people/not-a-uuid",
            json,
            "",
            Action::ReadDemographics,
            "summary",
        ),
        (
            "pharmacist",
            Method::GET,
            "/api/v1/people/not-a-uuid/referrals",
            json,
            "",
            Action::ReadReferrals,
            "referrals",
        ),
        (
            "auditor",
            Method::GET,
            "/api/v1/people/not-a-uuid/gp-summary",
            json,
            "",
            Action::ReadGpSummary,
            "gp_summary",
        ),
        (
            "gp",
            Method::GET,
            "/api/v1/people/not-a-uuid/sources",
            json,
            "",
            Action::ReadSourceDemographics,
            "source_demographics",
        ),
        (
            "dpo",
            Method::GET,
            "/api/v1/people?nhs_number=1&include_deceased=maybe",
            json,
            "",
            Action::SearchPeople,
            "search",
        ),
        (
            "gp",
            Method::GET,
            "/api/v1/security-events?limit=abc",
            json,
            "",
            Action::ManageUsers,
            "security_events:list",
        ),
        (
            "gp",
            Method::GET,
            "/api/v1/quarantine?limit=-1&open=maybe",
            json,
            "",
            Action::ViewFeedStatus,
            "quarantine",
        ),
        (
            "gp",
            Method::GET,
            "/api/v1/quarantine/not-a-uuid",
            json,
            "",
            Action::ViewFeedStatus,
            "quarantine",
        ),
        (
            "gp",
            Method::POST,
            "/api/v1/quarantine/not-a-uuid/resubmit",
            json,
            "",
            Action::ResubmitQuarantine,
            "quarantine:resubmit",
        ),
        (
            "gp",
            Method::POST,
            "/api/v1/feeds/demo-feed/messages",
            "text/plain",
            "x",
            Action::SubmitFeed,
            "source",
        ),
        (
            "gp",
            Method::POST,
            "/api/v1/feeds/%20!/messages",
            "application/hl7-v2",
            "x",
            Action::SubmitFeed,
            "source",
        ),
    ];
    for (role, method, path, content_type, body, action, resource) in cases {
        let token = api.token(role).await;
        let before = audit.head().await.unwrap().len;
        let req = api
            .http
            .request(method.clone(), format!("{}{path}", api.base))
            .bearer_auth(&token)
            .header("content-type", *content_type)
            .body(body.to_string());
        let a = Answer::of(req).await;
        let what = format!("{role} {method} {path} {content_type} {body:?}");
        assert_problem(&a, 403, "/forbidden", &what);
        let events = audit.read(before, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{what}: {events:?}");
        assert_eq!(events[0].event.user.as_str(), *role, "{what}");
        assert_eq!(events[0].event.action, *action, "{what}");
        assert_eq!(
            events[0].event.resource.as_deref(),
            Some(*resource),
            "{what}"
        );
        assert_eq!(
            events[0].event.outcome,
            Outcome::Denied(DenyReason::RoleNotPermitted),
            "{what}"
        );
    }
    // The operation's own role is told what is wrong with its input.
    let manager = api.token("system_manager").await;
    let malformed = post_raw(api, "/api/v1/users", Some(&manager), json, b"{".to_vec()).await;
    assert_problem(&malformed, 400, "/invalid-request", "malformed body");
    let text = post_raw(
        api,
        "/api/v1/users",
        Some(&manager),
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_problem(&text, 415, "/unsupported-media-type", "text body");
    let dpo = api.token("dpo").await;
    let missing = api
        .get("/api/v1/access-reports/9434765919?from=2020-01-01", &dpo)
        .await;
    assert_problem(&missing, 400, "/invalid-request", "no `to`");
    assert_eq!(missing.body["field"], "to", "{}", missing.text);
    let limit = api.get("/api/v1/security-events?limit=abc", &manager).await;
    assert_problem(&limit, 400, "/invalid-request", "limit=abc");
    assert_eq!(limit.body["field"], "limit", "{}", limit.text);
    let feed = api.token("feed").await;
    let text = post_raw(
        api,
        "/api/v1/feeds/demo-feed/messages",
        Some(&feed),
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_problem(&text, 415, "/unsupported-media-type", "feed as text/plain");
}

async fn opted_out_people_are_invisible(api: &Api, cast: &Cast) {
    let unknown = uuid::Uuid::now_v7().to_string();
    for role in ["gp", "clinician", "social_worker", "pharmacist"] {
        let token = api.token(role).await;
        let found = api
            .get(
                &format!("/api/v1/people?nhs_number={}", cast.opted_out_nhs),
                &token,
            )
            .await;
        assert_eq!(found.status, StatusCode::OK);
        assert_eq!(
            found.body["results"],
            json!([]),
            "{role} search leaks: {}",
            found.text
        );
        assert_eq!(found.body["truncated"], json!(false));
        for suffix in ["", "/referrals", "/gp-summary"] {
            let hidden = api
                .get(
                    &format!("/api/v1/people/{}{suffix}", cast.opted_out),
                    &token,
                )
                .await;
            let none = api
                .get(&format!("/api/v1/people/{unknown}{suffix}"), &token)
                .await;
            if role == "pharmacist" && suffix == "/referrals" {
                assert_problem(&hidden, 403, "/forbidden", "pharmacist referrals");
                assert_eq!(hidden.text, none.text);
                continue;
            }
            assert_problem(
                &hidden,
                404,
                "/not-found",
                &format!("{role} opted out{suffix}"),
            );
            assert_eq!(hidden.status, none.status, "{role}{suffix}");
            assert_eq!(
                hidden.text, none.text,
                "{role}{suffix}: an opted-out person reads exactly like an unknown id"
            );
        }
        // Even in an emergency.
        let emergency = api
            .call(
                Method::GET,
                &format!("/api/v1/people/{}", cast.opted_out),
                Some(&token),
                &[
                    ("X-Access-Basis", "emergency"),
                    ("X-Access-Reason", "unconscious in ED"),
                ],
                None,
            )
            .await;
        assert_problem(&emergency, 404, "/not-found", "opted out in an emergency");
    }
    // The DPO still sees the consent record.
    let dpo = api.token("dpo").await;
    let c = api
        .get(&format!("/api/v1/consent/{}", cast.opted_out_nhs), &dpo)
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.body["level"], "opted_out");
    assert!(!c.body["history"].as_array().unwrap().is_empty());
}

async fn ask_first_needs_a_basis(api: &Api, cast: &Cast) {
    let token = api.token("clinician").await;
    let path = format!("/api/v1/people/{}", cast.ask_first);
    let refused = api.get(&path, &token).await;
    assert_problem(
        &refused,
        403,
        "/permission-required",
        "ask first without basis",
    );
    assert!(refused.body.get("nhs_number").is_none() && !refused.text.contains("family"));
    let no_reason = api
        .call(
            Method::GET,
            &path,
            Some(&token),
            &[("X-Access-Basis", "permission-given")],
            None,
        )
        .await;
    assert_problem(
        &no_reason,
        400,
        "/invalid-request",
        "basis without a reason",
    );
    assert_eq!(no_reason.body["field"], "X-Access-Reason");
    let bad_basis = api
        .call(
            Method::GET,
            &path,
            Some(&token),
            &[("X-Access-Basis", "because"), ("X-Access-Reason", "asked")],
            None,
        )
        .await;
    assert_eq!(
        bad_basis.body["field"], "X-Access-Basis",
        "{}",
        bad_basis.text
    );
    for basis in ["permission-given", "emergency"] {
        let ok = api
            .call(
                Method::GET,
                &path,
                Some(&token),
                &[
                    ("X-Access-Basis", basis),
                    ("X-Access-Reason", "patient in clinic, agreed"),
                ],
                None,
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{basis}: {}", ok.text);
        assert_eq!(ok.body["consent"], "ask_first");
        assert_eq!(ok.body["id"], cast.ask_first.as_str());
    }
}

async fn deceased_rules(api: &Api, cast: &Cast) {
    let token = api.token("gp").await;
    let hidden = api
        .get(
            &format!("/api/v1/people?nhs_number={}", cast.deceased_nhs),
            &token,
        )
        .await;
    assert_eq!(
        hidden.body["results"],
        json!([]),
        "deceased left out by default"
    );
    let shown = api
        .get(
            &format!(
                "/api/v1/people?nhs_number={}&include_deceased=true",
                cast.deceased_nhs
            ),
            &token,
        )
        .await;
    assert_eq!(
        shown.body["results"].as_array().unwrap().len(),
        1,
        "{}",
        shown.text
    );
    assert!(shown.body["results"][0]["date_of_death"].is_string());
    let gp = api
        .get(
            &format!("/api/v1/people/{}/gp-summary", cast.deceased),
            &token,
        )
        .await;
    assert_eq!(gp.status, StatusCode::OK, "{}", gp.text);
    assert_eq!(gp.body["state"], "closed_after_death");
    assert_eq!(gp.body["alerts"], json!([]));
    let never = api
        .get(
            &format!(
                "/api/v1/people?nhs_number={}&include_deceased=true",
                cast.long_dead_nhs
            ),
            &token,
        )
        .await;
    assert_eq!(
        never.body["results"],
        json!([]),
        "dead more than 8 years: never shown"
    );
    let read = api
        .get(&format!("/api/v1/people/{}", cast.long_dead), &token)
        .await;
    assert_problem(&read, 404, "/not-found", "long dead");
}

async fn purpose_other_than_direct_care_is_refused(api: &Api, cast: &Cast, db: &Database) {
    let token = api.token("gp").await;
    let audit = SqlAuditLog::new(db.clone());
    let before = audit.head().await.unwrap().len;
    let a = api
        .call(
            Method::GET,
            &format!("/api/v1/people/{}", cast.participating),
            Some(&token),
            &[("X-Purpose-Of-Use", "death-review")],
            None,
        )
        .await;
    assert_problem(&a, 403, "/purpose-not-permitted", "death review");
    // Any other declaration is another purpose: not ASCII, empty, on every endpoint.
    let raw_purposes: [&[u8]; 3] = ["revue-décès".as_bytes(), b"", b"direct-care-ish"];
    for raw in raw_purposes {
        for path in [
            format!("/api/v1/people/{}", cast.participating),
            format!("/api/v1/people?nhs_number={}", cast.participating_nhs),
        ] {
            let resp = api
                .http
                .get(format!("{}{path}", api.base))
                .bearer_auth(&token)
                .header(
                    "X-Purpose-Of-Use",
                    reqwest::header::HeaderValue::from_bytes(raw).unwrap(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "purpose {raw:?} on {path}"
            );
        }
    }
    // The DPO's work is not direct care and the policy does not ask it to be: the
    // declared purpose reaches the policy on every endpoint, and the policy decides.
    let events = audit.read(before, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.action == Action::ReadDemographics
                && e.event.purpose.as_str() == "death-review"
                && e.event.outcome == Outcome::Denied(DenyReason::PurposeNotDirectCare)),
        "the refusal is audited: {events:?}"
    );
}

async fn every_person_touched_is_audited(api: &Api, cast: &Cast, db: &Database) {
    let token = api.token("social_worker").await;
    let audit = SqlAuditLog::new(db.clone());
    let before = audit.head().await.unwrap().len;
    let found = api
        .get(
            &format!(
                "/api/v1/people?postcode={}",
                cast.participating_postcode.replace(' ', "%20")
            ),
            &token,
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    let hits: BTreeSet<String> = found.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(hits.contains(&cast.participating), "{}", found.text);
    let events = audit.read(before, 1000).await.unwrap();
    let searches = events
        .iter()
        .filter(|e| e.event.action == Action::SearchPeople && e.event.person.is_none())
        .count();
    assert_eq!(searches, 1, "one event for the search itself");
    let permitted: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event.action == Action::SearchPeople && e.event.outcome == Outcome::Permitted)
        .filter_map(|e| e.event.person.map(|p| p.to_string()))
        .collect();
    assert_eq!(
        permitted, hits,
        "one permitted event per hit, and none for people not shown"
    );

    let before = audit.head().await.unwrap().len;
    let read = api
        .get(
            &format!("/api/v1/people/{}/referrals", cast.participating),
            &token,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let events = audit.read(before, 100).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event.action, Action::ReadReferrals);
    assert_eq!(
        events[0].event.person.unwrap().to_string(),
        cast.participating
    );
    assert_eq!(events[0].event.user.as_str(), "social_worker");
    assert_eq!(events[0].event.client.to_string(), "127.0.0.1");
}

async fn sessions_sign_out_and_lockout(api: &Api) {
    let token = api.token("gp").await;
    let me = api.get("/api/v1/sessions/current", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "gp");
    let out = api
        .call(
            Method::DELETE,
            "/api/v1/sessions/current",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    let after = api.get("/api/v1/sessions/current", &token).await;
    assert_problem(&after, 401, "/unauthenticated", "after sign-out");

    let wrong = api.sign_in("gp", "not-the-password-at-all").await;
    assert_problem(&wrong, 401, "/bad-credentials", "wrong password");
    let unknown = api.sign_in("nobody-here", "not-the-password-at-all").await;
    assert_eq!(
        unknown.text, wrong.text,
        "unknown user reads like a wrong password"
    );

    // A user of its own, so that the demo users stay usable.
    let admin = api.token("system_manager").await;
    let weak = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            &[],
            Some(json!({
            "username": "lockme", "display_name": "Lock Me", "organisation": "DEMO-GP",
            "role": "gp", "password": "password1234"})),
        )
        .await;
    assert_problem(&weak, 400, "/invalid-request", "common password");
    assert_eq!(weak.body["field"], "password");
    let created = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            &[],
            Some(json!({
            "username": "lockme", "display_name": "Lock Me", "organisation": "DEMO-GP",
            "role": "gp", "password": PASSWORD})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let session = api.token("lockme").await;
    for _ in 0..5 {
        let a = api.sign_in("lockme", "wrong-password-again").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let locked = api.sign_in("lockme", PASSWORD).await;
    assert_problem(
        &locked,
        429,
        "/account-locked",
        "sixth attempt, right password",
    );
    // Parallel guesses are counted one after another: of ten wrong guesses sent at
    // once, at most five are tried; the rest, and the right password after them, are
    // refused as locked.
    let racer = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            &[],
            Some(json!({
            "username": "racer", "display_name": "Racer", "organisation": "DEMO-GP",
            "role": "gp", "password": PASSWORD})),
        )
        .await;
    assert_eq!(racer.status, StatusCode::CREATED, "{}", racer.text);
    let answers = join_all((0..10).map(|_| api.sign_in("racer", "wrong-password-again"))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    let after = api.sign_in("racer", PASSWORD).await;
    assert_problem(
        &after,
        429,
        "/account-locked",
        "right password after a burst",
    );
    // Lockout reads the same for a name that does not exist.
    for _ in 0..5 {
        api.sign_in("no-such-user-here", "wrong-password-again")
            .await;
    }
    let ghost = api
        .sign_in("no-such-user-here", "wrong-password-again")
        .await;
    assert_problem(
        &ghost,
        429,
        "/account-locked",
        "unknown names lock like real ones",
    );
    // Disabling ends the live session at once.
    let disabled = api
        .call(
            Method::POST,
            "/api/v1/users/lockme/disable",
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    assert_eq!(disabled.body["disabled"], true);
    let gone = api.get("/api/v1/sessions/current", &session).await;
    assert_problem(&gone, 401, "/unauthenticated", "disabled user's session");
}

/// A small join_all: polls the futures concurrently on this task.
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// A body sent in chunks, with no declared length.
fn chunked(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Chunks(std::vec::IntoIter<Vec<u8>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next().map(Ok))
        }
    }
    Chunks(chunks.into_iter())
}

async fn malformed_input_is_a_4xx_problem(api: &Api, cast: &Cast) {
    let gp = api.token("gp").await;
    let dpo = api.token("dpo").await;
    let admin = api.token("system_manager").await;
    let p = &cast.participating;
    // method, path, token, body, the field the problem must name
    type Case<'a> = (Method, String, &'a str, Option<Value>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/api/v1/people".into(),
            &gp,
            None,
            Some("nhs_number"),
        ),
        (
            Method::GET,
            "/api/v1/people?nhs_number=1234567890".into(),
            &gp,
            None,
            Some("nhs_number"),
        ),
        (
            Method::GET,
            "/api/v1/people?family=Smith".into(),
            &gp,
            None,
            Some("birth_date"),
        ),
        (
            Method::GET,
            "/api/v1/people?family=Smith&birth_date=1970-13-01".into(),
            &gp,
            None,
            Some("birth_date"),
        ),
        (
            Method::GET,
            "/api/v1/people?postcode=NOT A POSTCODE".into(),
            &gp,
            None,
            Some("postcode"),
        ),
        (
            Method::GET,
            "/api/v1/people?postcode=BH1%201AA&include_deceased=maybe".into(),
            &gp,
            None,
            Some("include_deceased"),
        ),
        (
            Method::GET,
            "/api/v1/people/not-a-uuid".into(),
            &gp,
            None,
            Some("id"),
        ),
        (
            Method::GET,
            "/api/v1/people/not-a-uuid/referrals".into(),
            &gp,
            None,
            Some("id"),
        ),
        (
            Method::GET,
            "/api/v1/people/not-a-uuid/gp-summary".into(),
            &gp,
            None,
            Some("id"),
        ),
        (
            Method::GET,
            "/api/v1/people/not-a-uuid/sources".into(),
            &admin,
            None,
            Some("id"),
        ),
        (
            Method::GET,
            "/api/v1/consent/12345".into(),
            &dpo,
            None,
            Some("nhs_number"),
        ),
        (
            Method::GET,
            "/api/v1/identity/abc".into(),
            &dpo,
            None,
            Some("nhs_number"),
        ),
        (
            Method::POST,
            format!("/api/v1/consent/{}/changes", cast.participating_nhs),
            &dpo,
            Some(json!({"change": "delete", "reason": "x"})),
            Some("change"),
        ),
        (
            Method::POST,
            format!("/api/v1/consent/{}/changes", cast.participating_nhs),
            &dpo,
            Some(json!({"reason": "x"})),
            Some("change"),
        ),
        (
            Method::POST,
            format!("/api/v1/consent/{}/changes", cast.participating_nhs),
            &dpo,
            Some(
                json!({"change": "opt_out", "reason": "rep", "representative": {"name": "A B", "relationship": "son", "lacks_capacity_confirmed": false, "authority_confirmed": true, "evidence_reference": "LPA-1"}}),
            ),
            Some("lacks_capacity_confirmed"),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/access-reports/{}?from=yesterday&to=2030-01-01",
                cast.participating_nhs
            ),
            &dpo,
            None,
            Some("from"),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/access-reports/{}?from=2020-01-01",
                cast.participating_nhs
            ),
            &dpo,
            None,
            Some("to"),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/access-reports/{}?from=2020-01-01&to=2021-01-01&format=xml",
                cast.participating_nhs
            ),
            &dpo,
            None,
            Some("format"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            &admin,
            Some(
                json!({"username": "bad name!", "display_name": "X", "organisation": "DEMO-GP", "role": "gp", "password": PASSWORD}),
            ),
            Some("username"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            &admin,
            Some(
                json!({"username": "someone", "display_name": "X", "organisation": "DEMO-GP", "role": "surgeon", "password": PASSWORD}),
            ),
            Some("role"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            &admin,
            Some(
                json!({"username": "someone", "display_name": "X", "organisation": "NOPE", "role": "gp", "password": PASSWORD}),
            ),
            Some("organisation"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            &admin,
            Some(json!({"username": "someone"})),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/users/gp/password".into(),
            &admin,
            Some(json!({"password": "short"})),
            Some("password"),
        ),
        // A number or a boolean where the document says string is refused, not read
        // as its text (poem-openapi's `String` would take it: found by schemathesis).
        (
            Method::PUT,
            "/api/v1/users/clinician/password".into(),
            &admin,
            Some(json!({"password": 123_456_789_012_345_u64})),
            Some("body"),
        ),
        (
            Method::POST,
            "/api/v1/sessions".into(),
            &gp,
            Some(json!({"username": 12345, "password": PASSWORD})),
            Some("body"),
        ),
        (
            Method::POST,
            "/api/v1/organisations".into(),
            &admin,
            Some(json!({"id": "NEW-ORG", "name": true})),
            Some("body"),
        ),
        (
            Method::POST,
            format!("/api/v1/consent/{}/changes", cast.participating_nhs),
            &dpo,
            Some(json!({"change": "ask_first", "reason": 7})),
            Some("body"),
        ),
        (
            Method::POST,
            "/api/v1/organisations".into(),
            &admin,
            Some(json!({"id": "has space", "name": "X"})),
            Some("id"),
        ),
        (
            Method::POST,
            "/api/v1/sessions".into(),
            &gp,
            Some(json!({"username": "gp"})),
            None,
        ),
        (Method::GET, "/api/v1/nothing-here".into(), &gp, None, None),
        (
            Method::PATCH,
            format!("/api/v1/people/{p}"),
            &gp,
            None,
            None,
        ),
    ];
    for (method, path, token, body, field) in cases {
        let a = api
            .call(method.clone(), &path, Some(token), &[], body)
            .await;
        let what = format!("{method} {path}");
        assert!(
            a.status.is_client_error(),
            "{what}: {} {}",
            a.status,
            a.text
        );
        assert!(
            a.content_type.starts_with("application/problem+json"),
            "{what}: {:?} {}",
            a.content_type,
            a.text
        );
        if let Some(field) = field {
            assert_eq!(a.body["field"], field, "{what}: {}", a.text);
        }
    }
    // A body over the limit, and one that does not declare its length.
    let big = api
        .http
        .post(format!("{}/api/v1/sessions", api.base))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"username\":\"gp\",\"password\":\"{}\"}}",
            "x".repeat(200_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::BAD_REQUEST);
    let streamed = api
        .http
        .post(format!("{}/api/v1/sessions", api.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunked(vec![
            vec![b' '; 40_000],
            vec![b' '; 40_000],
        ])))
        .send()
        .await
        .unwrap();
    assert_eq!(
        streamed.status(),
        StatusCode::BAD_REQUEST,
        "a chunked body is capped too"
    );
    // A body that is not JSON at all.
    let raw = api
        .http
        .post(format!("{}/api/v1/sessions", api.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert!(
        raw.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    // Refused before any operation runs: a method no route has, a path that is not
    // UTF-8 (found by schemathesis: their problems carried `"detail": null`).
    for (method, path, status) in [
        (Method::TRACE, "/health", 405),
        (Method::GET, "/api/v1/quarantine/%FF%FE", 400),
    ] {
        let a = api.call(method, path, Some(&admin), &[], None).await;
        assert_eq!(a.status.as_u16(), status, "{path}: {}", a.text);
        assert!(
            a.content_type.starts_with("application/problem+json") && a.body["title"].is_string(),
            "{path}: {}",
            a.text
        );
    }
    // A 405 says which methods the path takes (RFC 9110, 15.5.6).
    let patch = api
        .http
        .request(
            Method::PATCH,
            format!("{}/api/v1/sessions/current", api.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(patch.headers()["allow"], "DELETE, GET, HEAD");
}

async fn service_endpoints(api: &Api) {
    let health = api.call(Method::GET, "/health", None, &[], None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = api.call(Method::GET, "/ready", None, &[], None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let spec = api
        .call(Method::GET, "/openapi.json", None, &[], None)
        .await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(
        spec.body["paths"]["/api/v1/people/{id}"].is_object(),
        "{}",
        &spec.text[..200.min(spec.text.len())]
    );
    // Request bodies list their required fields (the server names a missing one).
    let schemas = &spec.body["components"]["schemas"];
    for (schema, fields) in [
        ("SignInRequest", &["username", "password"][..]),
        (
            "NewUserRequest",
            &[
                "username",
                "display_name",
                "organisation",
                "role",
                "password",
            ][..],
        ),
        ("ConsentChangeRequest", &["change", "reason"][..]),
        ("NewOrganisationRequest", &["id", "name"][..]),
        ("PasswordRequest", &["password"][..]),
    ] {
        assert_eq!(
            schemas[schema]["required"],
            json!(fields),
            "{schema}: {}",
            schemas[schema]
        );
    }
    let docs = api.call(Method::GET, "/docs", None, &[], None).await;
    assert_eq!(docs.status, StatusCode::OK);
    // The portal, with its strict Content-Security-Policy through every layer.
    let portal = api.http.get(format!("{}/", api.base)).send().await.unwrap();
    assert_eq!(portal.status(), StatusCode::OK);
    assert_eq!(
        portal.headers()["content-security-policy"],
        care_web::CONTENT_SECURITY_POLICY
    );
    assert_eq!(portal.headers()["cache-control"], "no-store");
    assert!(portal.text().await.unwrap().contains("/ui/app.js"));
    let metrics = api.call(Method::GET, "/metrics", None, &[], None).await;
    assert!(
        metrics.text.contains("http_requests_total"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("audit_appends_total"));
}

async fn access_report_as_csv(api: &Api, cast: &Cast) {
    let dpo = api.token("dpo").await;
    let a = api
        .get(
            &format!(
                "/api/v1/access-reports/{}?from=2020-01-01&to=2035-01-01&format=csv",
                cast.participating_nhs
            ),
            &dpo,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.content_type.starts_with("text/csv"), "{}", a.content_type);
    let mut lines = a.text.lines();
    assert_eq!(
        lines.next(),
        Some("organisation,role,first_access,last_access,accesses,with_basis,refused")
    );
    assert!(a.text.contains("DEMO-COUNCIL,social_worker"), "{}", a.text);
}

async fn forwarded_for_is_read_with_care(url: &str) {
    let server = start(
        "serve",
        url,
        &[
            ("CARE_ALLOWED_NETWORKS", "127.0.0.0/8"),
            ("CARE_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let api = Api::new(&server);
    // Through the trusted proxy, the forwarded client is the one checked.
    let cases: [(&[u8], bool); 6] = [
        (b"127.0.0.9", true),
        (b"203.0.113.9", false),
        (b"203.0.113.9:4711", false),
        (b"[2001:db8::1]:443", false),
        (b"127.0.0.9, garbage", false),
        (b"\xe9, 127.0.0.9", false),
    ];
    for (raw, allowed) in cases {
        let resp = api
            .http
            .get(format!("{}/api/v1/sessions/current", api.base))
            .header(
                "X-Forwarded-For",
                reqwest::header::HeaderValue::from_bytes(raw).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let expected = if allowed {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(resp.status(), expected, "X-Forwarded-For {raw:?}");
    }
}

async fn allow_list_refuses_other_networks(url: &str, db: &Database) {
    let server = start(
        "serve",
        url,
        &[
            ("CARE_ALLOWED_NETWORKS", "10.0.0.0/8"),
            ("CARE_MLLP_ADDR", "127.0.0.1:0"),
            ("CARE_MLLP_ALLOWED_NETWORKS", "10.1.0.0/16"),
        ],
    );
    // MLLP has its own allow-list: a connection from elsewhere is closed unanswered.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.mllp.as_deref().unwrap())
            .await
            .unwrap();
        let _ = stream
            .write_all(&mllp_frame(&adt(
                "deny-1",
                "20261101090000",
                "DENY1",
                &test_nhs(30),
                "Denied",
            )))
            .await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed without an ACK: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let api = Api::new(&server);
    let refused = api.sign_in("gp", PASSWORD).await;
    assert_problem(
        &refused,
        403,
        "/network-not-allowed",
        "sign-in from outside the allow-list",
    );
    let refused = api
        .call(
            Method::GET,
            "/api/v1/people?nhs_number=9434765919",
            Some("x"),
            &[],
            None,
        )
        .await;
    assert_problem(
        &refused,
        403,
        "/network-not-allowed",
        "read from outside the allow-list",
    );
    for page in ["/", "/ui/app.js"] {
        let refused = api.call(Method::GET, page, None, &[], None).await;
        assert_problem(
            &refused,
            403,
            "/network-not-allowed",
            "the portal from outside the allow-list",
        );
    }
    let health = api.call(Method::GET, "/health", None, &[], None).await;
    assert_eq!(health.status, StatusCode::OK, "liveness stays reachable");
    let (_, _, security) = db.identity_stores();
    let recent = security.recent(20).await.unwrap();
    assert!(
        recent
            .iter()
            .any(|e| e.kind == SecurityEventKind::NetworkRefused
                && e.client.to_string() == "127.0.0.1"),
        "the refusal is in the security log: {recent:?}"
    );
    assert!(
        recent
            .iter()
            .any(|e| e.kind == SecurityEventKind::NetworkRefused
                && e.detail.as_deref() == Some("mllp")),
        "the MLLP refusal is in the security log: {recent:?}"
    );
}

async fn idle_sessions_end(url: &str) {
    let server = start("serve", url, &[("CARE_SESSION_IDLE_TIMEOUT", "2")]);
    let api = Api::new(&server);
    let token = api.token("pharmacist").await;
    // Used every half second, the session lives past its timeout...
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a = api.get("/api/v1/sessions/current", &token).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    // ...and left alone it ends.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let a = api.get("/api/v1/sessions/current", &token).await;
    assert_problem(&a, 401, "/unauthenticated", "idle session");
}

async fn sign_in_is_rate_limited(url: &str, db: &Database) {
    let server = start(
        "serve",
        url,
        &[("CARE_SIGN_IN_PER_MINUTE_PER_ACCOUNT", "3")],
    );
    let api = Api::new(&server);
    for _ in 0..3 {
        let a = api.sign_in("rate-probe", "not-a-password-at-all").await;
        assert_problem(&a, 401, "/bad-credentials", "within the limit");
    }
    let limited = api.sign_in("rate-probe", "not-a-password-at-all").await;
    assert_problem(&limited, 429, "/rate-limited", "over the limit");
    let (_, _, security) = db.identity_stores();
    let recent = security.recent(20).await.unwrap();
    // The System Manager reads the same log over the API.
    let admin = api.token("system_manager").await;
    let listed = api.get("/api/v1/security-events?limit=50", &admin).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let kinds: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"rate_limited") && kinds.contains(&"sign_in_failed"),
        "{kinds:?}"
    );
    assert!(
        !listed.text.contains("not-a-password-at-all"),
        "no password in the log"
    );
    let bad = api.get("/api/v1/security-events?limit=0", &admin).await;
    assert_eq!(bad.body["field"], "limit", "{}", bad.text);
    assert!(
        recent
            .iter()
            .any(|e| e.kind == SecurityEventKind::RateLimited),
        "{recent:?}"
    );
    assert!(
        recent
            .iter()
            .any(|e| e.kind == SecurityEventKind::SignInFailed
                && e.user.as_ref().map(|u| u.as_str()) == Some("rate-probe")),
        "failed sign-ins are security events: {recent:?}"
    );
}

async fn suite(url: &str) {
    // Many sign-ins from one address in a few seconds: the rate limit is tested on its own.
    let server = start(
        "demo",
        url,
        &[
            ("CARE_SIGN_IN_PER_MINUTE_PER_ADDRESS", "1000"),
            ("CARE_SIGN_IN_PER_MINUTE_PER_ACCOUNT", "100"),
            ("CARE_MLLP_ADDR", "127.0.0.1:0"),
        ],
    );
    let api = Api::new(&server);
    let db = Database::connect(url).await.unwrap();
    let cast = cast();
    service_endpoints(&api).await;
    every_endpoint_against_every_role(&api, &cast).await;
    refused_before_input_is_judged(&api, &db).await;
    opted_out_people_are_invisible(&api, &cast).await;
    ask_first_needs_a_basis(&api, &cast).await;
    deceased_rules(&api, &cast).await;
    purpose_other_than_direct_care_is_refused(&api, &cast, &db).await;
    every_person_touched_is_audited(&api, &cast, &db).await;
    access_report_as_csv(&api, &cast).await;
    malformed_input_is_a_4xx_problem(&api, &cast).await;
    sessions_sign_out_and_lockout(&api).await;
    allow_list_refuses_other_networks(url, &db).await;
    idle_sessions_end(url).await;
    forwarded_for_is_read_with_care(url).await;
    sign_in_is_rate_limited(url, &db).await;
    feeds_over_http(&api).await;
    feeds_over_mllp(
        &api,
        server.mllp.as_deref().expect("the MLLP listener started"),
    )
    .await;
    // Metrics name routes, never people.
    let metrics = api.call(Method::GET, "/metrics", None, &[], None).await;
    assert!(
        metrics.text.contains("/api/v1/people/{id}"),
        "{}",
        metrics.text
    );
    assert!(
        !metrics.text.contains(&cast.participating),
        "a person's id in the metrics"
    );
    assert!(
        !metrics.text.contains(&cast.participating_nhs),
        "an NHS number in the metrics"
    );
    // The audit chain is still whole after all that.
    let auditor = api.token("auditor").await;
    let v = api.get("/api/v1/audit/verify", &auditor).await;
    assert_eq!(v.body["valid"], true, "{}", v.text);
}

fn adt(control: &str, time: &str, local: &str, nhs: &str, family: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|{time}||ADT^A01|{control}|P|2.4\r\
         EVN|A01|{time}\r\
         PID|1||{local}^^^RDZ^MR~{nhs}^^^NHS^NH||{family}^Sam||19800101|F|||1 High St^^Poole^^BH15 1AA\r"
    )
}

async fn post_raw(
    api: &Api,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    let mut req = api
        .http
        .post(format!("{}{path}", api.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Answer::of(req).await
}

/// Feed submission over HTTP: per-message outcomes, idempotence, the quarantine and its
/// re-submission, and who may do each.
async fn feeds_over_http(api: &Api) {
    // The OpenAPI document says which bodies a feed may send.
    let doc = api
        .call(Method::GET, "/openapi.json", None, &[], None)
        .await;
    let content =
        &doc.body["paths"]["/api/v1/feeds/{source}/messages"]["post"]["requestBody"]["content"];
    for media in ["application/hl7-v2", "application/fhir+json"] {
        assert!(content.get(media).is_some(), "{media} in {content}");
    }
    let feed = api.token("feed").await;
    let path = "/api/v1/feeds/demo-feed/messages";
    let good_nhs = test_nhs(1);
    let batch = [
        adt("http-1", "20261101090000", "HTTP1", &good_nhs, "Feedwell"),
        adt("http-2", "2026-11-01", "HTTP2", &test_nhs(2), "Broken"),
    ]
    .concat();
    let a = post_raw(
        api,
        path,
        Some(&feed),
        "application/hl7-v2",
        batch.clone().into_bytes(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        (a.body["applied"].as_u64(), a.body["quarantined"].as_u64()),
        (Some(1), Some(1)),
        "{}",
        a.text
    );
    assert_eq!(a.body["messages"][0]["reference"], "http-1");
    assert_eq!(a.body["messages"][1]["outcome"], "quarantined");
    assert!(
        a.body["messages"][1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("EVN-2"),
        "{}",
        a.text
    );
    let quarantined = a.body["messages"][1]["quarantine_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same batch again: the good message changes nothing.
    let again = post_raw(
        api,
        path,
        Some(&feed),
        "application/hl7-v2; charset=utf-8",
        batch.into_bytes(),
    )
    .await;
    assert_eq!(
        (
            again.body["applied"].as_u64(),
            again.body["unchanged"].as_u64()
        ),
        (Some(0), Some(1)),
        "{}",
        again.text
    );
    // The person is there for a clinician, through policy and audit.
    let gp = api.token("gp").await;
    let found = api
        .get(&format!("/api/v1/people?nhs_number={good_nhs}"), &gp)
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert_eq!(
        found.body["results"].as_array().map(Vec::len),
        Some(1),
        "{}",
        found.text
    );

    // Who may submit: the feed account, for its own source only.
    for role in Role::ALL {
        if role == Role::Feed {
            continue;
        }
        let token = api.token(role.as_str()).await;
        let a = post_raw(
            api,
            path,
            Some(&token),
            "application/hl7-v2",
            b"MSH|^~\\&|".to_vec(),
        )
        .await;
        assert_problem(
            &a,
            403,
            "/forbidden",
            &format!("{} submits a feed", role.as_str()),
        );
    }
    let other = post_raw(
        api,
        "/api/v1/feeds/other-source/messages",
        Some(&feed),
        "application/hl7-v2",
        b"MSH|^~\\&|".to_vec(),
    )
    .await;
    assert_problem(
        &other,
        403,
        "/forbidden",
        "a feed account submits for another source",
    );
    let anonymous = post_raw(
        api,
        path,
        None,
        "application/hl7-v2",
        b"MSH|^~\\&|".to_vec(),
    )
    .await;
    assert_problem(&anonymous, 401, "/unauthenticated", "anonymous feed");
    let text = post_raw(api, path, Some(&feed), "text/plain", b"hello".to_vec()).await;
    assert_problem(
        &text,
        415,
        "/unsupported-media-type",
        "a feed in text/plain",
    );
    let unreadable = post_raw(
        api,
        path,
        Some(&feed),
        "application/fhir+json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(unreadable.status, StatusCode::OK, "{}", unreadable.text);
    assert_eq!(
        unreadable.body["quarantined"].as_u64(),
        Some(1),
        "{}",
        unreadable.text
    );

    // The quarantine, for the System Manager.
    let admin = api.token("system_manager").await;
    let list = api
        .get("/api/v1/quarantine?open=true&source=demo-feed", &admin)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == quarantined.as_str()),
        "{}",
        list.text
    );
    let one = api
        .get(&format!("/api/v1/quarantine/{quarantined}"), &admin)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert!(
        one.body["raw"].as_str().unwrap().contains("MSH|^~\\&|PAS"),
        "{}",
        one.text
    );
    assert_eq!(one.body["entry"]["reference"], "http-2");
    let feed_reads = api
        .get(&format!("/api/v1/quarantine/{quarantined}"), &feed)
        .await;
    assert_problem(
        &feed_reads,
        403,
        "/forbidden",
        "a feed account reads the quarantine",
    );
    let resubmit = format!("/api/v1/quarantine/{quarantined}/resubmit");
    let still = api
        .call(Method::POST, &resubmit, Some(&admin), &[], None)
        .await;
    assert_eq!(still.status.as_u16(), 422, "{}", still.text);
    assert!(still.content_type.starts_with("application/problem+json"));
    assert!(
        still.body["detail"].as_str().unwrap().starts_with("EVN-2"),
        "{}",
        still.text
    );
    // A message waiting for a merge: it names HTTP3 with the NHS number HTTP1's record
    // holds, so it is quarantined; once the source merges the two, re-submitting the
    // same bytes applies.
    let alone = adt("http-3", "20261101100000", "HTTP3", "", "Another").replace("~^^^NHS^NH", "");
    let alone = post_raw(
        api,
        path,
        Some(&feed),
        "application/hl7-v2",
        alone.into_bytes(),
    )
    .await;
    assert_eq!(alone.body["applied"].as_u64(), Some(1), "{}", alone.text);
    let waiting = adt("http-4", "20261101110000", "HTTP3", &good_nhs, "Another");
    let waiting = post_raw(
        api,
        path,
        Some(&feed),
        "application/hl7-v2",
        waiting.into_bytes(),
    )
    .await;
    assert_eq!(
        waiting.body["messages"][0]["outcome"], "quarantined",
        "{}",
        waiting.text
    );
    assert!(
        waiting.body["messages"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("merge"),
        "{}",
        waiting.text
    );
    let waiting_id = waiting.body["messages"][0]["quarantine_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let merge = "MSH|^~\\&|PAS|RDZ|CARE|DCR|20261101120000||ADT^A40|http-5|P|2.4\r\
                 EVN|A40|20261101120000\r\
                 PID|1||HTTP1^^^RDZ^MR\r\
                 MRG|HTTP3^^^RDZ^MR\r";
    let merged = post_raw(
        api,
        path,
        Some(&feed),
        "application/hl7-v2",
        merge.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(merged.body["applied"].as_u64(), Some(1), "{}", merged.text);
    let resubmit_waiting = format!("/api/v1/quarantine/{waiting_id}/resubmit");
    let done = api
        .call(Method::POST, &resubmit_waiting, Some(&admin), &[], None)
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["outcome"], "applied", "{}", done.text);
    let twice = api
        .call(Method::POST, &resubmit_waiting, Some(&admin), &[], None)
        .await;
    assert_problem(&twice, 409, "/conflict", "re-submitting a resolved entry");
    let resolved = api
        .get(&format!("/api/v1/quarantine/{waiting_id}"), &admin)
        .await;
    assert_eq!(
        resolved.body["entry"]["resolved_by"], "system_manager",
        "{}",
        resolved.text
    );
    let by_gp = api
        .call(Method::POST, &resubmit, Some(&gp), &[], None)
        .await;
    assert_problem(&by_gp, 403, "/forbidden", "a gp re-submits");
    let bad_id = api
        .call(
            Method::POST,
            "/api/v1/quarantine/nope/resubmit",
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_problem(
        &bad_id,
        400,
        "/invalid-request",
        "a malformed quarantine id",
    );

    // Feed status counts it all.
    let status = api.get("/api/v1/feeds", &admin).await;
    let demo = status.body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "demo-feed")
        .unwrap()
        .clone();
    assert!(demo["applied"].as_u64().unwrap() >= 1, "{demo}");
    assert!(demo["quarantined"].as_u64().unwrap() >= 3, "{demo}");
    assert_eq!(demo["stale"], false, "{demo}");
}

fn mllp_frame(body: &str) -> Vec<u8> {
    let mut f = vec![0x0b];
    f.extend_from_slice(body.as_bytes());
    f.extend_from_slice(&[0x1c, 0x0d]);
    f
}

async fn read_ack(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> String {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buffer.windows(2).position(|w| w == [0x1c, 0x0d]) {
            let start = buffer.iter().position(|&b| b == 0x0b).unwrap();
            let ack = String::from_utf8_lossy(&buffer[start + 1..end]).into_owned();
            buffer.drain(..end + 2);
            return ack;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an ACK within 30 s")
            .unwrap();
        assert!(n > 0, "the listener closed the connection before answering");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn msa(ack: &str) -> (String, String) {
    let line = ack
        .split('\r')
        .find(|l| l.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    let mut fields = line.split('|');
    fields.next();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap_or_default().to_owned(),
    )
}

/// HL7 v2 over MLLP to the real binary: frames split across writes and several in one
/// write, one ACK each (AA applied, AE quarantined with the reason), AR for broken
/// framing.
async fn feeds_over_mllp(api: &Api, addr: &str) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buffer = Vec::new();
    let first = mllp_frame(&adt(
        "mllp-1",
        "20261102090000",
        "MLLP1",
        &test_nhs(11),
        "Framewell",
    ));
    let (a, b) = first.split_at(first.len() / 2);
    stream.write_all(a).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b).await.unwrap();
    let ack = read_ack(&mut stream, &mut buffer).await;
    assert_eq!(msa(&ack), ("AA".to_owned(), "mllp-1".to_owned()), "{ack:?}");
    assert!(
        ack.starts_with("MSH|^~\\&|CARE|DCR|PAS|RDZ|"),
        "sender and receiver swapped: {ack:?}"
    );
    let two = [
        mllp_frame(&adt(
            "mllp-2",
            "20261102090100",
            "MLLP2",
            &test_nhs(12),
            "Twoinone",
        )),
        mllp_frame(&adt(
            "mllp-3",
            "20261102090200",
            "MLLP3",
            "1234567890",
            "Badnumber",
        )),
    ]
    .concat();
    stream.write_all(&two).await.unwrap();
    let ack2 = read_ack(&mut stream, &mut buffer).await;
    let ack3 = read_ack(&mut stream, &mut buffer).await;
    assert_eq!(msa(&ack2).0, "AA", "{ack2:?}");
    let (code, control) = msa(&ack3);
    assert_eq!(
        (code.as_str(), control.as_str()),
        ("AE", "mllp-3"),
        "{ack3:?}"
    );
    assert!(
        ack3.contains("PID-3") && ack3.contains("ERR|"),
        "the reason travels back: {ack3:?}"
    );
    // Bytes outside a frame: AR, and the connection closes.
    stream.write_all(b"MSH|not framed\r").await.unwrap();
    let ar = read_ack(&mut stream, &mut buffer).await;
    assert_eq!(msa(&ar).0, "AR", "{ar:?}");
    let gp = api.token("gp").await;
    for n in [11, 12] {
        let found = api
            .get(&format!("/api/v1/people?nhs_number={}", test_nhs(n)), &gp)
            .await;
        assert_eq!(
            found.body["results"].as_array().map(Vec::len),
            Some(1),
            "{}",
            found.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_http_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("care.db").display());
    suite(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_http_on_postgres() {
    let Ok(base) = std::env::var(POSTGRES_URL) else {
        eprintln!("PostgreSQL end-to-end API tests skipped: set {POSTGRES_URL} to run them");
        return;
    };
    let admin = Database::connect(&base).await.unwrap();
    let name = format!(
        "care_e2e_{}_{}",
        std::process::id(),
        SystemClock.now().timestamp_micros()
    );
    admin
        .connection()
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");
    suite(&url).await;
    admin
        .connection()
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}
