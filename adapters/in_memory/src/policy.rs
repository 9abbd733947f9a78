use care_application::access::DecisionTable;
use care_application::{AccessPolicy, AccessRequest, Decision};
use care_consent::ConsentLevel;
use care_kernel::{Action, Role};
use care_person::VitalStatus;

/// SPEC §2 and the consent levels of §3, written out in Rust. It is the reference the
/// operator-editable casbin policy is tested against, and the policy of tests that do
/// not want to load files.
#[derive(Debug, Clone)]
pub struct SpecPolicy {
    table: DecisionTable,
}

impl Default for SpecPolicy {
    fn default() -> Self {
        Self {
            table: DecisionTable::compile(Self::permits),
        }
    }
}

impl SpecPolicy {
    /// Whether SPEC permits the request.
    pub fn permits(request: &AccessRequest) -> bool {
        use Action::*;
        let role = request.role;
        let action = request.action;
        let subject = request.subject;
        // Nobody sees a record more than 8 years after death, and nobody but the DPO
        // (who must find them to act on their consent or run their report) sees an
        // opted-out person.
        let shown = |dpo: bool| {
            subject.is_some_and(|s| {
                dpo || (s.vital != VitalStatus::DeceasedBeyondRetention
                    && s.consent != ConsentLevel::OptedOut)
            })
        };
        match role {
            Role::Gp | Role::Clinician | Role::SocialWorker | Role::Pharmacist => {
                let may = match action {
                    SearchPeople | ReadDemographics | ReadBannerAlerts | ReadGpSummary => true,
                    ReadReferrals => role != Role::Pharmacist,
                    _ => false,
                };
                // Search shows identity only, to pick the person; opening an ask-first
                // record needs a basis asserted.
                let basis_ok = subject.is_some_and(|s| {
                    s.consent != ConsentLevel::AskFirst
                        || action == SearchPeople
                        || s.basis.is_some()
                });
                may && request.direct_care && shown(false) && basis_ok
            }
            Role::SystemManager => match action {
                ReadSourceDemographics => shown(false),
                ManageUsers | ViewFeedStatus | ResubmitQuarantine => subject.is_none(),
                _ => false,
            },
            Role::Dpo => match action {
                FindIdentity | AdministerConsent | RunAccessReport => shown(true),
                _ => false,
            },
            Role::Auditor => action == VerifyAudit && subject.is_none(),
            Role::Feed => action == SubmitFeed && subject.is_none(),
        }
    }
}

impl AccessPolicy for SpecPolicy {
    fn decide(&self, request: &AccessRequest) -> Decision {
        self.table.decide(request)
    }
}
