//! The shared kernel of the Care Record domain.
//!
//! Small value types that every domain crate needs and that carry no rule of their own
//! beyond their validity: identifiers, sources and their precedence, roles, the acting
//! [`Actor`], purpose of use and time. Everything here is pure: no I/O, no clock.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// A moment in time, always UTC. The domain never reads the clock: callers pass `now`.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A calendar date without time zone (birth dates, dates of death, referral dates).
pub type Date = chrono::NaiveDate;

/// A value that failed validation, naming the field so an edge can report it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    /// The name of the field as users and API clients know it.
    pub field: &'static str,
    /// Why the value was refused, in words fit to show the sender.
    pub reason: String,
}

impl InvalidValue {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A line of free text a person typed (a name, a relationship): whitespace runs become
/// one space, and it must be 1 to `max` characters with no control characters.
pub fn bounded_text(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidValue> {
    let value = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_empty() {
        return Err(InvalidValue::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(InvalidValue::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value)
}

/// Declares a closed set of named values (a fieldless enum) with `ALL`, `as_str` and a
/// `parse` that names the field when it refuses a value.
#[macro_export]
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as feeds, APIs and policy files spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the spelling of [`Self::as_str`].
            pub fn parse(raw: &str) -> Result<Self, $crate::InvalidValue> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == raw.trim())
                    .ok_or_else(|| $crate::InvalidValue::new($field, format!("unknown value {:?}", raw)))
            }
        }
    };
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID (ids are minted by the application's id generator).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The internal identifier of a person in the care record.
    PersonId
);
uuid_id!(
    /// The internal identifier of a referral.
    ReferralId
);
uuid_id!(
    /// The internal identifier of an alert.
    AlertId
);

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts 1 to
            #[doc = stringify!($max)]
            /// characters of letters, digits, `-`, `_`, `.`, `@`; anything else is refused.
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                let raw = raw.trim();
                if raw.is_empty() {
                    return Err(InvalidValue::new($field, "must not be empty"));
                }
                if raw.chars().count() > $max {
                    return Err(InvalidValue::new($field, format!("must be at most {} characters", $max)));
                }
                if let Some(c) = raw
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
                {
                    return Err(InvalidValue::new($field, format!("must not contain {c:?}")));
                }
                Ok(Self(raw.to_owned()))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

text_id!(
    /// A user account name, as the audit records it.
    UserId,
    "user",
    128
);
text_id!(
    /// An organisation's code (e.g. an ODS code), as the audit records it.
    OrganisationId,
    "organisation",
    64
);
text_id!(
    /// The name of a source system that feeds the record (e.g. `acute-uhd`, `gp-m81001`).
    SourceId,
    "source",
    64
);

/// What kind of system a source is. The kind fixes the source's **precedence** when
/// sources disagree about a person's demographics, and where its alerts are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The national demographics service (PDS): the most trusted demographics.
    National,
    /// A GP practice system. Its items close when the person dies.
    GpPractice,
    /// An acute hospital's patient administration system.
    Acute,
    /// A community health provider (community, mental health).
    Community,
    /// A council's social-care system.
    SocialCare,
    /// Any other partner system.
    Other,
}

impl SourceKind {
    /// Every kind, most trusted first.
    pub const ALL: [SourceKind; 6] = [
        SourceKind::National,
        SourceKind::GpPractice,
        SourceKind::Acute,
        SourceKind::Community,
        SourceKind::SocialCare,
        SourceKind::Other,
    ];

    /// Rank for demographics: lower wins (national/GP over acute over social care).
    pub const fn precedence(self) -> u8 {
        match self {
            SourceKind::National => 0,
            SourceKind::GpPractice => 1,
            SourceKind::Acute => 2,
            SourceKind::Community => 3,
            SourceKind::SocialCare => 4,
            SourceKind::Other => 5,
        }
    }

    /// The kind's name as configuration and APIs spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::National => "national",
            SourceKind::GpPractice => "gp_practice",
            SourceKind::Acute => "acute",
            SourceKind::Community => "community",
            SourceKind::SocialCare => "social_care",
            SourceKind::Other => "other",
        }
    }

    /// Parses the configuration spelling of a kind.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == raw.trim())
            .ok_or_else(|| InvalidValue::new("source_kind", format!("unknown source kind {raw:?}")))
    }
}

