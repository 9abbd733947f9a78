//! Alerts (SPEC §3 "Alert"): allergies, medication warnings, hazards such as a dangerous
//! dog, safeguarding and communication needs — and where each is shown. Partner alerts go
//! in the banner; GP alerts go on the GP summary; ended alerts leave the banner.

use care_kernel::{
    AlertId, Date, InvalidValue, PersonId, Source, SourceKind, Timestamp, UpdateOrder,
    UpdateOutcome,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

care_kernel::named_enum!(
    /// What an alert is about. The order is the banner's order: most urgent first.
    AlertCategory, "category" {
        /// An allergy or intolerance.
        Allergy => "allergy",
        /// A medication warning.
        Medication => "medication",
        /// A hazard at the home, e.g. a dangerous dog.
        EnvironmentalHazard => "environmental_hazard",
        /// A safeguarding concern.
        Safeguarding => "safeguarding",
        /// A communication need (interpreter, sign language, ...).
        CommunicationNeed => "communication_need",
        /// Anything else.
        Other => "other",
    }
);

care_kernel::named_enum!(
    /// How severe an alert is. Ordered from most to least severe.
    Severity, "severity" {
        /// High.
        High => "high",
        /// Moderate.
        Moderate => "moderate",
        /// Low.
        Low => "low",
        /// Not stated by the source.
        Unknown => "unknown",
    }
);

/// Where an alert is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The banner at the top of every page of the record.
    Banner,
    /// The GP summary page (alerts from GP practices).
    GpSummary,
}

/// An alert's content as one statement from its source gives it. (`Ord` is only the
/// tie-break between different statements with the same source time.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertDetails {
    category: AlertCategory,
    description: String,
    severity: Severity,
    recorded: Date,
    active_from: Date,
    active_to: Option<Date>,
}

impl AlertDetails {
    /// Validates an alert: a description of 1 to 500 characters, and an active period
    /// that does not end before it starts.
    pub fn new(
        category: AlertCategory,
        description: &str,
        severity: Severity,
        recorded: Date,
        active_from: Date,
        active_to: Option<Date>,
    ) -> Result<Self, InvalidValue> {
        let description = description.split_whitespace().collect::<Vec<_>>().join(" ");
        if description.is_empty() || description.chars().count() > 500 {
            return Err(InvalidValue::new(
                "description",
                "must be 1 to 500 characters",
            ));
        }
        if active_to.is_some_and(|end| end < active_from) {
            return Err(InvalidValue::new(
                "active_to",
                "cannot be before the start of the active period",
            ));
        }
        Ok(Self {
            category,
            description,
            severity,
            recorded,
            active_from,
            active_to,
        })
    }

    /// Category.
    pub fn category(&self) -> AlertCategory {
        self.category
    }
    /// What the alert says.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// When the source recorded it.
    pub fn recorded(&self) -> Date {
        self.recorded
    }
    /// First day it applies.
    pub fn active_from(&self) -> Date {
        self.active_from
    }
    /// Last day it applies, if it has ended or will end.
    pub fn active_to(&self) -> Option<Date> {
        self.active_to
    }
}

/// Refusals of an alert update.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AlertError {
    /// The update comes from another source than the alert's.
    #[error("the update's source is not the alert's source")]
    WrongSource,
}

/// An alert about a person, as its source last stated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    id: AlertId,
    person: PersonId,
    source: Source,
    source_ref: String,
    details: AlertDetails,
    source_time: Timestamp,
    version: u64,
}

