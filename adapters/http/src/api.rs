//! The API's operations. Each handler authenticates, turns the request into a use-case
//! call (parsing every field into domain types, so bad input is a 400 naming the field)
//! and turns the view it gets back into the wire format.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use care_application::{
    AccessError, ConsentCommand, IngestError, NewUser, QuarantineFilter, ResubmitError,
};
use care_consent::{EvidenceStatus, Representative};
use care_kernel::{
    AccessBasis, Action, Actor, BasisKind, OrganisationId, PersonId, Purpose, Role, SourceId,
    Timestamp, UserId,
};
use care_person::{NameKey, NhsNumber, Postcode, SearchCriteria};
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi, ResponseContent, SecurityScheme, Tags};
use uuid::Uuid;

use crate::deferred::Deferred;
use crate::dto::*;
use crate::feedbody::{FeedSubmission, FhirBody, Hl7Body};
use crate::network::ClientAddr;
use crate::problem::Problem;
use crate::{AppState, FeedBody};

#[derive(Tags)]
enum ApiTags {
    /// Liveness, readiness and metrics.
    Service,
    /// Sign in and out.
    Sessions,
    /// The clinical record: search, summary, referrals, GP summary.
    People,
    /// The data protection officer: consent and access reports.
    DataProtection,
    /// The auditor: the audit chain.
    Audit,
    /// The System Manager: users, organisations, feeds, data quality.
    Administration,
    /// Feeds: submitting messages (feed accounts) and the quarantine (System Manager).
    Feeds,
}

/// A session token from `POST /api/v1/sessions`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct BearerAuth(Bearer);

/// All the API's operation groups.
pub type Apis = (
    ServiceApi,
    SessionsApi,
    PeopleApi,
    DpoApi,
    AuditApi,
    AdminApi,
);

pub fn apis(state: Arc<AppState>) -> Apis {
    (
        ServiceApi(state.clone()),
        SessionsApi(state.clone()),
        PeopleApi(state.clone()),
        DpoApi(state.clone()),
        AuditApi(state.clone()),
        AdminApi(state),
    )
}

type ApiResult<T> = Result<Json<T>, Problem>;

fn client(req: &Request) -> Result<IpAddr, Problem> {
    req.extensions()
        .get::<ClientAddr>()
        .map(|c| c.0)
        .ok_or_else(|| Problem::internal(&"request reached the API without a client address"))
}

async fn actor(state: &AppState, req: &Request, auth: &BearerAuth) -> Result<Actor, Problem> {
    let client = client(req)?;
    match state.accounts.authenticate(&auth.0.token, client).await {
        // The declared purpose applies to every call, so that the policy (not this
        // adapter) refuses and audits anything but direct care.
        Ok(a) => Ok(a.actor.with_purpose(purpose(req))),
        Err(e) => {
            state.observer.refusal("unauthenticated");
            Err(e.into())
        }
    }
}

/// The actor, admitted to `action`: signed in, and refused (403, audited) if their role
/// or declared purpose rules the action out, before anything else the request carries
/// (path, query, body) is judged. The use case decides again on what it finds.
async fn admitted(
    state: &AppState,
    req: &Request,
    auth: &BearerAuth,
    action: Action,
    resource: &str,
) -> Result<Actor, Problem> {
    let actor = actor(state, req, auth).await?;
    state
        .services
        .admit(&actor, action, resource)
        .await
        .map_err(|e| failed(state, e))?;
    Ok(actor)
}

/// The declared purpose of use, read from the raw header: absent or exactly
/// `direct-care` is direct care; anything else — another purpose, an empty value, bytes
/// that are not ASCII — is another purpose, which the policy refuses and audits.
fn purpose(req: &Request) -> Purpose {
    let Some(raw) = req.headers().get("x-purpose-of-use") else {
        return Purpose::DirectCare;
    };
    let raw = raw.as_bytes();
    if raw.trim_ascii() == Purpose::DIRECT_CARE.as_bytes() {
        return Purpose::DirectCare;
    }
    let shown: String = String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(64)
        .collect();
    Purpose::Other(if shown.is_empty() {
        "(empty)".into()
    } else {
        shown
    })
}

/// A header as text, from its raw bytes (poem-openapi drops values that are not
/// visible ASCII, which would turn a reason with an accent into no reason at all).
fn header_text(req: &Request, name: &'static str) -> Result<Option<String>, Problem> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v.as_bytes())
            .map(|s| Some(s.to_owned()))
            .map_err(|_| Problem::invalid(name, "must be UTF-8 text")),
    }
}