/// A source system with its kind: what every fact in the record is stamped with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// The source's identifier.
    pub id: SourceId,
    /// Its kind, which fixes precedence and display.
    pub kind: SourceKind,
}

impl Source {
    /// A source of the given kind.
    pub fn new(id: SourceId, kind: SourceKind) -> Self {
        Self { id, kind }
    }
}

/// How a stored fact compares with an incoming update of it, by **source time**.
/// "An older update never overwrites a newer one" is decided here, once, for every kind of fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOrder {
    /// The update is newer than what is stored: it may apply.
    Newer,
    /// Same source time: the same update again (idempotent) or a tie.
    SameTime,
    /// The update is older than what is stored: it must not overwrite it.
    Older,
}

impl UpdateOrder {
    /// Compares an incoming update's source time with the stored one's.
    pub fn of(stored: Timestamp, incoming: Timestamp) -> Self {
        match incoming.cmp(&stored) {
            std::cmp::Ordering::Greater => UpdateOrder::Newer,
            std::cmp::Ordering::Equal => UpdateOrder::SameTime,
            std::cmp::Ordering::Less => UpdateOrder::Older,
        }
    }
}

/// What applying an update to a stored fact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// The fact was created or changed.
    Applied,
    /// The update carried nothing new (e.g. the same message twice).
    Unchanged,
    /// The update was older than the stored fact and was ignored.
    Stale,
}

/// A role a user acts in (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A GP or practice clinician.
    Gp,
    /// A hospital or community health clinician.
    Clinician,
    /// A social worker.
    SocialWorker,
    /// A community pharmacist.
    Pharmacist,
    /// Runs the system: users, organisations, allow-list, feeds, data quality.
    SystemManager,
    /// The data protection officer: consent and access reports.
    Dpo,
    /// Verifies the audit chain.
    Auditor,
    /// The system account of one feed source.
    Feed,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 8] = [
        Role::Gp,
        Role::Clinician,
        Role::SocialWorker,
        Role::Pharmacist,
        Role::SystemManager,
        Role::Dpo,
        Role::Auditor,
        Role::Feed,
    ];

    /// The role's name as policy files and APIs spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Gp => "gp",
            Role::Clinician => "clinician",
            Role::SocialWorker => "social_worker",
            Role::Pharmacist => "pharmacist",
            Role::SystemManager => "system_manager",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Feed => "feed",
        }
    }

    /// Parses a role name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw.trim())
            .ok_or_else(|| InvalidValue::new("role", format!("unknown role {raw:?}")))
    }

    /// Whether the role looks at people's records for direct care.
    pub const fn is_clinical(self) -> bool {
        matches!(
            self,
            Role::Gp | Role::Clinician | Role::SocialWorker | Role::Pharmacist
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The purpose a request declares. Only direct care is a lawful purpose here (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Care of the person in front of the professional.
    DirectCare,
    /// Any other declared purpose (e.g. `death-review`), kept as declared so the
    /// refusal can be audited with it.
    Other(String),
}

impl Purpose {
    /// The wire spelling of direct care.
    pub const DIRECT_CARE: &'static str = "direct-care";

    /// Reads a declared purpose; an absent declaration means direct care.
    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidValue> {
        match raw.map(str::trim) {
            None | Some(Self::DIRECT_CARE) => Ok(Purpose::DirectCare),
            Some("") => Err(InvalidValue::new("purpose", "must not be empty")),
            Some(other) if other.len() > 64 => Err(InvalidValue::new(
                "purpose",
                "must be at most 64 characters",
            )),
            Some(other) => Ok(Purpose::Other(other.to_owned())),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Purpose::DirectCare => Self::DIRECT_CARE,
            Purpose::Other(p) => p,
        }
    }

    /// Whether this purpose is direct care.
    pub fn is_direct_care(&self) -> bool {
        matches!(self, Purpose::DirectCare)
    }
}

/// How a professional justified looking at an `ask_first` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BasisKind {
    /// The person gave permission.
    PermissionGiven,
    /// An emergency, when the person cannot be asked.
    Emergency,
}

impl BasisKind {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            BasisKind::PermissionGiven => "permission-given",
            BasisKind::Emergency => "emergency",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw.trim() {
            "permission-given" => Ok(BasisKind::PermissionGiven),
            "emergency" => Ok(BasisKind::Emergency),
            other => Err(InvalidValue::new(
                "access_basis",
                format!("must be permission-given or emergency, not {other:?}"),
            )),
        }
    }
}

