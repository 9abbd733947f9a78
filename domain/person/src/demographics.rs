use std::fmt;

use care_kernel::{Date, InvalidValue, Source, SourceId, SourceKind, Timestamp};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use care_kernel::bounded_text as bounded;

/// A person's name as one source records it. `Debug` is masked: names are personal data.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersonName {
    family: String,
    given: String,
}

impl PersonName {
    /// A family name is required; given names may be empty (some sources send none).
    pub fn new(family: &str, given: &str) -> Result<Self, InvalidValue> {
        let family = bounded("family_name", family, 100)?;
        let given = if given.trim().is_empty() {
            String::new()
        } else {
            bounded("given_name", given, 200)?
        };
        Ok(Self { family, given })
    }

    /// The family name as the source spelled it.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The given names, space separated.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// The key this name is searched by.
    pub fn family_key(&self) -> NameKey {
        NameKey::fold(&self.family)
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(..)")
    }
}

/// A family name folded for searching: accents removed, lower case, letters and digits
/// only, so `O'Brien`, `obrien` and `Ó Brien` all meet at `obrien`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NameKey(String);

impl NameKey {
    /// Folds any text; the result may be empty.
    pub fn fold(raw: &str) -> Self {
        Self(
            raw.nfkd()
                .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
                .flat_map(char::to_lowercase)
                .filter(|c| c.is_alphanumeric())
                .collect(),
        )
    }

    /// A search prefix: folded, and at least one character must remain.
    pub fn parse_prefix(raw: &str) -> Result<Self, InvalidValue> {
        let key = Self::fold(raw);
        if key.0.is_empty() {
            return Err(InvalidValue::new(
                "family",
                "must contain at least one letter",
            ));
        }
        if key.0.chars().count() > 100 {
            return Err(InvalidValue::new(
                "family",
                "must be at most 100 characters",
            ));
        }
        Ok(key)
    }

    /// The folded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key starts with `prefix`.
    pub fn starts_with(&self, prefix: &NameKey) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

/// Administrative gender as sources send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    /// Male.
    Male,
    /// Female.
    Female,
    /// Other.
    Other,
    /// Not known or not stated.
    Unknown,
}

/// A UK postcode, normalised to upper case with one space before the inward code (`BH1 1AA`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Postcode(String);

impl Postcode {
    /// Parses a UK postcode in any case and spacing. The outward code is 2–4 characters
    /// starting with a letter; the inward code is a digit and two letters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let compact: String = raw
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let invalid = || InvalidValue::new("postcode", "is not a UK postcode");
        if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
            return Err(invalid());
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        let inward_ok = {
            let b = inward.as_bytes();
            b[0].is_ascii_digit() && b[1].is_ascii_alphabetic() && b[2].is_ascii_alphabetic()
        };
        let outward_ok = outward.as_bytes()[0].is_ascii_alphabetic()
            && outward.bytes().all(|b| b.is_ascii_alphanumeric())
            && outward.bytes().any(|b| b.is_ascii_digit());
        if !(inward_ok && outward_ok) {
            return Err(invalid());
        }
        Ok(Self(format!("{outward} {inward}")))
    }

    /// The normalised postcode.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The outward code (district) is not identifying on its own; the full code can be.
        let outward = self.0.split(' ').next().unwrap_or_default();
        write!(f, "Postcode({outward} ***)")
    }
}

impl TryFrom<String> for Postcode {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Postcode> for String {
    fn from(value: Postcode) -> Self {
        value.0
    }
}

/// A postal address. `Debug` is masked.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    lines: Vec<String>,
    postcode: Option<Postcode>,
}

