//! The bodies a feed submits, as the OpenAPI document names them: HL7 v2 text and FHIR
//! JSON, read as bytes (the feed parsers decide what they hold). A content type is
//! matched on its media type alone, so `application/hl7-v2; charset=utf-8` is HL7 v2.

use poem::{Request, RequestBody};
use poem_openapi::ApiRequest;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};

/// The media type of a `Content-Type` value, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn bytes_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        format: Some("binary"),
        ..MetaSchema::new("string")
    }))
}

/// HL7 v2 (ER7, pipe-delimited): one message, several, or an FHS/BHS batch.
#[derive(Debug)]
pub struct Hl7Body(pub Vec<u8>);

impl Payload for Hl7Body {
    const CONTENT_TYPE: &'static str = "application/hl7-v2";

    fn check_content_type(content_type: &str) -> bool {
        matches!(
            media_type(content_type).as_str(),
            "application/hl7-v2" | "x-application/hl7-v2+er7"
        )
    }

    fn schema_ref() -> MetaSchemaRef {
        bytes_schema()
    }
}

impl ParsePayload for Hl7Body {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(
            <Vec<u8> as poem::FromRequest>::from_request(request, body).await?,
        ))
    }
}

/// FHIR R4 JSON: a Bundle (of any type) or one resource.
#[derive(Debug)]
pub struct FhirBody(pub Vec<u8>);

impl Payload for FhirBody {
    const CONTENT_TYPE: &'static str = "application/fhir+json";

    fn check_content_type(content_type: &str) -> bool {
        media_type(content_type) == "application/fhir+json"
    }

    fn schema_ref() -> MetaSchemaRef {
        bytes_schema()
    }
}

impl ParsePayload for FhirBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(
            <Vec<u8> as poem::FromRequest>::from_request(request, body).await?,
        ))
    }
}

/// A feed submission.
#[derive(Debug, ApiRequest)]
pub enum FeedSubmission {
    /// HL7 v2 messages.
    Hl7(Hl7Body),
    /// FHIR R4 JSON.
    Fhir(FhirBody),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_match_without_their_parameters() {
        assert!(Hl7Body::check_content_type("application/hl7-v2"));
        assert!(Hl7Body::check_content_type(
            "Application/HL7-v2; charset=UTF-8"
        ));
        assert!(Hl7Body::check_content_type("x-application/hl7-v2+er7"));
        assert!(!Hl7Body::check_content_type("text/plain"));
        assert!(FhirBody::check_content_type(
            "application/fhir+json;fhirVersion=4.0"
        ));
        assert!(!FhirBody::check_content_type("application/json"));
    }
}
