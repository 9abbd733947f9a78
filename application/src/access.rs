//! Shared machinery for access-policy adapters: the finite space of access requests,
//! the one rule for the reason of a denial, and a compiled decision table.
//!
//! A policy adapter only has to say whether a request is permitted (casbin does, from
//! the operator's policy files). Why a request is denied follows from that alone, by the
//! precedence in [`AccessPolicy`](crate::AccessPolicy)'s contract, so every adapter gives
//! the same reasons. Because the request space is small (roles × actions × purpose ×
//! subject states), an adapter can evaluate it all once, at load, into a
//! [`DecisionTable`], and answer each access with an array lookup.

use care_consent::ConsentLevel;
use care_kernel::{Action, BasisKind, DenyReason, Role};
use care_person::VitalStatus;

use crate::ports::{AccessRequest, Decision, SubjectState};

const BASES: [Option<BasisKind>; 3] = [
    None,
    Some(BasisKind::PermissionGiven),
    Some(BasisKind::Emergency),
];

/// Every subject state: consent level × vital status × asserted basis.
pub fn subject_states() -> impl Iterator<Item = SubjectState> + Clone {
    ConsentLevel::ALL.iter().flat_map(|&consent| {
        VitalStatus::ALL.into_iter().flat_map(move |vital| {
            BASES.into_iter().map(move |basis| SubjectState {
                consent,
                vital,
                basis,
            })
        })
    })
}

/// Every access request there is.
pub fn all_requests() -> impl Iterator<Item = AccessRequest> {
    Role::ALL.into_iter().flat_map(|role| {
        Action::ALL.iter().flat_map(move |&action| {
            [true, false].into_iter().flat_map(move |direct_care| {
                std::iter::once(None)
                    .chain(subject_states().map(Some))
                    .map(move |subject| AccessRequest {
                        role,
                        action,
                        direct_care,
                        subject,
                    })
            })
        })
    })
}

/// Decides a request from a "permitted?" predicate, giving a denial its reason by the
/// precedence of the policy contract: role, then purpose (both whatever the person's
/// state, so neither reveals whether a person exists), then consent, then vital status.
pub fn decide_with(permits: impl Fn(&AccessRequest) -> bool, request: &AccessRequest) -> Decision {
    if permits(request) {
        return Decision::Permit;
    }
    let any_state = |direct_care: bool| {
        std::iter::once(None)
            .chain(subject_states().map(Some))
            .any(|subject| {
                permits(&AccessRequest {
                    direct_care,
                    subject,
                    ..*request
                })
            })
    };
    if !any_state(true) {
        return Decision::Deny(DenyReason::RoleNotPermitted);
    }
    if !request.direct_care && !any_state(false) {
        return Decision::Deny(DenyReason::PurposeNotDirectCare);
    }
    let Some(subject) = request.subject else {
        return Decision::Deny(DenyReason::RoleNotPermitted);
    };
    let consent_reason = match subject.consent {
        ConsentLevel::OptedOut => Some(DenyReason::OptedOut),
        ConsentLevel::AskFirst => Some(DenyReason::PermissionRequired),
        ConsentLevel::Participating => None,
    };
    let with = |consent: ConsentLevel, vital: VitalStatus| {
        permits(&AccessRequest {
            subject: Some(SubjectState {
                consent,
                vital,
                ..subject
            }),
            ..*request
        })
    };
    let reason = if consent_reason.is_some() && with(ConsentLevel::Participating, subject.vital) {
        consent_reason
    } else if subject.vital != VitalStatus::Alive && with(subject.consent, VitalStatus::Alive) {
        Some(DenyReason::DeceasedBeyondRetention)
    } else if with(ConsentLevel::Participating, VitalStatus::Alive) {
        consent_reason.or(Some(DenyReason::DeceasedBeyondRetention))
    } else {
        None
    };
    Decision::Deny(reason.unwrap_or(DenyReason::RoleNotPermitted))
}

/// Every request's decision, computed once: a lookup per access.
#[derive(Debug, Clone)]
pub struct DecisionTable {
    decisions: Vec<Decision>,
}

