//! Request input read when the handler asks for it, not before the handler runs.
//! poem-openapi extracts an operation's parameters and body before the operation's code:
//! a role that may not use the operation at all would be told that its input is
//! malformed (400, 415), and the attempt go unaudited. Wrapped in [`Deferred`], an
//! extractor's refusal of the input is kept for the handler, which first admits the
//! caller (refusing and auditing a role or purpose the operation rules out) and then
//! asks for the input. The document shows the wrapped extractor as it is.

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaParamIn, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::problem::Problem;

/// An extractor (`Json<T>`, `Query<T>`, a request enum) whose refusal of the input
/// waits for [`Deferred::parse`]. The input is still read and parsed before the handler
/// runs; only the verdict waits. Not deferred: failures to read the request at all (a
/// body over the size limit, a broken connection), an `#[oai(validator…)]` on the
/// parameter, and path parameters (poem-openapi finds those by the type name `Path`:
/// keep them `Path<String>` and parse in the handler).
pub struct Deferred<E>(Result<E, Problem>);

impl<E> Deferred<E> {
    /// The input, or the problem with it: 400 naming the parameter or field, 415 for
    /// a body of a media type the operation does not take.
    pub fn parse(self) -> Result<E, Problem> {
        self.0
    }
}

impl<'a, E: ApiExtractor<'a> + Send> ApiExtractor<'a> for Deferred<E> {
    const TYPES: &'static [ApiExtractorType] = E::TYPES;
    const PARAM_IS_REQUIRED: bool = E::PARAM_IS_REQUIRED;

    type ParamType = E::ParamType;
    type ParamRawType = E::ParamRawType;

    fn register(registry: &mut Registry) {
        E::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        E::param_in()
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        E::param_schema_ref()
    }

    fn request_meta() -> Option<MetaRequest> {
        E::request_meta()
    }

    fn param_raw_type(&self) -> Option<&Self::ParamRawType> {
        self.0.as_ref().ok().and_then(E::param_raw_type)
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // Boxed as poem-openapi boxes its own extractors' futures: without it the
        // operation's future is not provably `Send` (rust-lang/rust#100013).
        let input: std::pin::Pin<Box<dyn Future<Output = poem::Result<E>> + Send + '_>> =
            Box::pin(E::from_request(request, body, param_opts));
        match input.await {
            Ok(input) => Ok(Self(Ok(input))),
            Err(e) => match Problem::of_refused_input(&e) {
                Some(problem) => Ok(Self(Err(problem))),
                None => Err(e),
            },
        }
    }
}
