//! RFC 9457 problem details: every error this API answers with, and the mapping from
//! the application's errors and from poem's own (unparseable parameters and bodies,
//! unknown paths, wrong methods). 4xx problems name the field at fault; 5xx problems
//! never carry an internal message.

use care_application::{AccessError, AuthError, IngestError, SignInError};
use care_kernel::InvalidValue;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The problem types this API uses. A front end acts on `type`, not on words.
pub mod types {
    /// A request field is missing or invalid (`field` names it).
    pub const INVALID_REQUEST: &str = "https://carerecord.example/problems/invalid-request";
    /// Not signed in, or the session ended.
    pub const UNAUTHENTICATED: &str = "https://carerecord.example/problems/unauthenticated";
    /// Sign-in refused: wrong name or password.
    pub const BAD_CREDENTIALS: &str = "https://carerecord.example/problems/bad-credentials";
    /// Sign-in refused: locked after repeated failures.
    pub const ACCOUNT_LOCKED: &str = "https://carerecord.example/problems/account-locked";
    /// Too many requests.
    pub const RATE_LIMITED: &str = "https://carerecord.example/problems/rate-limited";
    /// The client's address is not on the allow-list.
    pub const NETWORK_REFUSED: &str = "https://carerecord.example/problems/network-not-allowed";
    /// The role may not do this.
    pub const FORBIDDEN: &str = "https://carerecord.example/problems/forbidden";
    /// The declared purpose of use is not direct care.
    pub const PURPOSE_REFUSED: &str = "https://carerecord.example/problems/purpose-not-permitted";
    /// An `ask_first` record: assert permission or an emergency, with a reason.
    pub const PERMISSION_REQUIRED: &str = "https://carerecord.example/problems/permission-required";
    /// No record found (also what an opted-out person looks like).
    pub const NOT_FOUND: &str = "https://carerecord.example/problems/not-found";
    /// The change conflicts with the current state.
    pub const CONFLICT: &str = "https://carerecord.example/problems/conflict";
    /// The method is not allowed on this path.
    pub const METHOD_NOT_ALLOWED: &str = "https://carerecord.example/problems/method-not-allowed";
    /// The body's media type is not accepted.
    pub const UNSUPPORTED_MEDIA_TYPE: &str =
        "https://carerecord.example/problems/unsupported-media-type";
    /// Something failed on the server.
    pub const INTERNAL: &str = "https://carerecord.example/problems/internal";
    /// A dependency (the database) is not reachable.
    pub const UNAVAILABLE: &str = "https://carerecord.example/problems/unavailable";
}

/// An RFC 9457 problem detail.
#[derive(Debug, Clone, Object)]
pub struct ProblemBody {
    /// A URI naming the kind of problem.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, in words fit to show the user.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// The request field at fault, for invalid requests.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// Every error response of the API.
#[derive(Debug, ApiResponse)]
pub enum Problem {
    /// The request is invalid; `field` names what is wrong.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<ProblemBody>),
    /// Not signed in, or the session ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<ProblemBody>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// Refused: role, purpose, network, or an `ask_first` record without a basis.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<ProblemBody>),
    /// No record found.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<ProblemBody>),
    /// The change conflicts with the current state.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<ProblemBody>),
    /// The body's media type is not one the operation takes.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<ProblemBody>),
    /// Too many requests, or a locked account.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<ProblemBody>, #[oai(header = "Retry-After")] u64),
    /// Something failed on the server (no detail is given).
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<ProblemBody>),
    /// A dependency is unavailable.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<ProblemBody>),
}

fn body(status: u16, kind: &str, title: &str, detail: Option<String>) -> Json<ProblemBody> {
    Json(ProblemBody {
        kind: kind.to_owned(),
        title: title.to_owned(),
        status,
        detail,
        field: None,
    })
}

impl Problem {
    /// A request field is invalid.
    pub fn invalid(field: &str, reason: &str) -> Self {
        let mut b = body(
            400,
            types::INVALID_REQUEST,
            "Invalid request",
            Some(format!("{field}: {reason}")),
        );
        b.0.field = Some(field.to_owned());
        Problem::BadRequest(b)
    }

    /// Not signed in.
    pub fn unauthenticated(detail: &str) -> Self {
        Problem::Unauthorized(
            body(
                401,
                types::UNAUTHENTICATED,
                "Not signed in",
                Some(detail.into()),
            ),
            "Bearer".into(),
        )
    }