/// The basis asserted for one access to an `ask_first` record, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccessBasis {
    kind: BasisKind,
    reason: String,
}

impl AccessBasis {
    /// A basis needs a reason of 3 to 500 characters: it is read by the DPO later.
    pub fn new(kind: BasisKind, reason: &str) -> Result<Self, InvalidValue> {
        let reason = reason.trim();
        if reason.chars().count() < 3 {
            return Err(InvalidValue::new(
                "access_reason",
                "a reason of at least 3 characters is required",
            ));
        }
        if reason.chars().count() > 500 {
            return Err(InvalidValue::new(
                "access_reason",
                "must be at most 500 characters",
            ));
        }
        Ok(Self {
            kind,
            reason: reason.to_owned(),
        })
    }

    /// Permission or emergency.
    pub fn kind(&self) -> BasisKind {
        self.kind
    }

    /// The professional's reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Who is acting: every use case receives one, and every audit event is built from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The signed-in user (or feed account).
    pub user: UserId,
    /// The user's organisation.
    pub organisation: OrganisationId,
    /// The role the user acts in.
    pub role: Role,
    /// The declared purpose of use.
    pub purpose: Purpose,
    /// The client's network address.
    pub client: IpAddr,
    /// For `ask_first` records: the asserted basis for this access.
    pub basis: Option<AccessBasis>,
    /// For feed accounts: the one source they may submit for.
    pub feed_source: Option<SourceId>,
}

impl Actor {
    /// An actor for direct care with no basis asserted.
    pub fn new(user: UserId, organisation: OrganisationId, role: Role, client: IpAddr) -> Self {
        Self {
            user,
            organisation,
            role,
            purpose: Purpose::DirectCare,
            client,
            basis: None,
            feed_source: None,
        }
    }

    /// The same actor declaring another purpose.
    pub fn with_purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }

    /// The same actor asserting a basis for an `ask_first` record.
    pub fn with_basis(mut self, basis: AccessBasis) -> Self {
        self.basis = Some(basis);
        self
    }

    /// A feed account bound to its source.
    pub fn with_feed_source(mut self, source: SourceId) -> Self {
        self.feed_source = Some(source);
        self
    }
}

named_enum!(
    /// Something a user can do, as the policy and the audit name it.
    Action, "action" {
        /// Search for people.
        SearchPeople => "search_people",
        /// Read a person's demographics.
        ReadDemographics => "read_demographics",
        /// Read the banner alerts.
        ReadBannerAlerts => "read_banner_alerts",
        /// Read the GP summary.
        ReadGpSummary => "read_gp_summary",
        /// Read children's social-care referrals.
        ReadReferrals => "read_referrals",
        /// Read each source's own statement of demographics (data quality).
        ReadSourceDemographics => "read_source_demographics",
        /// Find a person's identity only (for the DPO).
        FindIdentity => "find_identity",
        /// Read or change a person's consent.
        AdministerConsent => "administer_consent",
        /// Run an access report for a person.
        RunAccessReport => "run_access_report",
        /// Verify the audit chain.
        VerifyAudit => "verify_audit",
        /// Manage users, organisations and the allow-list.
        ManageUsers => "manage_users",
        /// See feed status and the quarantine.
        ViewFeedStatus => "view_feed_status",
        /// Submit messages for a feed source.
        SubmitFeed => "submit_feed",
        /// Re-submit a quarantined feed message after a fix.
        ResubmitQuarantine => "resubmit_quarantine",
    }
);