/// Turns an application error into a problem, counting refusals.
fn failed(state: &AppState, e: AccessError) -> Problem {
    let reason = match &e {
        AccessError::Forbidden => Some("role_not_permitted"),
        AccessError::PurposeRefused => Some("purpose_not_direct_care"),
        AccessError::PermissionRequired => Some("permission_required"),
        AccessError::NotFound => Some("not_found"),
        _ => None,
    };
    if let Some(r) = reason {
        state.observer.refusal(r);
    }
    e.into()
}

/// The actor with the basis asserted for an `ask_first` record, if any.
fn with_basis(mut actor: Actor, req: &Request) -> Result<Actor, Problem> {
    let basis = header_text(req, "X-Access-Basis")?;
    let reason = header_text(req, "X-Access-Reason")?;
    match (basis, reason) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(Problem::invalid(
                "X-Access-Basis",
                "X-Access-Reason was sent without X-Access-Basis",
            ));
        }
        (Some(b), reason) => {
            let kind =
                BasisKind::parse(&b).map_err(|e| Problem::invalid("X-Access-Basis", &e.reason))?;
            let basis = AccessBasis::new(kind, reason.as_deref().unwrap_or(""))
                .map_err(|e| Problem::invalid("X-Access-Reason", &e.reason))?;
            actor = actor.with_basis(basis);
        }
    }
    Ok(actor)
}

/// Answers that say "no record" — a 404 for a person, an empty search — are not sent
/// before this long after the request arrived. Refusing a hidden person (opted out, died
/// more than 8 years ago) costs more work than refusing an id nobody holds; without the
/// floor the difference is measurable (docs/BENCHMARKS.md) and tells that the hidden
/// person exists. Normal answers are not delayed.
pub const NO_RECORD_FLOOR: Duration = Duration::from_millis(5);

/// Holds a "no record" problem until [`NO_RECORD_FLOOR`] after `started`; any other
/// problem goes at once.
async fn no_record_late(started: Instant, problem: Problem) -> Problem {
    if matches!(problem, Problem::NotFound(_)) {
        tokio::time::sleep_until((started + NO_RECORD_FLOOR).into()).await;
    }
    problem
}

/// The actor reading one person's record (with any basis asserted) and whose.
async fn record_reader(
    state: &AppState,
    req: &Request,
    auth: &BearerAuth,
    (action, resource): (Action, &str),
    id: &str,
) -> Result<(Actor, PersonId), Problem> {
    let actor = with_basis(admitted(state, req, auth, action, resource).await?, req)?;
    Ok((actor, person_id(id)?))
}

fn person_id(raw: &str) -> Result<PersonId, Problem> {
    Uuid::parse_str(raw.trim())
        .map(PersonId::from_uuid)
        .map_err(|_| Problem::invalid("id", "must be a UUID"))
}

fn nhs_number(field: &'static str, raw: &str) -> Result<NhsNumber, Problem> {
    NhsNumber::parse(raw).map_err(|e| Problem::invalid(field, &e.reason))
}

fn parse_time(field: &'static str, raw: &str, end_of_day: bool) -> Result<Timestamp, Problem> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let date = chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| Problem::invalid(field, "must be a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    let date = if end_of_day {
        date.succ_opt()
            .ok_or_else(|| Problem::invalid(field, "is out of range"))?
    } else {
        date
    };
    Ok(date.and_time(chrono::NaiveTime::MIN).and_utc())
}

// ---- service ------------------------------------------------------------------------

pub struct ServiceApi(Arc<AppState>);

#[derive(ApiResponse)]
enum ReadyResponse {
    /// The database answers.
    #[oai(status = 200)]
    Ready(Json<HealthDto>),
}

#[OpenApi]
impl ServiceApi {
    /// Liveness: the process answers (reachable from any address, for probes).
    #[oai(path = "/health", method = "get", tag = "ApiTags::Service")]
    async fn health(&self) -> Json<HealthDto> {
        Json(HealthDto {
            status: "ok".into(),
        })
    }

    /// Readiness: the database answers.
    #[oai(path = "/ready", method = "get", tag = "ApiTags::Service")]
    async fn ready(&self) -> Result<ReadyResponse, Problem> {
        match self.0.readiness.check().await {
            Ok(()) => Ok(ReadyResponse::Ready(Json(HealthDto {
                status: "ready".into(),
            }))),
            Err(why) => {
                tracing::warn!(%why, "not ready");
                Err(Problem::unavailable())
            }
        }
    }

    /// Prometheus metrics (text exposition format).
    #[oai(path = "/metrics", method = "get", tag = "ApiTags::Service")]
    async fn metrics(&self) -> PlainText<String> {
        PlainText(self.0.observer.render().unwrap_or_default())
    }
}

// ---- sessions -----------------------------------------------------------------------

pub struct SessionsApi(Arc<AppState>);

