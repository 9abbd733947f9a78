//! The HTTP adapter's feed gateway over `care-feeds` (the adapters do not know each
//! other; the composition root joins them).

use async_trait::async_trait;
use care_application::{
    FeedFormat, FeedReport, FeedSession, IngestError, Resubmission, ResubmitError,
};
use care_feeds::Intake;
use care_http::{FeedBody, FeedGateway};
use care_kernel::UpdateOutcome;

/// HL7 v2, FHIR and CSV through `care-feeds`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Feeds;

#[async_trait]
impl FeedGateway for Feeds {
    async fn submit(
        &self,
        session: FeedSession,
        body: FeedBody<'_>,
    ) -> Result<FeedReport, IngestError> {
        let intake = Intake::new(session);
        match body {
            FeedBody::Hl7v2(raw) => intake.hl7(raw).await,
            FeedBody::Fhir(raw) => intake.fhir(raw).await,
        }
    }

    /// The message as it was received: the System Manager re-submits after a fix to
    /// the mapping or to the record's state (e.g. the merge a message was waiting for),
    /// never with content of their own (nothing is typed into the record).
    async fn resubmit(&self, resubmission: Resubmission) -> Result<UpdateOutcome, ResubmitError> {
        let corrected = None;
        match resubmission.entry().format {
            FeedFormat::Hl7v2 => care_feeds::intake::resubmit_hl7(resubmission, corrected).await,
            FeedFormat::Fhir => care_feeds::fhir::resubmit_fhir(resubmission, corrected).await,
            FeedFormat::CsvReferrals | FeedFormat::CsvAlerts => {
                care_feeds::csv::resubmit_csv(resubmission, corrected).await
            }
        }
    }
}