impl Action {
    /// Whether the action is about one person's record (and so depends on their consent
    /// and vital status).
    pub const fn concerns_a_person(self) -> bool {
        matches!(
            self,
            Action::SearchPeople
                | Action::ReadDemographics
                | Action::ReadBannerAlerts
                | Action::ReadGpSummary
                | Action::ReadReferrals
                | Action::ReadSourceDemographics
                | Action::FindIdentity
                | Action::AdministerConsent
                | Action::RunAccessReport
        )
    }
}

impl Action {
    /// Whether the action shows (part of) a person's record to its user: what an access
    /// report lists. Consent administration and report runs are audited but are not
    /// looks at the record.
    pub const fn reads_the_record(self) -> bool {
        matches!(
            self,
            Action::SearchPeople
                | Action::ReadDemographics
                | Action::ReadBannerAlerts
                | Action::ReadGpSummary
                | Action::ReadReferrals
                | Action::ReadSourceDemographics
        )
    }
}

named_enum!(
    /// Why an access was refused. Recorded in the audit; the caller may see less.
    DenyReason, "reason" {
        /// The role may not do this at all.
        RoleNotPermitted => "role_not_permitted",
        /// The declared purpose is not direct care.
        PurposeNotDirectCare => "purpose_not_direct_care",
        /// The person has opted out.
        OptedOut => "opted_out",
        /// The person asked to be asked first, and no basis was asserted.
        PermissionRequired => "permission_required",
        /// The person died more than 8 years ago.
        DeceasedBeyondRetention => "deceased_beyond_retention",
        /// No such person (or record merged into one that is not shown).
        NotFound => "not_found",
        /// A feed account acting for a source other than its own.
        WrongSource => "wrong_source",
        /// Access was permitted but the change asked for breaks a rule (e.g. consent
        /// already at that level): nothing was changed.
        InvalidChange => "invalid_change",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_refuse_spaces_and_empty() {
        assert!(SourceId::parse("acute-uhd").is_ok());
        assert_eq!(SourceId::parse(" ").unwrap_err().field, "source");
        assert!(SourceId::parse("acute uhd").is_err());
        assert!(SourceId::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn national_and_gp_outrank_acute_which_outranks_social_care() {
        assert!(SourceKind::National.precedence() < SourceKind::GpPractice.precedence());
        assert!(SourceKind::GpPractice.precedence() < SourceKind::Acute.precedence());
        assert!(SourceKind::Acute.precedence() < SourceKind::SocialCare.precedence());
    }

    #[test]
    fn roles_and_kinds_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::parse(kind.as_str()), Ok(kind));
        }
        assert!(Role::parse("admin").is_err());
    }

    #[test]
    fn absent_purpose_is_direct_care_and_others_are_kept_as_declared() {
        assert_eq!(Purpose::parse(None), Ok(Purpose::DirectCare));
        assert_eq!(Purpose::parse(Some("direct-care")), Ok(Purpose::DirectCare));
        assert_eq!(
            Purpose::parse(Some("death-review")),
            Ok(Purpose::Other("death-review".into()))
        );
        assert!(
            !Purpose::parse(Some("death-review"))
                .unwrap()
                .is_direct_care()
        );
        assert!(Purpose::parse(Some("")).is_err());
    }

    #[test]
    fn access_basis_needs_a_reason() {
        assert!(AccessBasis::new(BasisKind::Emergency, "  ").is_err());
        let basis = AccessBasis::new(BasisKind::Emergency, "unconscious in ED").unwrap();
        assert_eq!(basis.reason(), "unconscious in ED");
        assert_eq!(BasisKind::parse("emergency"), Ok(BasisKind::Emergency));
        assert!(BasisKind::parse("because").is_err());
    }

    #[test]
    fn update_order_compares_source_times() {
        let t0 = Timestamp::from_timestamp(1_000, 0).unwrap();
        let t1 = Timestamp::from_timestamp(2_000, 0).unwrap();
        assert_eq!(UpdateOrder::of(t0, t1), UpdateOrder::Newer);
        assert_eq!(UpdateOrder::of(t1, t0), UpdateOrder::Older);
        assert_eq!(UpdateOrder::of(t0, t0), UpdateOrder::SameTime);
    }
}