#[derive(ApiResponse)]
enum SignInResponse {
    /// Signed in.
    #[oai(status = 201)]
    Created(Json<SessionDto>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[OpenApi(prefix_path = "/api/v1")]
impl SessionsApi {
    /// Signs in with a user name and password; returns a bearer token. Failed attempts
    /// count towards lockout (5 in 15 minutes); attempts are rate limited per address
    /// and per account.
    #[oai(path = "/sessions", method = "post", tag = "ApiTags::Sessions")]
    async fn sign_in(
        &self,
        req: &Request,
        body: Json<SignInRequest>,
    ) -> Result<SignInResponse, Problem> {
        let state = &self.0;
        let client = client(req)?;
        let username = required(&body.username, "username")?;
        let password = required(&body.password, "password")?;
        if !state.limits.check(client, username) {
            state.observer.refusal("rate_limited");
            state.observer.sign_in("rate_limited");
            if let Err(e) = state.accounts.record_rate_limited(client, username).await {
                return Err(Problem::internal(&e));
            }
            return Err(Problem::rate_limited(60));
        }
        let _turn = state.limits.one_at_a_time(username).await;
        match state.accounts.sign_in(username, password, client).await {
            Ok(s) => {
                state.observer.sign_in("succeeded");
                Ok(SignInResponse::Created(Json(SessionDto {
                    token: s.token,
                    user: s.user.to_string(),
                    role: s.role.as_str().to_owned(),
                    organisation: s.organisation.to_string(),
                    idle_timeout_seconds: s.idle_timeout_secs,
                    expires_at: s.expires_at,
                })))
            }
            Err(e) => {
                state.observer.sign_in(match &e {
                    care_application::SignInError::InvalidCredentials => "failed",
                    care_application::SignInError::Locked { .. } => "locked",
                    care_application::SignInError::Unexpected(_) => "error",
                });
                Err(e.into())
            }
        }
    }

    /// The current session: who is signed in and when the session ends if unused.
    #[oai(path = "/sessions/current", method = "get", tag = "ApiTags::Sessions")]
    async fn current(&self, req: &Request, auth: BearerAuth) -> ApiResult<WhoAmIDto> {
        let client = client(req)?;
        let a = self
            .0
            .accounts
            .authenticate(&auth.0.token, client)
            .await
            .map_err(|e| {
                self.0.observer.refusal("unauthenticated");
                Problem::from(e)
            })?;
        Ok(Json(WhoAmIDto {
            user: a.actor.user.to_string(),
            role: a.actor.role.as_str().to_owned(),
            organisation: a.actor.organisation.to_string(),
            ends_at: a.ends_at,
        }))
    }

    /// Signs out: the token stops working at once, on every server.
    #[oai(
        path = "/sessions/current",
        method = "delete",
        tag = "ApiTags::Sessions"
    )]
    async fn sign_out(&self, req: &Request, auth: BearerAuth) -> Result<NoContent, Problem> {
        let client = client(req)?;
        // Only a live session can sign out; an ended one answers 401 like any other use.
        actor(&self.0, req, &auth).await?;
        self.0
            .accounts
            .sign_out(&auth.0.token, client)
            .await
            .map_err(Problem::from)?;
        Ok(NoContent::Done)
    }
}

// ---- people -------------------------------------------------------------------------

pub struct PeopleApi(Arc<AppState>);

fn criteria(
    nhs: Option<String>,
    family: Option<String>,
    birth_date: Option<String>,
    postcode: Option<String>,
) -> Result<SearchCriteria, Problem> {
    let given = [
        nhs.is_some(),
        family.is_some() || birth_date.is_some(),
        postcode.is_some(),
    ]
    .into_iter()
    .filter(|g| *g)
    .count();
    if given == 0 {
        return Err(Problem::invalid(
            "nhs_number",
            "search by nhs_number, by family and birth_date, or by postcode",
        ));
    }
    if given > 1 {
        return Err(Problem::invalid(
            "nhs_number",
            "give one of: nhs_number; family and birth_date; postcode",
        ));
    }
    if let Some(n) = nhs {
        return Ok(SearchCriteria::NhsNumber(nhs_number("nhs_number", &n)?));
    }
    if let Some(p) = postcode {
        return Ok(SearchCriteria::Postcode(
            Postcode::parse(&p).map_err(|e| Problem::invalid("postcode", &e.reason))?,
        ));
    }
    let family = family.ok_or_else(|| Problem::invalid("family", "is required with birth_date"))?;
    let birth_date =
        birth_date.ok_or_else(|| Problem::invalid("birth_date", "is required with family"))?;
    let family_prefix =
        NameKey::parse_prefix(&family).map_err(|e| Problem::invalid("family", &e.reason))?;
    let birth_date = chrono::NaiveDate::parse_from_str(birth_date.trim(), "%Y-%m-%d")
        .map_err(|_| Problem::invalid("birth_date", "must be a date, YYYY-MM-DD"))?;
    Ok(SearchCriteria::FamilyAndBirthDate {
        family_prefix,
        birth_date,
    })
}