impl Address {
    /// Up to six non-empty lines and an optional postcode; at least one of them.
    pub fn new(lines: Vec<String>, postcode: Option<Postcode>) -> Result<Self, InvalidValue> {
        let lines = lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| bounded("address", l, 200))
            .collect::<Result<Vec<_>, _>>()?;
        if lines.len() > 6 {
            return Err(InvalidValue::new("address", "must have at most 6 lines"));
        }
        if lines.is_empty() && postcode.is_none() {
            return Err(InvalidValue::new(
                "address",
                "must have a line or a postcode",
            ));
        }
        Ok(Self { lines, postcode })
    }

    /// The address lines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The postcode, if the source sent one.
    pub fn postcode(&self) -> Option<&Postcode> {
        self.postcode.as_ref()
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Address({} lines, {:?})",
            self.lines.len(),
            self.postcode
        )
    }
}

/// The GP practice a person is registered with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GpPractice {
    code: String,
    name: Option<String>,
}

impl GpPractice {
    /// A practice code (ODS, e.g. `J82001`) and an optional name.
    pub fn new(code: &str, name: Option<&str>) -> Result<Self, InvalidValue> {
        let code = bounded("registered_gp", code, 16)?;
        if !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(InvalidValue::new(
                "registered_gp",
                "practice code must be letters and digits",
            ));
        }
        let name = name
            .filter(|n| !n.trim().is_empty())
            .map(|n| bounded("registered_gp", n, 200))
            .transpose()?;
        Ok(Self {
            code: code.to_ascii_uppercase(),
            name,
        })
    }

    /// The practice code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The practice name, when the source sent one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// What one source says about a person's demographics at one source time. A field the
/// source did not send is `None` and leaves room for other sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Demographics {
    /// The person's name.
    pub name: Option<PersonName>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// Administrative gender.
    pub gender: Option<Gender>,
    /// Home address.
    pub address: Option<Address>,
    /// Registered GP practice.
    pub registered_gp: Option<GpPractice>,
}

/// A set of demographic fields: those a partial statement explicitly clears (HL7 v2's
/// `""`, "delete the value you hold"), as opposed to those it leaves unsent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DemographicFields {
    /// The name.
    pub name: bool,
    /// The date of birth.
    pub birth_date: bool,
    /// The gender.
    pub gender: bool,
    /// The address.
    pub address: bool,
    /// The registered GP practice.
    pub registered_gp: bool,
}

impl Demographics {
    /// Fills the fields this statement leaves empty from an earlier one (a source whose
    /// messages send only what changed), except those it `cleared`, which stay empty.
    pub fn fill_from(&mut self, earlier: &Demographics, cleared: DemographicFields) {
        if self.name.is_none() && !cleared.name {
            self.name.clone_from(&earlier.name);
        }
        if self.birth_date.is_none() && !cleared.birth_date {
            self.birth_date = earlier.birth_date;
        }
        if self.gender.is_none() && !cleared.gender {
            self.gender = earlier.gender;
        }
        if self.address.is_none() && !cleared.address {
            self.address.clone_from(&earlier.address);
        }
        if self.registered_gp.is_none() && !cleared.registered_gp {
            self.registered_gp.clone_from(&earlier.registered_gp);
        }
    }
}

/// One source's latest statement about a person: its demographics at its source time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Who said it.
    pub source: Source,
    /// When the source says it was true (the message's event time, not arrival time).
    pub source_time: Timestamp,
    /// What it said.
    pub demographics: Demographics,
}

/// A shown value with its provenance: which source said it, and as of when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sourced<T> {
    /// The value shown.
    pub value: T,
    /// The source it came from.
    pub source: SourceId,
    /// That source's kind.
    pub kind: SourceKind,
    /// The source time of the statement it came from.
    pub as_of: Timestamp,
}

/// The demographics shown for a person: each field picked by source precedence, with
/// its provenance, so a user can tell the System Manager which system is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResolvedDemographics {
    /// Name.
    pub name: Option<Sourced<PersonName>>,
    /// Date of birth.
    pub birth_date: Option<Sourced<Date>>,
    /// Gender.
    pub gender: Option<Sourced<Gender>>,
    /// Address.
    pub address: Option<Sourced<Address>>,
    /// Registered GP practice.
    pub registered_gp: Option<Sourced<GpPractice>>,
}