    /// Refused with a given problem type.
    pub fn forbidden(kind: &str, title: &str, detail: &str) -> Self {
        Problem::Forbidden(body(403, kind, title, Some(detail.into())))
    }

    /// The one answer for an unknown, opted-out or no-longer-shown person.
    pub fn not_found() -> Self {
        Problem::NotFound(body(404, types::NOT_FOUND, "No record found", None))
    }

    /// A conflict.
    pub fn conflict(detail: &str) -> Self {
        Problem::Conflict(body(409, types::CONFLICT, "Conflict", Some(detail.into())))
    }

    /// The problem with a request's input that poem-openapi refused: a parameter that
    /// does not parse (named), a body that does not parse (its field named if the
    /// parser's message names one; the message itself is never echoed, as it can quote
    /// the value sent, a password say), a body of a media type the operation does not
    /// take. `None` for any other error (one reading the request, say).
    pub fn of_refused_input(err: &poem::Error) -> Option<Self> {
        use poem_openapi::error::{ContentTypeError, ParseParamError, ParseRequestPayloadError};
        if let Some(e) = err.downcast_ref::<ParseParamError>() {
            return Some(Problem::invalid(e.name, &e.reason));
        }
        if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
            let field = field_in(&e.reason).unwrap_or_else(|| "body".to_owned());
            return Some(Problem::invalid(
                &field,
                "is not valid JSON of the expected shape (see /openapi.json)",
            ));
        }
        err.downcast_ref::<ContentTypeError>().map(|e| {
            Problem::UnsupportedMediaType(body(
                415,
                types::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                Some(e.to_string()),
            ))
        })
    }

    /// Too many requests.
    pub fn rate_limited(retry_after: u64) -> Self {
        Problem::TooManyRequests(
            body(429, types::RATE_LIMITED, "Too many requests", None),
            retry_after,
        )
    }

    /// A server failure: logged here with its cause, answered without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Problem::Internal(body(500, types::INTERNAL, "Internal error", None))
    }

    /// The database is unavailable.
    pub fn unavailable() -> Self {
        Problem::Unavailable(body(503, types::UNAVAILABLE, "Service unavailable", None))
    }

    /// The status this problem answers with.
    pub fn status(&self) -> u16 {
        match self {
            Problem::BadRequest(_) => 400,
            Problem::Unauthorized(..) => 401,
            Problem::Forbidden(_) => 403,
            Problem::NotFound(_) => 404,
            Problem::Conflict(_) => 409,
            Problem::UnsupportedMediaType(_) => 415,
            Problem::TooManyRequests(..) => 429,
            Problem::Internal(_) => 500,
            Problem::Unavailable(_) => 503,
        }
    }

    /// The problem type.
    pub fn kind(&self) -> &str {
        match self {
            Problem::BadRequest(b)
            | Problem::Unauthorized(b, _)
            | Problem::Forbidden(b)
            | Problem::NotFound(b)
            | Problem::Conflict(b)
            | Problem::UnsupportedMediaType(b)
            | Problem::TooManyRequests(b, _)
            | Problem::Internal(b)
            | Problem::Unavailable(b) => &b.0.kind,
        }
    }
}

impl From<InvalidValue> for Problem {
    fn from(e: InvalidValue) -> Self {
        Problem::invalid(e.field, &e.reason)
    }
}

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound => Problem::not_found(),
            AccessError::PermissionRequired => Problem::forbidden(
                types::PERMISSION_REQUIRED,
                "Permission required",
                "this person asked to be asked first: send X-Access-Basis (permission-given or emergency) and X-Access-Reason",
            ),
            AccessError::PurposeRefused => Problem::forbidden(
                types::PURPOSE_REFUSED,
                "Purpose of use not permitted",
                "the care record may only be used for direct care",
            ),
            AccessError::Forbidden => Problem::forbidden(
                types::FORBIDDEN,
                "Forbidden",
                "your role does not allow this",
            ),
            AccessError::Invalid(v) => v.into(),
            AccessError::Rejected(why) => Problem::conflict(&why),
            AccessError::Unexpected(cause) => Problem::internal(&cause),
        }
    }
}