#[OpenApi(prefix_path = "/api/v1")]
impl PeopleApi {
    /// Searches people by NHS number, by family name (prefix, case- and
    /// accent-insensitive) and birth date, or by postcode. Deceased people only with
    /// `include_deceased=true`. Every hit is audited.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/people", method = "get", tag = "ApiTags::People")]
    async fn search(
        &self,
        req: &Request,
        auth: BearerAuth,
        nhs_number: Query<Option<String>>,
        family: Query<Option<String>>,
        birth_date: Query<Option<String>>,
        postcode: Query<Option<String>>,
        include_deceased: Deferred<Query<Option<bool>>>,
        #[oai(name = "X-Purpose-Of-Use")] _purpose: Header<Option<String>>,
    ) -> ApiResult<SearchResultsDto> {
        let started = Instant::now();
        let actor = admitted(&self.0, req, &auth, Action::SearchPeople, "search").await?;
        let include_deceased = include_deceased.parse()?.0.unwrap_or(false);
        let criteria = criteria(nhs_number.0, family.0, birth_date.0, postcode.0)?;
        let results = self
            .0
            .services
            .search_people(&actor, &criteria, include_deceased)
            .await
            .map_err(|e| failed(&self.0, e))?;
        if results.hits.is_empty() {
            // An empty answer may hide someone (opted out, died long ago): see NO_RECORD_FLOOR.
            tokio::time::sleep_until((started + NO_RECORD_FLOOR).into()).await;
        }
        Ok(Json(SearchResultsDto::from(&results)))
    }

    /// A person's record: demographics with provenance, banner alerts and freshness.
    /// For an `ask_first` person send `X-Access-Basis` and `X-Access-Reason`.
    #[oai(path = "/people/:id", method = "get", tag = "ApiTags::People")]
    async fn summary(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
        #[oai(name = "X-Purpose-Of-Use")] _purpose: Header<Option<String>>,
        #[oai(name = "X-Access-Basis")] _basis: Header<Option<String>>,
        #[oai(name = "X-Access-Reason")] _reason: Header<Option<String>>,
    ) -> ApiResult<PersonSummaryDto> {
        let started = Instant::now();
        let (actor, id) = record_reader(
            &self.0,
            req,
            &auth,
            (Action::ReadDemographics, "summary"),
            &id.0,
        )
        .await?;
        let summary = match self.0.services.person_summary(&actor, id).await {
            Ok(v) => v,
            Err(e) => return Err(no_record_late(started, failed(&self.0, e)).await),
        };
        Ok(Json(PersonSummaryDto::from(&summary)))
    }

    /// A person's children's social-care referrals.
    #[oai(
        path = "/people/:id/referrals",
        method = "get",
        tag = "ApiTags::People"
    )]
    async fn referrals(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
        #[oai(name = "X-Purpose-Of-Use")] _purpose: Header<Option<String>>,
        #[oai(name = "X-Access-Basis")] _basis: Header<Option<String>>,
        #[oai(name = "X-Access-Reason")] _reason: Header<Option<String>>,
    ) -> ApiResult<ReferralListDto> {
        let started = Instant::now();
        let (actor, id) = record_reader(
            &self.0,
            req,
            &auth,
            (Action::ReadReferrals, "referrals"),
            &id.0,
        )
        .await?;
        let list = match self.0.services.list_referrals(&actor, id).await {
            Ok(v) => v,
            Err(e) => return Err(no_record_late(started, failed(&self.0, e)).await),
        };
        Ok(Json(ReferralListDto::from(&list)))
    }

    /// A person's GP summary (closed after death).
    #[oai(
        path = "/people/:id/gp-summary",
        method = "get",
        tag = "ApiTags::People"
    )]
    async fn gp_summary(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
        #[oai(name = "X-Purpose-Of-Use")] _purpose: Header<Option<String>>,
        #[oai(name = "X-Access-Basis")] _basis: Header<Option<String>>,
        #[oai(name = "X-Access-Reason")] _reason: Header<Option<String>>,
    ) -> ApiResult<GpSummaryDto> {
        let started = Instant::now();
        let (actor, id) = record_reader(
            &self.0,
            req,
            &auth,
            (Action::ReadGpSummary, "gp_summary"),
            &id.0,
        )
        .await?;
        let gp = match self.0.services.gp_summary(&actor, id).await {
            Ok(v) => v,
            Err(e) => return Err(no_record_late(started, failed(&self.0, e)).await),
        };
        Ok(Json(GpSummaryDto::from(&gp)))
    }

    /// Each source's own statement of a person's demographics (System Manager, for data
    /// quality).
    #[oai(
        path = "/people/:id/sources",
        method = "get",
        tag = "ApiTags::Administration"
    )]
    async fn sources(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<SourceDemographicsDto> {
        let started = Instant::now();
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::ReadSourceDemographics,
            "source_demographics",
        )
        .await?;
        let id = person_id(&id.0)?;
        let view = match self.0.services.source_demographics(&actor, id).await {
            Ok(v) => v,
            Err(e) => return Err(no_record_late(started, failed(&self.0, e)).await),
        };
        Ok(Json(SourceDemographicsDto::from(&view)))
    }
}