impl ResolvedDemographics {
    /// Resolves each field on its own: the most trusted source kind that has the field
    /// wins; between sources of one kind, the newer statement; then the source id, so
    /// the outcome never depends on storage order.
    pub fn resolve<'a>(records: impl IntoIterator<Item = &'a SourceRecord> + Clone) -> Self {
        fn pick<'a, T: Clone + 'a>(
            records: impl IntoIterator<Item = &'a SourceRecord>,
            field: impl Fn(&'a Demographics) -> Option<&'a T>,
        ) -> Option<Sourced<T>> {
            records
                .into_iter()
                .filter_map(|r| field(&r.demographics).map(|v| (r, v)))
                .min_by(|(a, _), (b, _)| {
                    a.source
                        .kind
                        .precedence()
                        .cmp(&b.source.kind.precedence())
                        .then(b.source_time.cmp(&a.source_time))
                        .then(a.source.id.cmp(&b.source.id))
                })
                .map(|(r, v)| Sourced {
                    value: v.clone(),
                    source: r.source.id.clone(),
                    kind: r.source.kind,
                    as_of: r.source_time,
                })
        }
        Self {
            name: pick(records.clone(), |d| d.name.as_ref()),
            birth_date: pick(records.clone(), |d| d.birth_date.as_ref()),
            gender: pick(records.clone(), |d| d.gender.as_ref()),
            address: pick(records.clone(), |d| d.address.as_ref()),
            registered_gp: pick(records, |d| d.registered_gp.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_statement_keeps_unsent_fields_but_not_cleared_ones() {
        let earlier = Demographics {
            name: Some(PersonName::new("Smith", "Sam").unwrap()),
            gender: Some(Gender::Female),
            address: Some(Address::new(vec!["1 High St".into()], None).unwrap()),
            ..Demographics::default()
        };
        let mut now = Demographics::default();
        now.fill_from(
            &earlier,
            DemographicFields {
                address: true,
                ..DemographicFields::default()
            },
        );
        assert_eq!(now.name, earlier.name, "not sent: kept");
        assert_eq!(now.gender, earlier.gender, "not sent: kept");
        assert_eq!(now.address, None, "cleared: stays empty");
    }

    #[test]
    fn postcodes_are_normalised_and_validated() {
        assert_eq!(Postcode::parse("bh11aa").unwrap().as_str(), "BH1 1AA");
        assert_eq!(Postcode::parse(" DT1  2PQ ").unwrap().as_str(), "DT1 2PQ");
        assert_eq!(Postcode::parse("SW1A 1AA").unwrap().as_str(), "SW1A 1AA");
        assert!(Postcode::parse("12345").is_err());
        assert!(Postcode::parse("BH1").is_err());
        assert!(Postcode::parse("BH1 AAA").is_err());
        assert!(Postcode::parse("ÄH1 1AA").is_err());
    }

    #[test]
    fn name_keys_fold_case_accents_and_punctuation() {
        assert_eq!(NameKey::fold("O'Brien").as_str(), "obrien");
        assert_eq!(NameKey::fold("Ó Briain").as_str(), "obriain");
        assert_eq!(
            NameKey::fold("MÜLLER-Lüdenscheidt").as_str(),
            "mullerludenscheidt"
        );
        assert!(NameKey::parse_prefix("'-").is_err());
        let key = NameKey::fold("Łukasiewicz");
        assert!(key.starts_with(&NameKey::parse_prefix("łuka").unwrap()));
    }

    #[test]
    fn names_need_a_family_name_and_hide_in_debug() {
        assert!(PersonName::new(" ", "Ann").is_err());
        let name = PersonName::new("  Smith ", "Ann   Marie").unwrap();
        assert_eq!(name.family(), "Smith");
        assert_eq!(name.given(), "Ann Marie");
        assert_eq!(format!("{name:?}"), "PersonName(..)");
    }
}
