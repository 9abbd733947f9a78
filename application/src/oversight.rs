//! Oversight: the DPO's access report and the auditor's verification of the chain.

use care_access_audit::{ChainVerifier, access_report};
use care_kernel::{Action, Actor, InvalidValue, Timestamp};
use care_person::NhsNumber;

use crate::AuditReceipt;
use crate::ports::SourceInfo;
use crate::views::{AccessReport, ChainVerification};
use crate::{AccessError, Services, gate::Access};

/// Events read per page while verifying the chain (bounded memory for any chain).
const VERIFY_PAGE: usize = 10_000;

impl Services {
    /// Which organisations looked at a person's record, when and in what role, over
    /// `[from, to)` — including looks at records later merged into theirs.
    pub async fn access_report(
        &self,
        actor: &Actor,
        nhs: &NhsNumber,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<AccessReport, AccessError> {
        if to <= from {
            return Err(InvalidValue::new("to", "must be after from").into());
        }
        let now = self.now();
        let (person, receipt) = self
            .gate_known_nhs(
                Access::new(actor, now, Action::RunAccessReport).on("access_report"),
                nhs,
            )
            .await?;
        let mut events = self.ports.audit.for_person(person.id(), from, to).await?;
        for retired in person.merged_from() {
            events.extend(self.ports.audit.for_person(*retired, from, to).await?);
        }
        // Report under one id: the record as it is now.
        for e in &mut events {
            e.person = Some(person.id());
        }
        Ok(AccessReport {
            person: person.id(),
            from,
            to,
            rows: access_report(&events, person.id(), from, to),
            receipt,
        })
    }

    /// Verifies the whole audit chain against its head, page by page. The verification
    /// is itself audited first, so it verifies its own event too.
    pub async fn verify_audit(&self, actor: &Actor) -> Result<ChainVerification, AccessError> {
        let now = self.now();
        let receipt = self
            .gate(&Access::new(actor, now, Action::VerifyAudit))
            .await?;
        let head = self.ports.audit.head().await?;
        let mut verifier = ChainVerifier::new();
        let mut next = 0u64;
        let result = 'verify: {
            while next < head.len {
                let want = usize::try_from(head.len - next)
                    .unwrap_or(VERIFY_PAGE)
                    .min(VERIFY_PAGE);
                let page = self.ports.audit.read(next, want).await?;
                if page.is_empty() {
                    break;
                }
                for event in &page {
                    if let Err(broken) = verifier.push(event) {
                        break 'verify Err(broken);
                    }
                    next += 1;
                }
            }
            verifier.finish(&head)
        };
        if let Err(broken) = &result {
            tracing::error!(target: "security", position = broken.position(), "audit chain verification failed: {broken}");
        }
        Ok(ChainVerification {
            head,
            result,
            receipt,
        })
    }
}

/// One feed source as the System Manager sees it.
#[derive(Debug, Clone)]
pub struct FeedSourceStatus {
    /// The source, its activity and counters.
    pub info: SourceInfo,
    /// Quiet for longer than its expected interval.
    pub stale: bool,
}

/// Every feed source's status.
#[derive(Debug, Clone)]
pub struct FeedStatus {
    /// By source id.
    pub sources: Vec<FeedSourceStatus>,
    receipt: AuditReceipt,
}

impl FeedStatus {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

impl Services {
    /// Feed status (System Manager): each source's last message, counters, and whether
    /// it is stale.
    pub async fn feed_status(&self, actor: &Actor) -> Result<FeedStatus, AccessError> {
        let now = self.now();
        let receipt = self
            .gate(&Access::new(actor, now, Action::ViewFeedStatus).on("feeds"))
            .await?;
        let sources = self
            .ports
            .sources
            .list()
            .await?
            .into_iter()
            .map(|info| FeedSourceStatus {
                stale: info.is_stale(now),
                info,
            })
            .collect();
        Ok(FeedStatus { sources, receipt })
    }
}
