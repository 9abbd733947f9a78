//! The one gate every access passes: decide, append the audit event, and only then
//! answer. A denial is audited and returned as an error; a failure to audit stops the
//! access (fail closed).

use care_access_audit::{AuditEvent, Outcome};
use care_consent::ConsentLevel;
use care_kernel::{Action, Actor, DenyReason, PersonId, Timestamp};

use crate::ports::{AccessRequest, Decision, SubjectState};
use crate::{AccessError, AuditReceipt, Services};

/// One access as the gate sees it: who, when, what, about whom. The policy request and
/// the audit event are both built from it, so they cannot disagree.
#[derive(Debug, Clone)]
pub(crate) struct Access<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) at: Timestamp,
    pub(crate) action: Action,
    pub(crate) person: Option<PersonId>,
    pub(crate) subject: Option<SubjectState>,
    pub(crate) resource: Option<String>,
}

impl<'a> Access<'a> {
    /// An access to no person in particular (yet).
    pub(crate) fn new(actor: &'a Actor, at: Timestamp, action: Action) -> Self {
        Self {
            actor,
            at,
            action,
            person: None,
            subject: None,
            resource: None,
        }
    }

    /// The same access, about this person in this state.
    pub(crate) fn about(&self, person: Option<PersonId>, subject: Option<SubjectState>) -> Self {
        Self {
            person,
            subject,
            ..self.clone()
        }
    }

    /// The same access, naming the part of the record or the kind of query.
    pub(crate) fn on(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// The same access, for another action on the same person.
    pub(crate) fn for_action(&self, action: Action) -> Self {
        Self {
            action,
            ..self.clone()
        }
    }

    pub(crate) fn request(&self) -> AccessRequest {
        AccessRequest {
            role: self.actor.role,
            action: self.action,
            direct_care: self.actor.purpose.is_direct_care(),
            subject: self.subject,
        }
    }

    pub(crate) fn event(&self, outcome: Outcome) -> AuditEvent {
        // The asserted basis is recorded where it mattered: on an `ask_first` record.
        let basis = self
            .subject
            .filter(|s| s.consent == ConsentLevel::AskFirst)
            .and(self.actor.basis.clone());
        AuditEvent {
            at: self.at,
            user: self.actor.user.clone(),
            organisation: self.actor.organisation.clone(),
            role: self.actor.role,
            client: self.actor.client,
            action: self.action,
            person: self.person,
            resource: self.resource.clone(),
            purpose: self.actor.purpose.clone(),
            basis,
            outcome,
        }
    }
}

impl Services {
    /// The policy's decision on an access (no audit: callers that return data go
    /// through [`Services::gate`]).
    pub(crate) fn decide(&self, access: &Access<'_>) -> Decision {
        self.ports.policy.decide(&access.request())
    }

    /// Decides, appends the audit event, and answers.
    pub(crate) async fn gate(&self, access: &Access<'_>) -> Result<AuditReceipt, AccessError> {
        let outcome = match self.decide(access) {
            Decision::Permit => Outcome::Permitted,
            Decision::Deny(reason) => Outcome::Denied(reason),
        };
        self.audit_outcome(access, outcome).await
    }

    /// Appends one event with a known outcome; a denial comes back as its error.
    pub(crate) async fn audit_outcome(
        &self,
        access: &Access<'_>,
        outcome: Outcome,
    ) -> Result<AuditReceipt, AccessError> {
        let chained = self.ports.audit.append(vec![access.event(outcome)]).await?;
        let seq = chained
            .first()
            .map(|e| e.seq)
            .ok_or_else(|| anyhow::anyhow!("the audit log appended nothing"))?;
        match outcome {
            Outcome::Permitted => Ok(AuditReceipt::new(seq)),
            Outcome::Denied(reason) => {
                tracing::info!(target: "security", action = access.action.as_str(), role = access.actor.role.as_str(), reason = reason.as_str(), "access refused");
                Err(AccessError::from_denial(reason))
            }
        }
    }

    /// Audits a refusal and returns the error to answer with (or the audit's own
    /// failure, which outranks it).
    pub(crate) async fn refuse(&self, access: &Access<'_>, reason: DenyReason) -> AccessError {
        match self.audit_outcome(access, Outcome::Denied(reason)).await {
            Err(e) => e,
            Ok(_) => AccessError::from_denial(reason),
        }
    }

    /// Refuses (and audits) a request for `action` that the actor's role or declared
    /// purpose rules out whatever it concerns, before anything the request carries is
    /// judged: an adapter calls it before it validates a request's input, so that a role
    /// that may not do something is refused, and the attempt audited, whatever it sent. The
    /// use case decides again on what it finds; a permitted caller is not audited here.
    pub async fn admit(
        &self,
        actor: &Actor,
        action: Action,
        resource: &str,
    ) -> Result<(), AccessError> {
        self.refuse_early(&Access::new(actor, self.now(), action).on(resource.to_owned()))
            .await
    }

    /// Refuses (and audits) an access that the actor's role or declared purpose rules
    /// out whoever the person is, before anything about the person is looked up: so the
    /// refusal costs the same whether or not the person exists.
    pub(crate) async fn refuse_early(&self, access: &Access<'_>) -> Result<(), AccessError> {
        let subject = access
            .action
            .concerns_a_person()
            .then_some(SubjectState::NEUTRAL);
        let neutral = access.about(None, subject);
        match self.decide(&neutral) {
            Decision::Deny(
                reason @ (DenyReason::RoleNotPermitted | DenyReason::PurposeNotDirectCare),
            ) => Err(self.refuse(&access.about(None, None), reason).await),
            _ => Ok(()),
        }
    }

    /// Audits an access to a person who is not in the record and returns the error to
    /// answer with. Decided with a neutral subject, so that role and purpose refusals
    /// read the same whether or not the person exists; otherwise audited as not found.
    pub(crate) async fn refuse_unknown(&self, access: &Access<'_>) -> AccessError {
        let neutral = access.about(None, Some(SubjectState::NEUTRAL));
        let reason = match self.decide(&neutral) {
            Decision::Deny(
                reason @ (DenyReason::RoleNotPermitted | DenyReason::PurposeNotDirectCare),
            ) => reason,
            _ => DenyReason::NotFound,
        };
        self.refuse(&access.about(None, None), reason).await
    }
}