impl Alert {
    /// An alert first heard of.
    pub fn new(
        id: AlertId,
        person: PersonId,
        source: Source,
        source_ref: &str,
        details: AlertDetails,
        source_time: Timestamp,
    ) -> Result<Self, InvalidValue> {
        let source_ref = source_ref.trim();
        if source_ref.is_empty() || source_ref.len() > 64 {
            return Err(InvalidValue::new("alert_id", "must be 1 to 64 characters"));
        }
        if source_ref.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "alert_id",
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

    /// Set by repositories when they store or load the alert.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The internal id.
    pub fn id(&self) -> AlertId {
        self.id
    }
    /// Whom it is about.
    pub fn person(&self) -> PersonId {
        self.person
    }
    /// The source that owns it.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// The source's own reference.
    pub fn source_ref(&self) -> &str {
        &self.source_ref
    }
    /// The alert as last stated.
    pub fn details(&self) -> &AlertDetails {
        &self.details
    }
    /// The source time of the statement held.
    pub fn source_time(&self) -> Timestamp {
        self.source_time
    }

    /// Partner alerts go in the banner; GP practice alerts go on the GP summary.
    pub fn placement(&self) -> Placement {
        if self.source.kind == SourceKind::GpPractice {
            Placement::GpSummary
        } else {
            Placement::Banner
        }
    }

    /// Whether the alert applies on `today`.
    pub fn is_active(&self, today: Date) -> bool {
        self.details.active_from <= today && self.details.active_to.is_none_or(|end| today <= end)
    }

    /// Applies a statement of the alert by source time: older is `Stale`, the same again
    /// is `Unchanged`, a newer repeat moves the source time on. Different statements
    /// with the same source time are ordered by content, so arrival order never matters.
    pub fn apply(
        &mut self,
        source: &Source,
        details: AlertDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, AlertError> {
        if source.id != self.source.id {
            return Err(AlertError::WrongSource);
        }
        Ok(match UpdateOrder::of(self.source_time, source_time) {
            UpdateOrder::Older => UpdateOutcome::Stale,
            UpdateOrder::SameTime if details == self.details => UpdateOutcome::Unchanged,
            UpdateOrder::SameTime if details < self.details => UpdateOutcome::Stale,
            UpdateOrder::SameTime | UpdateOrder::Newer => {
                self.details = details;
                self.source_time = source_time;
                UpdateOutcome::Applied
            }
        })
    }

    /// Moves the alert to the survivor of a merge.
    pub fn reassign(&mut self, survivor: PersonId) {
        self.person = survivor;
    }
}

/// The banner: active partner alerts, by category (allergy, medication, hazard,
/// safeguarding, communication, other), then most severe, then most recently recorded.
pub fn banner(alerts: &[Alert], today: Date) -> Vec<&Alert> {
    let mut shown: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.placement() == Placement::Banner && a.is_active(today))
        .collect();
    shown.sort_by(|a, b| {
        a.details
            .category
            .cmp(&b.details.category)
            .then(a.details.severity.cmp(&b.details.severity))
            .then(b.details.recorded.cmp(&a.details.recorded))
            .then(a.id.cmp(&b.id))
    });
    shown
}

/// The GP summary's alerts: GP practice alerts, active first, then most recent. After
/// death the GP record closes and this is `None`: the page says it is closed.
pub fn gp_summary(alerts: &[Alert], today: Date, gp_record_open: bool) -> Option<Vec<&Alert>> {
    if !gp_record_open {
        return None;
    }
    let mut shown: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.placement() == Placement::GpSummary)
        .collect();
    shown.sort_by(|a, b| {
        b.is_active(today)
            .cmp(&a.is_active(today))
            .then(b.details.recorded.cmp(&a.details.recorded))
            .then(a.id.cmp(&b.id))
    });
    Some(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use care_kernel::SourceId;

    fn day(d: u32) -> Date {
        Date::from_ymd_opt(2026, 3, d).unwrap()
    }
    fn at(secs: i64) -> Timestamp {
        Timestamp::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }
    fn source(id: &str, kind: SourceKind) -> Source {
        Source::new(SourceId::parse(id).unwrap(), kind)
    }
    fn alert(
        n: u128,
        source: Source,
        category: AlertCategory,
        severity: Severity,
        to: Option<Date>,
    ) -> Alert {
        Alert::new(
            AlertId::from_uuid(uuid::Uuid::from_u128(n)),
            PersonId::from_uuid(uuid::Uuid::from_u128(99)),
            source,
            &format!("A{n}"),
            AlertDetails::new(category, "text", severity, day(1), day(1), to).unwrap(),
            at(0),
        )
        .unwrap()
    }

    #[test]
    fn partner_alerts_are_in_the_banner_and_gp_alerts_on_the_gp_summary() {
        let acute = source("acute", SourceKind::Acute);
        let gp = source("gp", SourceKind::GpPractice);
        let alerts = vec![
            alert(
                1,
                acute.clone(),
                AlertCategory::Allergy,
                Severity::High,
                None,
            ),
            alert(2, gp.clone(), AlertCategory::Allergy, Severity::High, None),
        ];
        let banner = banner(&alerts, day(10));
        assert_eq!(
            banner.iter().map(|a| a.source_ref()).collect::<Vec<_>>(),
            vec!["A1"]
        );
        let summary = gp_summary(&alerts, day(10), true).unwrap();
        assert_eq!(
            summary.iter().map(|a| a.source_ref()).collect::<Vec<_>>(),
            vec!["A2"]
        );
    }

    #[test]
    fn ended_alerts_leave_the_banner() {
        let acute = source("acute", SourceKind::Acute);
        let alerts = vec![
            alert(
                1,
                acute.clone(),
                AlertCategory::Safeguarding,
                Severity::High,
                Some(day(5)),
            ),
            alert(
                2,
                acute.clone(),
                AlertCategory::Safeguarding,
                Severity::High,
                Some(day(10)),
            ),
        ];
        let refs = |today| {
            banner(&alerts, today)
                .iter()
                .map(|a| a.source_ref().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(refs(day(5)), vec!["A1", "A2"]);
        assert_eq!(refs(day(6)), vec!["A2"]);
        assert!(refs(day(11)).is_empty());
    }

    #[test]
    fn banner_is_ordered_by_category_then_severity() {
        let council = source("council", SourceKind::SocialCare);
        let alerts = vec![
            alert(
                1,
                council.clone(),
                AlertCategory::Other,
                Severity::High,
                None,
            ),
            alert(
                2,
                council.clone(),
                AlertCategory::EnvironmentalHazard,
                Severity::High,
                None,
            ),
            alert(
                3,
                council.clone(),
                AlertCategory::Allergy,
                Severity::Low,
                None,
            ),
            alert(
                4,
                council.clone(),
                AlertCategory::Allergy,
                Severity::High,
                None,
            ),
            alert(
                5,
                council.clone(),
                AlertCategory::Medication,
                Severity::Moderate,
                None,
            ),
        ];
        let order: Vec<_> = banner(&alerts, day(2))
            .iter()
            .map(|a| a.source_ref().to_owned())
            .collect();
        assert_eq!(order, vec!["A4", "A3", "A5", "A2", "A1"]);
    }

    #[test]
    fn the_gp_summary_closes_after_death() {
        let gp = source("gp", SourceKind::GpPractice);
        let alerts = vec![alert(
            1,
            gp,
            AlertCategory::Medication,
            Severity::High,
            None,
        )];
        assert_eq!(gp_summary(&alerts, day(2), false), None);
    }

    #[test]
    fn older_updates_are_stale_and_repeats_unchanged() {
        let acute = source("acute", SourceKind::Acute);
        let mut a = alert(
            1,
            acute.clone(),
            AlertCategory::Allergy,
            Severity::High,
            None,
        );
        let ended = AlertDetails::new(
            AlertCategory::Allergy,
            "text",
            Severity::High,
            day(1),
            day(1),
            Some(day(3)),
        )
        .unwrap();
        assert_eq!(
            a.apply(&acute, ended.clone(), at(10)),
            Ok(UpdateOutcome::Applied)
        );
        assert_eq!(
            a.apply(&acute, ended.clone(), at(10)),
            Ok(UpdateOutcome::Unchanged)
        );
        let open = AlertDetails::new(
            AlertCategory::Allergy,
            "text",
            Severity::High,
            day(1),
            day(1),
            None,
        )
        .unwrap();
        assert_eq!(a.apply(&acute, open, at(5)), Ok(UpdateOutcome::Stale));
        assert_eq!(a.details().active_to(), Some(day(3)));
        assert_eq!(
            a.apply(&source("gp", SourceKind::GpPractice), ended, at(20)),
            Err(AlertError::WrongSource)
        );
    }

    #[test]
    fn a_newer_repeat_moves_the_source_time_on_so_an_older_end_stays_stale() {
        let acute = source("acute", SourceKind::Acute);
        let mut a = alert(
            1,
            acute.clone(),
            AlertCategory::Allergy,
            Severity::High,
            None,
        );
        let open = a.details().clone();
        assert_eq!(a.apply(&acute, open, at(30)), Ok(UpdateOutcome::Applied));
        let ended = AlertDetails::new(
            AlertCategory::Allergy,
            "text",
            Severity::High,
            day(1),
            day(1),
            Some(day(3)),
        )
        .unwrap();
        assert_eq!(
            a.apply(&acute, ended.clone(), at(20)),
            Ok(UpdateOutcome::Stale)
        );
        // Simultaneous statements: the same one wins in either order.
        let mut b = alert(
            2,
            acute.clone(),
            AlertCategory::Allergy,
            Severity::High,
            None,
        );
        b.apply(&acute, ended.clone(), at(0)).unwrap();
        let mut c = alert(
            2,
            acute.clone(),
            AlertCategory::Allergy,
            Severity::High,
            Some(day(3)),
        );
        c.apply(&acute, a.details().clone(), at(0)).unwrap();
        assert_eq!(b.details(), c.details());
    }

    #[test]
    fn source_references_refuse_control_characters() {
        let err = Alert::new(
            AlertId::from_uuid(uuid::Uuid::from_u128(1)),
            PersonId::from_uuid(uuid::Uuid::from_u128(2)),
            source("acute", SourceKind::Acute),
            "AL\u{0}1",
            AlertDetails::new(
                AlertCategory::Other,
                "x",
                Severity::Low,
                day(1),
                day(1),
                None,
            )
            .unwrap(),
            at(0),
        )
        .unwrap_err();
        assert_eq!(err.field, "alert_id");
    }

    #[test]
    fn an_active_period_cannot_end_before_it_starts() {
        let err = AlertDetails::new(
            AlertCategory::Other,
            "x",
            Severity::Low,
            day(5),
            day(5),
            Some(day(4)),
        )
        .unwrap_err();
        assert_eq!(err.field, "active_to");
        assert_eq!(
            AlertDetails::new(
                AlertCategory::Other,
                "  ",
                Severity::Low,
                day(5),
                day(5),
                None
            )
            .unwrap_err()
            .field,
            "description"
        );
    }
}