const STATES: usize = 1 + 3 * 3 * 3;

fn index(request: &AccessRequest) -> usize {
    let role = Role::ALL
        .iter()
        .position(|r| *r == request.role)
        .unwrap_or(0);
    let action = request.action as usize;
    let purpose = usize::from(!request.direct_care);
    let subject = match request.subject {
        None => 0,
        Some(s) => {
            let consent = s.consent as usize;
            let vital = s.vital as usize;
            let basis = match s.basis {
                None => 0,
                Some(BasisKind::PermissionGiven) => 1,
                Some(BasisKind::Emergency) => 2,
            };
            1 + (consent * 3 + vital) * 3 + basis
        }
    };
    ((role * Action::ALL.len() + action) * 2 + purpose) * STATES + subject
}

impl DecisionTable {
    /// Evaluates `permits` on every request and derives each denial's reason.
    pub fn compile(permits: impl Fn(&AccessRequest) -> bool) -> Self {
        let size = Role::ALL.len() * Action::ALL.len() * 2 * STATES;
        let mut allowed = vec![false; size];
        for request in all_requests() {
            allowed[index(&request)] = permits(&request);
        }
        let lookup = |r: &AccessRequest| allowed[index(r)];
        let mut decisions = vec![Decision::Deny(DenyReason::RoleNotPermitted); size];
        for request in all_requests() {
            decisions[index(&request)] = decide_with(lookup, &request);
        }
        Self { decisions }
    }

    /// The decision for one request.
    pub fn decide(&self, request: &AccessRequest) -> Decision {
        self.decisions
            .get(index(request))
            .copied()
            .unwrap_or(Decision::Deny(DenyReason::RoleNotPermitted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_request_space_is_indexed_without_collisions() {
        let indices: HashSet<usize> = all_requests().map(|r| index(&r)).collect();
        let count = all_requests().count();
        assert_eq!(indices.len(), count);
        assert_eq!(count, Role::ALL.len() * Action::ALL.len() * 2 * STATES);
        assert_eq!(indices.iter().max(), Some(&(count - 1)));
    }

    #[test]
    fn reasons_follow_the_precedence() {
        // A toy policy: gps may read demographics for direct care of participating,
        // living people.
        let permits = |r: &AccessRequest| {
            r.role == Role::Gp
                && r.action == Action::ReadDemographics
                && r.direct_care
                && r.subject.is_some_and(|s| {
                    s.consent == ConsentLevel::Participating && s.vital == VitalStatus::Alive
                })
        };
        let req = |role, direct_care, consent, vital| AccessRequest {
            role,
            action: Action::ReadDemographics,
            direct_care,
            subject: Some(SubjectState {
                consent,
                vital,
                basis: None,
            }),
        };
        use ConsentLevel::*;
        use VitalStatus::*;
        let d = |r| decide_with(permits, &r);
        assert_eq!(
            d(req(Role::Gp, true, Participating, Alive)),
            Decision::Permit
        );
        assert_eq!(
            d(req(Role::Auditor, false, OptedOut, Alive)),
            Decision::Deny(DenyReason::RoleNotPermitted)
        );
        assert_eq!(
            d(req(Role::Gp, false, OptedOut, Alive)),
            Decision::Deny(DenyReason::PurposeNotDirectCare)
        );
        assert_eq!(
            d(req(Role::Gp, true, OptedOut, Alive)),
            Decision::Deny(DenyReason::OptedOut)
        );
        assert_eq!(
            d(req(Role::Gp, true, AskFirst, Deceased)),
            Decision::Deny(DenyReason::PermissionRequired)
        );
        assert_eq!(
            d(req(Role::Gp, true, Participating, DeceasedBeyondRetention)),
            Decision::Deny(DenyReason::DeceasedBeyondRetention)
        );
        let table = DecisionTable::compile(permits);
        for r in all_requests() {
            assert_eq!(table.decide(&r), decide_with(permits, &r), "{r:?}");
        }
    }
}