// ---- data protection ----------------------------------------------------------------

pub struct DpoApi(Arc<AppState>);

#[derive(ResponseContent)]
enum ReportContent {
    Json(Json<AccessReportDto>),
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(PlainText<String>),
}

#[derive(ApiResponse)]
enum ReportResponse {
    /// The report, as JSON or (with `format=csv`) CSV.
    #[oai(status = 200)]
    Ok(
        ReportContent,
        #[oai(header = "Content-Disposition")] Option<String>,
    ),
}

fn consent_command(body: &ConsentChangeRequest) -> Result<ConsentCommand, Problem> {
    let command = match required(&body.change, "change")?.trim() {
        "opt_out" => ConsentCommand::OptOut {
            representative: match &body.representative {
                None => None,
                Some(r) => Some(Representative::new(
                    required(&r.name, "representative_name")?,
                    required(&r.relationship, "relationship")?,
                    *required(&r.lacks_capacity_confirmed, "lacks_capacity_confirmed")?,
                    *required(&r.authority_confirmed, "authority_confirmed")?,
                    required(&r.evidence_reference, "evidence_reference")?,
                )?),
            },
        },
        "ask_first" => ConsentCommand::AskFirst,
        "opt_in" => ConsentCommand::OptIn,
        "evidence_status" => {
            let raw = body.evidence_status.as_deref().ok_or_else(|| {
                Problem::invalid(
                    "evidence_status",
                    "is required for an evidence_status change",
                )
            })?;
            ConsentCommand::SetEvidenceStatus(EvidenceStatus::parse(raw)?)
        }
        other => {
            return Err(Problem::invalid(
                "change",
                &format!("must be opt_out, ask_first, opt_in or evidence_status, not {other:?}"),
            ));
        }
    };
    if body.representative.is_some() && !matches!(command, ConsentCommand::OptOut { .. }) {
        return Err(Problem::invalid(
            "representative",
            "only an opt_out has a representative",
        ));
    }
    Ok(command)
}

#[OpenApi(prefix_path = "/api/v1")]
impl DpoApi {
    /// A person's consent by NHS number, with its full history (DPO).
    #[oai(
        path = "/consent/:nhs_number",
        method = "get",
        tag = "ApiTags::DataProtection"
    )]
    async fn consent(
        &self,
        req: &Request,
        auth: BearerAuth,
        nhs_number: Path<String>,
    ) -> ApiResult<ConsentDto> {
        let actor = admitted(&self.0, req, &auth, Action::AdministerConsent, "consent").await?;
        let nhs = self::nhs_number("nhs_number", &nhs_number.0)?;
        let view = self
            .0
            .services
            .consent(&actor, &nhs)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(ConsentDto::from(&view)))
    }

    /// Records a consent change (DPO): opt out (by the person or a representative), ask
    /// first, opt back in, or the status of a representative's evidence.
    #[oai(
        path = "/consent/:nhs_number/changes",
        method = "post",
        tag = "ApiTags::DataProtection"
    )]
    async fn change_consent(
        &self,
        req: &Request,
        auth: BearerAuth,
        nhs_number: Path<String>,
        body: Deferred<Json<ConsentChangeRequest>>,
    ) -> ApiResult<ConsentDto> {
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::AdministerConsent,
            "consent:change",
        )
        .await?;
        let body = body.parse()?;
        let nhs = self::nhs_number("nhs_number", &nhs_number.0)?;
        let command = consent_command(&body)?;
        let reason = required(&body.reason, "reason")?;
        let view = self
            .0
            .services
            .change_consent(&actor, &nhs, command, reason)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(ConsentDto::from(&view)))
    }

    /// A person's identity only, to be sure who the NHS number belongs to (DPO).
    #[oai(
        path = "/identity/:nhs_number",
        method = "get",
        tag = "ApiTags::DataProtection"
    )]
    async fn identity(
        &self,
        req: &Request,
        auth: BearerAuth,
        nhs_number: Path<String>,
    ) -> ApiResult<SearchHitDto> {
        let actor = admitted(&self.0, req, &auth, Action::FindIdentity, "identity").await?;
        let nhs = self::nhs_number("nhs_number", &nhs_number.0)?;
        let view = self
            .0
            .services
            .find_identity(&actor, &nhs)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(SearchHitDto::from(&view.identity)))
    }

    /// Which organisations accessed a person's record, when and in what role, over
    /// `[from, to)` (dates are whole days: `to` inclusive). `format=csv` for CSV.
    #[oai(
        path = "/access-reports/:nhs_number",
        method = "get",
        tag = "ApiTags::DataProtection"
    )]
    async fn access_report(
        &self,
        req: &Request,
        auth: BearerAuth,
        nhs_number: Path<String>,
        from: Deferred<Query<String>>,
        to: Deferred<Query<String>>,
        format: Query<Option<String>>,
    ) -> Result<ReportResponse, Problem> {
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::RunAccessReport,
            "access_report",
        )
        .await?;
        let nhs = self::nhs_number("nhs_number", &nhs_number.0)?;
        let from = parse_time("from", &from.parse()?.0, false)?;
        let to = parse_time("to", &to.parse()?.0, true)?;
        let csv = match format.0.as_deref().map(str::trim) {
            None | Some("json") => false,
            Some("csv") => true,
            Some(_) => return Err(Problem::invalid("format", "must be json or csv")),
        };
        let report = self
            .0
            .services
            .access_report(&actor, &nhs, from, to)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(if csv {
            ReportResponse::Ok(
                ReportContent::Csv(PlainText(access_report_csv(&report))),
                Some("attachment; filename=\"access-report.csv\"".into()),
            )
        } else {
            ReportResponse::Ok(
                ReportContent::Json(Json(AccessReportDto::from(&report))),
                None,
            )
        })
    }
}