impl From<IngestError> for Problem {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Forbidden(_) => Problem::forbidden(
                types::FORBIDDEN,
                "Forbidden",
                "this account may not submit for this source",
            ),
            IngestError::UnknownSource(_) => {
                Problem::invalid("source", "is not a registered feed source")
            }
            IngestError::Invalid(v) => v.into(),
            IngestError::Conflict(why) => Problem::conflict(&why),
            IngestError::Busy => Problem::unavailable(),
            IngestError::Unexpected(cause) => Problem::internal(&cause),
        }
    }
}

impl From<SignInError> for Problem {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::InvalidCredentials => Problem::Unauthorized(
                body(
                    401,
                    types::BAD_CREDENTIALS,
                    "Sign-in failed",
                    Some("the user name or password is wrong".into()),
                ),
                "Bearer".into(),
            ),
            SignInError::Locked { retry_after_secs } => Problem::TooManyRequests(
                body(
                    429,
                    types::ACCOUNT_LOCKED,
                    "Account locked",
                    Some("too many failed sign-ins; try again later".into()),
                ),
                retry_after_secs,
            ),
            SignInError::Unexpected(cause) => Problem::internal(&cause),
        }
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unknown => Problem::unauthenticated("not signed in"),
            AuthError::Ended(_) => Problem::unauthenticated("the session has ended; sign in again"),
            AuthError::Disabled => Problem::unauthenticated("the account is disabled"),
            AuthError::Unexpected(cause) => Problem::internal(&cause),
        }
    }
}

/// A problem as a plain poem response (for middleware that answers before the API).
pub fn problem_response(problem: Problem) -> Response {
    problem.into_response()
}

/// Turns any error poem or poem-openapi raised into a problem: parameters and bodies
/// that do not parse (naming the field), unknown paths, wrong methods, unsupported
/// media types. Errors that already carry a problem pass through unchanged.
pub fn from_poem_error(err: poem::Error) -> Response {
    use poem_openapi::error::AuthorizationError;
    if let Some(problem) = Problem::of_refused_input(&err) {
        return problem_response(problem);
    }
    if err.is::<AuthorizationError>() {
        return problem_response(Problem::unauthenticated(
            "send Authorization: Bearer <token> from POST /api/v1/sessions",
        ));
    }
    let status = err.status();
    let response = err.into_response();
    let is_problem = response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return response;
    }
    match status {
        StatusCode::NOT_FOUND => generic(
            status,
            types::NOT_FOUND,
            "Not found",
            Some("no such path".into()),
        ),
        StatusCode::METHOD_NOT_ALLOWED => generic(
            status,
            types::METHOD_NOT_ALLOWED,
            "Method not allowed",
            None,
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => generic(
            status,
            types::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            None,
        ),
        StatusCode::PAYLOAD_TOO_LARGE => generic(
            status,
            types::INVALID_REQUEST,
            "Request body too large",
            None,
        ),
        s if s.is_client_error() => generic(s, types::INVALID_REQUEST, "Invalid request", None),
        s => {
            tracing::error!(status = s.as_u16(), "request failed");
            generic(s, types::INTERNAL, "Internal error", None)
        }
    }
}

fn generic(status: StatusCode, kind: &str, title: &str, detail: Option<String>) -> Response {
    let b = ProblemBody {
        kind: kind.to_owned(),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        field: None,
    };
    // As the typed answers are written: a field without a value is left out.
    let json = serde_json::to_vec(&poem_openapi::types::ToJSON::to_json(&b)).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON)
        .body(json)
}

/// The field a body parse error names: serde's "missing field `x`" / "unknown field
/// `x`", or poem-openapi's `field "x"` / `property "x"`.
fn field_in(reason: &str) -> Option<String> {
    for (open, close) in [
        ("field `", '`'),
        ("field \"", '"'),
        ("property \"", '"'),
        ("field: ", ' '),
    ] {
        if let Some(start) = reason.find(open) {
            let rest = &reason[start + open.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| *c != close && *c != ',')
                .collect();
            if !name.is_empty() && name.len() <= 64 {
                return Some(name);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_parse_errors() {
        assert_eq!(
            field_in("missing field `password` at line 1 column 20").as_deref(),
            Some("password")
        );
        assert_eq!(
            field_in("failed to parse \"X\": field \"username\" is missing").as_deref(),
            Some("username")
        );
        assert_eq!(field_in("expected value at line 1 column 1"), None);
    }
}
