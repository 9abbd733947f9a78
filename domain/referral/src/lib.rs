//! Children's social-care referrals (SPEC §3 "Referral"): what a council tells the care
//! record about a child's referral, its lifecycle, and the rule that an older update never
//! overwrites a newer one.

use care_kernel::{
    Date, InvalidValue, PersonId, ReferralId, Source, Timestamp, UpdateOrder, UpdateOutcome,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

care_kernel::named_enum!(
    /// Where a referral status stands in its lifecycle.
    ReferralStatus, "status" {
        /// Received; a decision on it is awaited.
        AwaitingDecision => "awaiting_decision",
        /// Accepted and allocated to a worker.
        Accepted => "accepted",
        /// Closed with no further action.
        ClosedNoFurtherAction => "closed_no_further_action",
        /// Closed and transferred to another service or area.
        ClosedTransferred => "closed_transferred",
    }
);

impl ReferralStatus {
    /// Whether the referral is closed.
    pub const fn is_closed(self) -> bool {
        matches!(
            self,
            ReferralStatus::ClosedNoFurtherAction | ReferralStatus::ClosedTransferred
        )
    }

    const fn stage(self) -> u8 {
        match self {
            ReferralStatus::AwaitingDecision => 0,
            ReferralStatus::Accepted => 1,
            ReferralStatus::ClosedNoFurtherAction | ReferralStatus::ClosedTransferred => 2,
        }
    }

    /// The lifecycle: a referral moves forward from awaiting a decision, to accepted, to
    /// closed (a decision can also close it directly). It never moves back, and a closed
    /// referral stays closed the way it was closed: a re-referral is a new referral.
    /// The relation is transitive, so skipping a stage (a missed message) is allowed.
    pub const fn may_become(self, next: ReferralStatus) -> bool {
        if self.is_closed() {
            return self as u8 == next as u8;
        }
        next.stage() >= self.stage()
    }
}

care_kernel::named_enum!(
    /// Who made the referral.
    ReferralSource, "referral_source" {
        /// Police.
        Police => "police",
        /// A school or education service.
        School => "school",
        /// A health visitor.
        HealthVisitor => "health_visitor",
        /// A GP or other health professional.
        Health => "health",
        /// The child or family themselves.
        SelfReferral => "self",
        /// A relative or member of the public.
        Family => "family",
        /// Another local authority.
        LocalAuthority => "local_authority",
        /// Anonymous.
        Anonymous => "anonymous",
        /// Anything else.
        Other => "other",
    }
);

care_kernel::named_enum!(
    /// The child's level of involvement with children's social care.
    InvolvementLevel, "involvement" {
        /// Early help.
        EarlyHelp => "early_help",
        /// Child in need.
        ChildInNeed => "child_in_need",
        /// Child protection plan.
        ChildProtectionPlan => "child_protection_plan",
        /// Looked-after child.
        LookedAfterChild => "looked_after_child",
    }
);

/// The referral's content as one message from its source states it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReferralDetails {
    // Field order is the tie-break order for statements with the same source time
    // (derived `Ord`): the further-on status wins, so the outcome never depends on which
    // of two simultaneous statements arrives first.
    status: ReferralStatus,
    received: Date,
    team: String,
    referral_source: ReferralSource,
    closed: Option<Date>,
    involvement: Option<InvolvementLevel>,
}

impl ReferralDetails {
    /// Validates one statement of a referral: a team is named; a closed referral has a
    /// closed date on or after the date received, and an open one has none.
    pub fn new(
        received: Date,
        team: &str,
        referral_source: ReferralSource,
        status: ReferralStatus,
        closed: Option<Date>,
        involvement: Option<InvolvementLevel>,
    ) -> Result<Self, InvalidValue> {
        let team = team.split_whitespace().collect::<Vec<_>>().join(" ");
        if team.is_empty() || team.chars().count() > 200 {
            return Err(InvalidValue::new("team", "must be 1 to 200 characters"));
        }
        match (status.is_closed(), closed) {
            (true, None) => {
                return Err(InvalidValue::new(
                    "closed_date",
                    "a closed referral needs its closed date",
                ));
            }
            (false, Some(_)) => {
                return Err(InvalidValue::new(
                    "closed_date",
                    "an open referral has no closed date",
                ));
            }
            (true, Some(c)) if c < received => {
                return Err(InvalidValue::new(
                    "closed_date",
                    "cannot be before the date received",
                ));
            }
            _ => {}
        }
        Ok(Self {
            received,
            team,
            referral_source,
            status,
            closed,
            involvement,
        })
    }