// ---- audit --------------------------------------------------------------------------

pub struct AuditApi(Arc<AppState>);

#[OpenApi(prefix_path = "/api/v1")]
impl AuditApi {
    /// Verifies the whole audit chain (auditor). The verification is itself audited.
    #[oai(path = "/audit/verify", method = "get", tag = "ApiTags::Audit")]
    async fn verify(&self, req: &Request, auth: BearerAuth) -> ApiResult<VerificationDto> {
        let actor = actor(&self.0, req, &auth).await?;
        let v = self
            .0
            .services
            .verify_audit(&actor)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(VerificationDto::from(&v)))
    }
}

// ---- administration -----------------------------------------------------------------

pub struct AdminApi(Arc<AppState>);

#[derive(ApiResponse)]
enum UserCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<UserDto>),
}

#[derive(ApiResponse)]
enum OrganisationCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<OrganisationDto>),
}

fn username(raw: &str) -> Result<UserId, Problem> {
    UserId::parse(raw).map_err(|e| Problem::invalid("username", &e.reason))
}

#[OpenApi(prefix_path = "/api/v1")]
impl AdminApi {
    /// Every user (System Manager).
    #[oai(path = "/users", method = "get", tag = "ApiTags::Administration")]
    async fn users(&self, req: &Request, auth: BearerAuth) -> ApiResult<Vec<UserDto>> {
        let actor = actor(&self.0, req, &auth).await?;
        let users = self
            .0
            .accounts
            .users(&actor)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(users.value.iter().map(UserDto::from).collect()))
    }

    /// Creates a user (System Manager).
    #[oai(path = "/users", method = "post", tag = "ApiTags::Administration")]
    async fn create_user(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Deferred<Json<NewUserRequest>>,
    ) -> Result<UserCreated, Problem> {
        let actor = admitted(&self.0, req, &auth, Action::ManageUsers, "users:create").await?;
        let body = body.parse()?;
        let new = NewUser {
            user: username(required(&body.username, "username")?)?,
            display_name: required(&body.display_name, "display_name")?.0.clone(),
            organisation: OrganisationId::parse(required(&body.organisation, "organisation")?)?,
            role: Role::parse(required(&body.role, "role")?)?,
            feed_source: body
                .feed_source
                .as_ref()
                .map(|source| SourceId::parse(source))
                .transpose()?,
            password: required(&body.password, "password")?.0.clone(),
        };
        let user = self
            .0
            .accounts
            .create_user(&actor, new)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(UserCreated::Created(Json(UserDto::from(&user.value))))
    }

    /// Disables a user: they cannot sign in and their sessions end at once.
    #[oai(
        path = "/users/:username/disable",
        method = "post",
        tag = "ApiTags::Administration"
    )]
    async fn disable_user(
        &self,
        req: &Request,
        auth: BearerAuth,
        username: Path<String>,
    ) -> ApiResult<UserDto> {
        let actor = admitted(&self.0, req, &auth, Action::ManageUsers, "users:disable").await?;
        let user = self::username(&username.0)?;
        let done = self
            .0
            .accounts
            .disable_user(&actor, &user)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(UserDto::from(&done.value)))
    }

    /// Enables a disabled user.
    #[oai(
        path = "/users/:username/enable",
        method = "post",
        tag = "ApiTags::Administration"
    )]
    async fn enable_user(
        &self,
        req: &Request,
        auth: BearerAuth,
        username: Path<String>,
    ) -> ApiResult<UserDto> {
        let actor = admitted(&self.0, req, &auth, Action::ManageUsers, "users:enable").await?;
        let user = self::username(&username.0)?;
        let done = self
            .0
            .accounts
            .enable_user(&actor, &user)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(UserDto::from(&done.value)))
    }

    /// Sets a user's password (checked against the policy); ends their sessions.
    #[oai(
        path = "/users/:username/password",
        method = "put",
        tag = "ApiTags::Administration"
    )]
    async fn reset_password(
        &self,
        req: &Request,
        auth: BearerAuth,
        username: Path<String>,
        body: Deferred<Json<PasswordRequest>>,
    ) -> ApiResult<UserDto> {
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::ManageUsers,
            "users:reset_password",
        )
        .await?;
        let body = body.parse()?;
        let user = self::username(&username.0)?;
        let done = self
            .0
            .accounts
            .reset_password(&actor, &user, required(&body.password, "password")?)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(UserDto::from(&done.value)))
    }

    /// The newest security events, newest first (System Manager): sign-ins succeeded,
    /// failed and locked, sign-outs, network refusals, rate limiting.
    #[oai(
        path = "/security-events",
        method = "get",
        tag = "ApiTags::Administration"
    )]
    async fn security_events(
        &self,
        req: &Request,
        auth: BearerAuth,
        limit: Deferred<Query<Option<usize>>>,
    ) -> ApiResult<Vec<SecurityEventDto>> {
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::ManageUsers,
            "security_events:list",
        )
        .await?;
        let limit = limit.parse()?.0.unwrap_or(100);
        let events = self
            .0
            .accounts
            .security_events(&actor, limit)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(
            events.value.iter().map(SecurityEventDto::from).collect(),
        ))
    }

    /// Every organisation (System Manager).
    #[oai(
        path = "/organisations",
        method = "get",
        tag = "ApiTags::Administration"
    )]
    async fn organisations(
        &self,
        req: &Request,
        auth: BearerAuth,
    ) -> ApiResult<Vec<OrganisationDto>> {
        let actor = actor(&self.0, req, &auth).await?;
        let orgs = self
            .0
            .accounts
            .organisations(&actor)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(orgs.value.iter().map(OrganisationDto::from).collect()))
    }

    /// Creates an organisation (System Manager).
    #[oai(
        path = "/organisations",
        method = "post",
        tag = "ApiTags::Administration"
    )]
    async fn create_organisation(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Deferred<Json<NewOrganisationRequest>>,
    ) -> Result<OrganisationCreated, Problem> {
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::ManageUsers,
            "organisations:create",
        )
        .await?;
        let body = body.parse()?;
        let id = OrganisationId::parse(required(&body.id, "id")?)
            .map_err(|e| Problem::invalid("id", &e.reason))?;
        let name = required(&body.name, "name")?;
        let org = self
            .0
            .accounts
            .create_organisation(&actor, id, name)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(OrganisationCreated::Created(Json(OrganisationDto::from(
            &org.value,
        ))))
    }

    /// Every feed source: last message, counters, and whether it is stale (System
    /// Manager).
    #[oai(path = "/feeds", method = "get", tag = "ApiTags::Administration")]
    async fn feeds(&self, req: &Request, auth: BearerAuth) -> ApiResult<FeedStatusDto> {
        let actor = actor(&self.0, req, &auth).await?;
        let status = self
            .0
            .services
            .feed_status(&actor)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(FeedStatusDto::from(&status)))
    }

    /// A feed account submits messages for its own source: `application/hl7-v2` (one
    /// HL7 v2 message, several, or an FHS/BHS batch) or `application/fhir+json` (a FHIR
    /// R4 Bundle of Patient, ServiceRequest, Flag and AllergyIntolerance). The answer
    /// says, per message, whether it was applied, changed nothing, or was quarantined
    /// with its reason; nothing is dropped. A storage failure answers 5xx and the
    /// messages may be sent again (applying is idempotent).
    #[oai(
        path = "/feeds/:source/messages",
        method = "post",
        tag = "ApiTags::Feeds"
    )]
    async fn submit_feed(
        &self,
        req: &Request,
        auth: BearerAuth,
        source: Path<String>,
        body: Deferred<FeedSubmission>,
    ) -> ApiResult<FeedReportDto> {
        let actor = admitted(&self.0, req, &auth, Action::SubmitFeed, "source").await?;
        let body = body.parse()?;
        let source =
            SourceId::parse(&source.0).map_err(|e| Problem::invalid("source", &e.reason))?;
        let session = self
            .0
            .services
            .open_feed(&actor, &source)
            .await
            .map_err(|e| ingest_failed(&self.0, e))?;
        let body = match &body {
            FeedSubmission::Hl7(Hl7Body(raw)) => FeedBody::Hl7v2(raw),
            FeedSubmission::Fhir(FhirBody(raw)) => FeedBody::Fhir(raw),
        };
        let report = self
            .0
            .feeds
            .submit(session, body)
            .await
            .map_err(|e| ingest_failed(&self.0, e))?;
        Ok(Json(FeedReportDto::from(&report)))
    }

    /// The quarantine: feed messages that could not be applied, newest first, with why
    /// (System Manager; audited). `open=true` leaves out those already re-submitted.
    #[oai(path = "/quarantine", method = "get", tag = "ApiTags::Feeds")]
    async fn quarantine(
        &self,
        req: &Request,
        auth: BearerAuth,
        source: Query<Option<String>>,
        open: Deferred<Query<Option<bool>>>,
        limit: Deferred<Query<Option<usize>>>,
    ) -> ApiResult<Vec<QuarantineEntryDto>> {
        let actor = admitted(&self.0, req, &auth, Action::ViewFeedStatus, "quarantine").await?;
        let source = source
            .0
            .as_deref()
            .map(SourceId::parse)
            .transpose()
            .map_err(|e| Problem::invalid("source", &e.reason))?;
        let filter = QuarantineFilter {
            source,
            open_only: open.parse()?.0.unwrap_or(false),
        };
        let list = self
            .0
            .services
            .quarantined(&actor, &filter, limit.parse()?.0.unwrap_or(100))
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(
            list.entries.iter().map(QuarantineEntryDto::from).collect(),
        ))
    }

    /// One quarantined message with its content (System Manager; audited).
    #[oai(path = "/quarantine/:id", method = "get", tag = "ApiTags::Feeds")]
    async fn quarantined_message(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<QuarantineMessageDto> {
        let actor = admitted(&self.0, req, &auth, Action::ViewFeedStatus, "quarantine").await?;
        let id = quarantine_id(&id.0)?;
        let (entry, _) = self
            .0
            .services
            .quarantined_message(&actor, id)
            .await
            .map_err(|e| failed(&self.0, e))?;
        Ok(Json(QuarantineMessageDto::from(&entry)))
    }

    /// Re-submits a quarantined message, exactly as it was received, after a fix — to
    /// the mapping, or to the record's state (e.g. the merge it was waiting for) — and
    /// resolves the entry (System Manager; audited). A message with wrong content is
    /// corrected at its source system and sent again, never typed in here. The message's
    /// own source time still orders it: re-submitting an old message never overwrites
    /// newer data. A message that still fails answers 422 with the reason and stays in
    /// the quarantine.
    #[oai(
        path = "/quarantine/:id/resubmit",
        method = "post",
        tag = "ApiTags::Feeds"
    )]
    async fn resubmit(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
    ) -> Result<ResubmitResponse, Problem> {
        let actor = admitted(
            &self.0,
            req,
            &auth,
            Action::ResubmitQuarantine,
            "quarantine:resubmit",
        )
        .await?;
        let id = quarantine_id(&id.0)?;
        let resubmission = self
            .0
            .services
            .open_resubmission(&actor, id)
            .await
            .map_err(|e| failed(&self.0, e))?;
        let withheld = resubmission.withheld();
        match self.0.feeds.resubmit(resubmission).await {
            Ok(outcome) => Ok(ResubmitResponse::Applied(Json(ResubmittedDto::new(
                id, outcome,
            )))),
            Err(ResubmitError::StillFailing(reason)) => Ok(ResubmitResponse::StillFailing(Json(
                crate::problem::ProblemBody {
                    kind: crate::problem::types::INVALID_REQUEST.to_owned(),
                    title: "The message still cannot be applied".to_owned(),
                    status: 422,
                    detail: Some(if withheld {
                        care_application::WITHHELD.to_owned()
                    } else {
                        reason
                    }),
                    field: None,
                },
            ))),
            Err(ResubmitError::Ingest(e)) => Err(ingest_failed(&self.0, e)),
        }
    }
}

#[derive(ApiResponse)]
enum ResubmitResponse {
    /// Applied; the entry is resolved.
    #[oai(status = 200)]
    Applied(Json<ResubmittedDto>),
    /// The message still cannot be applied; the entry stays open.
    #[oai(status = 422, content_type = "application/problem+json")]
    StillFailing(Json<crate::problem::ProblemBody>),
}

fn quarantine_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw.trim()).map_err(|_| Problem::invalid("id", "must be a UUID"))
}

fn ingest_failed(state: &AppState, e: IngestError) -> Problem {
    if matches!(e, IngestError::Forbidden(_)) {
        state.observer.refusal("wrong_source");
    }
    e.into()
}
