//! A JSON request body read when the handler asks for it, not before the handler runs:
//! poem-openapi parses a `Json<T>` body before the operation's code, so a role that may
//! not use the operation at all would be told its body is malformed (and the attempt go
//! unaudited). With [`JsonBody`] the handler first admits the caller (refusing and
//! auditing a role or purpose the operation rules out), then parses.

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::ParseFromJSON;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::feedbody::media_type;
use crate::problem::Problem;

/// The media type the document gives for a JSON body.
const JSON: &str = "application/json; charset=utf-8";

/// A JSON body of type `T`, checked (media type, JSON, shape) when the handler calls
/// [`JsonBody::parse`]. The document shows it as `Json<T>` would.
pub struct JsonBody<T>(Result<T, Problem>);

impl<T> JsonBody<T> {
    /// The body, or the problem with it: 415 for another media type, 400 naming the
    /// field for JSON that does not parse as `T`.
    pub fn parse(self) -> Result<T, Problem> {
        self.0
    }
}

/// `application/json`, or an `application/…+json` type, as poem-openapi's `Json` takes.
fn is_json(content_type: &str) -> bool {
    let media = media_type(content_type);
    media == "application/json"
        || media
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

fn parsed<T: ParseFromJSON>(data: &[u8]) -> Result<T, Problem> {
    let value = if data.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(data).map_err(|e| Problem::unparsed_body(&e.to_string()))?
    };
    T::parse_from_json(Some(value)).map_err(|e| Problem::unparsed_body(&e.into_message()))
}

impl<'a, T: ParseFromJSON> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: JSON,
                schema: T::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let parsed = match request.content_type() {
            None => Err(Problem::unsupported_media_type(
                "send the body as application/json",
            )),
            Some(other) if !is_json(other) => Err(Problem::unsupported_media_type(&format!(
                "the body must be application/json, not {}",
                media_type(other)
            ))),
            // Read (within the server's body limit) but not parsed yet.
            Some(_) => Ok(parsed(
                &<Vec<u8> as FromRequest>::from_request(request, body).await?,
            )),
        };
        Ok(Self(parsed.and_then(|result| result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/xml",
            "text/json",
            "multipart/form-data",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }

    #[test]
    fn a_body_that_does_not_parse_names_its_field_and_never_echoes_it() {
        let wrong: Result<crate::dto::SignInRequest, Problem> =
            parsed(br#"{"username": "gp", "password": 12345678901234}"#);
        let problem = wrong.expect_err("a number is not a password");
        assert_eq!(problem.status(), 400);
        let text = format!("{problem:?}");
        assert!(!text.contains("12345678901234"), "{text}");
        let not_json: Result<crate::dto::SignInRequest, Problem> = parsed(b"{");
        assert_eq!(not_json.map(|_| ()).map_err(|p| p.status()), Err(400));
    }
}