    /// Date received.
    pub fn received(&self) -> Date {
        self.received
    }
    /// Specialty or team referred to.
    pub fn team(&self) -> &str {
        &self.team
    }
    /// Who referred.
    pub fn referral_source(&self) -> ReferralSource {
        self.referral_source
    }
    /// Lifecycle status.
    pub fn status(&self) -> ReferralStatus {
        self.status
    }
    /// Date closed, for closed referrals.
    pub fn closed(&self) -> Option<Date> {
        self.closed
    }
    /// Level of involvement, when the source states one.
    pub fn involvement(&self) -> Option<InvolvementLevel> {
        self.involvement
    }
}

/// Refusals of an update to a referral.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferralError {
    /// The update would move the referral backwards or reopen it.
    #[error("a referral cannot go from {from} to {to}")]
    InvalidTransition {
        /// The stored status.
        from: &'static str,
        /// The status the update asked for.
        to: &'static str,
    },
    /// The update comes from another source than the referral's.
    #[error("the update's source is not the referral's source")]
    WrongSource,
}

/// A referral of a child to children's social care, as its source last stated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    id: ReferralId,
    person: PersonId,
    source: Source,
    source_ref: String,
    details: ReferralDetails,
    source_time: Timestamp,
    version: u64,
}

impl Referral {
    /// A referral first heard of: any status is accepted at creation, since a source may
    /// start sending in the middle of a referral's life.
    pub fn new(
        id: ReferralId,
        person: PersonId,
        source: Source,
        source_ref: &str,
        details: ReferralDetails,
        source_time: Timestamp,
    ) -> Result<Self, InvalidValue> {
        let source_ref = source_ref.trim();
        if source_ref.is_empty() || source_ref.len() > 64 {
            return Err(InvalidValue::new(
                "referral_id",
                "must be 1 to 64 characters",
            ));
        }
        if source_ref.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "referral_id",
                "must not contain control characters",
            ));
        }
        Ok(Self {
            id,
            person,
            source,
            source_ref: source_ref.to_owned(),
            details,
            source_time,
            version: 0,
        })
    }

    /// The version loaded (repositories use it for optimistic locking; 0 when new).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Set by repositories when they store or load the referral.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The internal id.
    pub fn id(&self) -> ReferralId {
        self.id
    }
    /// The child.
    pub fn person(&self) -> PersonId {
        self.person
    }
    /// The source system that owns the referral.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// The source's own reference for it.
    pub fn source_ref(&self) -> &str {
        &self.source_ref
    }
    /// The referral as last stated.
    pub fn details(&self) -> &ReferralDetails {
        &self.details
    }
    /// The source time of the statement held.
    pub fn source_time(&self) -> Timestamp {
        self.source_time
    }

    /// Applies a statement of the referral by source time. An older one is `Stale` and
    /// changes nothing; the same one again is `Unchanged`; a newer one that repeats what
    /// is held moves the source time on (so later-arriving older statements stay stale);
    /// a newer one that breaks the lifecycle is refused so that the feed can quarantine
    /// it. Two different statements with the same source time are simultaneous: the
    /// one further on wins, whatever the arrival order, without a lifecycle check.
    pub fn apply(
        &mut self,
        source: &Source,
        details: ReferralDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, ReferralError> {
        if source.id != self.source.id {
            return Err(ReferralError::WrongSource);
        }
        match UpdateOrder::of(self.source_time, source_time) {
            UpdateOrder::Older => Ok(UpdateOutcome::Stale),
            UpdateOrder::SameTime if details == self.details => Ok(UpdateOutcome::Unchanged),
            UpdateOrder::SameTime if details < self.details => Ok(UpdateOutcome::Stale),
            UpdateOrder::SameTime => {
                self.details = details;
                Ok(UpdateOutcome::Applied)
            }
            UpdateOrder::Newer => {
                if !self.details.status.may_become(details.status) {
                    return Err(ReferralError::InvalidTransition {
                        from: self.details.status.as_str(),
                        to: details.status.as_str(),
                    });
                }
                self.details = details;
                self.source_time = source_time;
                Ok(UpdateOutcome::Applied)
            }
        }
    }

    /// Moves the referral to the survivor of a merge.
    pub fn reassign(&mut self, survivor: PersonId) {
        self.person = survivor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReferralStatus::*;
    use care_kernel::{SourceId, SourceKind};
    use proptest::prelude::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }
    fn day(d: u32) -> Date {
        Date::from_ymd_opt(2026, 1, d).unwrap()
    }
    fn council() -> Source {
        Source::new(SourceId::parse("council").unwrap(), SourceKind::SocialCare)
    }
    fn details(status: ReferralStatus) -> ReferralDetails {
        let closed = status.is_closed().then(|| day(20));
        ReferralDetails::new(
            day(1),
            "Children's MASH",
            ReferralSource::School,
            status,
            closed,
            Some(InvolvementLevel::ChildInNeed),
        )
        .unwrap()
    }
    fn referral(status: ReferralStatus, t: i64) -> Referral {
        Referral::new(
            ReferralId::from_uuid(uuid::Uuid::from_u128(1)),
            PersonId::from_uuid(uuid::Uuid::from_u128(2)),
            council(),
            "REF-1",
            details(status),
            at(t),
        )
        .unwrap()
    }

    #[test]
    fn lifecycle_moves_forward_and_closed_stays_closed() {
        assert!(AwaitingDecision.may_become(Accepted));
        assert!(AwaitingDecision.may_become(ClosedNoFurtherAction));
        assert!(Accepted.may_become(ClosedTransferred));
        assert!(Accepted.may_become(Accepted));
        assert!(!Accepted.may_become(AwaitingDecision));
        assert!(!ClosedNoFurtherAction.may_become(Accepted));
        assert!(!ClosedNoFurtherAction.may_become(ClosedTransferred));
        assert!(ClosedTransferred.may_become(ClosedTransferred));
    }

    #[test]
    fn closed_date_goes_with_closed_status() {
        let team = "MASH";
        assert_eq!(
            ReferralDetails::new(
                day(1),
                team,
                ReferralSource::Police,
                ClosedTransferred,
                None,
                None
            )
            .unwrap_err()
            .field,
            "closed_date"
        );
        assert!(
            ReferralDetails::new(
                day(1),
                team,
                ReferralSource::Police,
                Accepted,
                Some(day(2)),
                None
            )
            .is_err()
        );
        assert!(
            ReferralDetails::new(
                day(5),
                team,
                ReferralSource::Police,
                ClosedNoFurtherAction,
                Some(day(2)),
                None
            )
            .is_err()
        );
        assert_eq!(
            ReferralDetails::new(day(1), " ", ReferralSource::Police, Accepted, None, None)
                .unwrap_err()
                .field,
            "team"
        );
    }

    #[test]
    fn an_older_update_never_overwrites_a_newer_one() {
        let mut r = referral(Accepted, 10);
        assert_eq!(
            r.apply(&council(), details(AwaitingDecision), at(5)),
            Ok(UpdateOutcome::Stale)
        );
        assert_eq!(r.details().status(), Accepted);
        assert_eq!(
            r.apply(&council(), details(Accepted), at(10)),
            Ok(UpdateOutcome::Unchanged)
        );
        assert_eq!(
            r.apply(&council(), details(ClosedNoFurtherAction), at(20)),
            Ok(UpdateOutcome::Applied)
        );
        assert_eq!(r.details().closed(), Some(day(20)));
    }

    #[test]
    fn a_newer_repeat_moves_the_source_time_on_so_older_statements_stay_stale() {
        let mut r = referral(Accepted, 10);
        assert_eq!(
            r.apply(&council(), details(Accepted), at(30)),
            Ok(UpdateOutcome::Applied)
        );
        assert_eq!(r.source_time(), at(30));
        assert_eq!(
            r.apply(&council(), details(ClosedNoFurtherAction), at(20)),
            Ok(UpdateOutcome::Stale)
        );
        assert_eq!(r.details().status(), Accepted);
    }

    #[test]
    fn simultaneous_statements_resolve_alike_whatever_the_arrival_order() {
        for (a, b) in [
            (Accepted, ClosedNoFurtherAction),
            (ClosedNoFurtherAction, ClosedTransferred),
            (AwaitingDecision, Accepted),
        ] {
            let mut x = referral(a, 10);
            let mut y = referral(b, 10);
            assert!(x.apply(&council(), details(b), at(10)).is_ok());
            assert!(y.apply(&council(), details(a), at(10)).is_ok());
            assert_eq!(x.details(), y.details(), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn a_newer_update_that_reopens_a_closed_referral_is_refused() {
        let mut r = referral(ClosedNoFurtherAction, 10);
        assert_eq!(
            r.apply(&council(), details(Accepted), at(20)),
            Err(ReferralError::InvalidTransition {
                from: "closed_no_further_action",
                to: "accepted"
            })
        );
        assert_eq!(r.details().status(), ClosedNoFurtherAction);
    }

    #[test]
    fn only_the_owning_source_updates_a_referral() {
        let mut r = referral(Accepted, 10);
        let other = Source::new(SourceId::parse("acute").unwrap(), SourceKind::Acute);
        assert_eq!(
            r.apply(&other, details(Accepted), at(20)),
            Err(ReferralError::WrongSource)
        );
    }

    #[test]
    fn names_round_trip() {
        for s in ReferralStatus::ALL {
            assert_eq!(ReferralStatus::parse(s.as_str()), Ok(*s));
        }
        for s in ReferralSource::ALL {
            assert_eq!(ReferralSource::parse(s.as_str()), Ok(*s));
        }
        for s in InvolvementLevel::ALL {
            assert_eq!(InvolvementLevel::parse(s.as_str()), Ok(*s));
        }
        assert!(ReferralStatus::parse("open").is_err());
    }

    /// A lawful history: statuses that never go back, at distinct increasing times.
    fn lawful_history() -> impl Strategy<Value = Vec<(ReferralStatus, i64)>> {
        (0usize..4, prop::collection::vec(0u8..3, 1..8)).prop_map(|(closing, steps)| {
            let mut stage = 0u8;
            steps
                .into_iter()
                .enumerate()
                .map(|(i, up)| {
                    stage = (stage + up.min(1)).min(2);
                    let status = match stage {
                        0 => AwaitingDecision,
                        1 => Accepted,
                        _ if closing % 2 == 0 => ClosedNoFurtherAction,
                        _ => ClosedTransferred,
                    };
                    (status, i as i64 * 10)
                })
                .collect()
        })
    }

    proptest! {
        /// Whatever order a lawful history arrives in, the referral ends as the newest update says.
        #[test]
        fn any_arrival_order_ends_at_the_newest_update(history in lawful_history(), seed in any::<u64>()) {
            let mut order: Vec<usize> = (0..history.len()).collect();
            let mut state = seed;
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }
            let (first_status, first_time) = history[order[0]];
            let mut r = referral(first_status, first_time);
            for &i in &order[1..] {
                let (status, t) = history[i];
                prop_assert!(r.apply(&council(), details(status), at(t)).is_ok());
            }
            let (last_status, last_time) = *history.last().unwrap();
            prop_assert_eq!(r.details().status(), last_status);
            prop_assert_eq!(r.source_time(), at(last_time));
        }
    }
}
