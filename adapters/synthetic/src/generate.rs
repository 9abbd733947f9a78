//! The generator itself. Each person is drawn from their own ChaCha8 stream (the stream
//! number is the person's index) and their household's from another, under a key derived
//! from the seed; ids come from a hash of `(seed, index)`. So person `i` depends on
//! nothing but `(seed, now, i)`, and the output is the same on every platform.

use std::error::Error;
use std::fmt::{self, Write as _};
use std::ops::Range;

use care_alert::{Alert, AlertCategory, AlertDetails};
use care_consent::{Consent, EvidenceStatus, Representative};
use care_kernel::{
    Actor, AlertId, Date, InvalidValue, OrganisationId, PersonId, ReferralId, Role, Source,
    SourceKind, Timestamp, UserId,
};
use care_person::{
    Address, Demographics, Gender, GpPractice, Identifier, LocalId, NhsNumber, Person, PersonName,
    Postcode,
};
use care_referral::{Referral, ReferralDetails, ReferralStatus};
use chrono::{Days, NaiveTime, TimeDelta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::tables::{self, FAMILY_NAMES, FEMALE_NAMES, MALE_NAMES, OUTWARDS};
use crate::{SyntheticPerson, source_ids, sources};

/// People with an index below this get an NHS number. The 999 test range
/// (999 000 0000 – 999 999 9999) has a million nine-digit stems, of which about one in
/// eleven has no check digit; the generator uses nine valid numbers out of every ten
/// consecutive stems, which is what lets it find person `i`'s number without a table.
pub const NHS_NUMBER_CAPACITY: u64 = 900_000;

/// Household streams are told apart from person streams by this bit.
const HOUSEHOLD_STREAM: u64 = 1 << 62;
/// Households are formed within aligned blocks of this many indices, so finding a
/// person's household looks back at most this far.
const HOUSEHOLD_BLOCK: u64 = 8;

const TAG_PERSON: u64 = 1;
const TAG_ALERT: u64 = 2;
const TAG_REFERRAL: u64 = 3;
const TAG_HOUSEHOLD: u64 = 4;
const TAG_NHS: u64 = 5;
const TAG_KEY: u64 = 6;

/// Days in `n` years, near enough for ages.
const fn years(n: u32) -> u32 {
    n * 36_525 / 100
}

/// The longest a death can be ago and still be within the 8-year retention (96 months
/// are at least 2,921 days), and the shortest it can be ago and be beyond it.
const RECENT_DEATH_MAX_DAYS: u32 = 2_918;
const OLD_DEATH_MIN_DAYS: u32 = 2_930;

/// SplitMix64's finaliser: a good 64-bit mix, for ids and household boundaries.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const fn hash(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed ^ mix(tag)) ^ a) ^ b.rotate_left(32))
}

/// A time-ordered (version 7 layout) UUID derived from the seed, a tag and two numbers:
/// `a` (the person's index) stands where v7 has its millisecond clock and `b` in the
/// next 12 bits, so a dataset's ids sort in generation order and a database appends
/// them at the end of its primary-key index instead of all over it; the remaining 62
/// bits come from the seed.
fn derived_uuid(seed: u64, tag: u64, a: u64, b: u64) -> Uuid {
    let high = ((a & 0xFFFF_FFFF_FFFF) << 16) | 0x7000 | (b & 0x0FFF);
    let low = (hash(seed, tag, a, b) & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    Uuid::from_u64_pair(high, low)
}

/// The sources a person can be known to, in order of demographics precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    Pds,
    Gp,
    Uhd,
    Dchft,
    Community,
    CouncilBcp,
    CouncilDc,
}

impl Src {
    fn id(self) -> &'static str {
        match self {
            Src::Pds => source_ids::PDS,
            Src::Gp => source_ids::GP,
            Src::Uhd => source_ids::ACUTE_UHD,
            Src::Dchft => source_ids::ACUTE_DCHFT,
            Src::Community => source_ids::COMMUNITY,
            Src::CouncilBcp => source_ids::COUNCIL_BCP,
            Src::CouncilDc => source_ids::COUNCIL_DC,
        }
    }

    fn referral_prefix(self) -> &'static str {
        match self {
            Src::CouncilBcp => "BCP-REF",
            Src::CouncilDc => "DC-REF",
            _ => "REF",
        }
    }

    /// The person's id in this source's system.
    fn write_local_id(self, out: &mut String, index: u64) -> fmt::Result {
        let n = index + 1;
        match self {
            Src::Pds => write!(out, "PDS{n:010}"),
            Src::Gp => write!(out, "EMIS{n:09}"),
            Src::Uhd => write!(out, "RDZ{n:08}"),
            Src::Dchft => write!(out, "RBD{n:08}"),
            Src::Community => write!(out, "DHC-{n:07}"),
            Src::CouncilBcp => write!(out, "BCP{n:08}"),
            Src::CouncilDc => write!(out, "DC{n:08}"),
        }
    }

    fn alert_prefix(self) -> &'static str {
        match self {
            Src::Pds => "PDS-FLAG",
            Src::Gp => "EMIS-AL",
            Src::Uhd => "UHD-ALR",
            Src::Dchft => "DCH-ALR",
            Src::Community => "DHC-FLAG",
            Src::CouncilBcp => "BCP-WARN",
            Src::CouncilDc => "DC-WARN",
        }
    }

    fn categories(self) -> &'static [(AlertCategory, u32)] {
        match self {
            Src::Pds | Src::Gp => tables::GP_CATEGORIES,
            Src::Uhd | Src::Dchft => tables::ACUTE_CATEGORIES,
            Src::Community => tables::COMMUNITY_CATEGORIES,
            Src::CouncilBcp | Src::CouncilDc => tables::COUNCIL_CATEGORIES,
        }
    }

    /// How likely an alert is to come from this source, among the person's sources.
    fn alert_weight(self) -> u32 {
        match self {
            Src::Pds => 0,
            Src::Gp => 4,
            Src::Uhd | Src::Dchft => 3,
            Src::Community | Src::CouncilBcp | Src::CouncilDc => 2,
        }
    }
}

/// One ChaCha8 stream with the draws the generator needs.
struct Dice(ChaCha8Rng);

impl Dice {
    fn new(key: [u8; 32], stream: u64) -> Self {
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream);
        Self(rng)
    }

    /// Uniform in `0..n` (0 when `n` is 0 or 1).
    fn below(&mut self, n: u32) -> u32 {
        if n <= 1 { 0 } else { self.0.random_range(0..n) }
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    fn between(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            lo
        } else {
            self.0.random_range(lo..=hi)
        }
    }

    fn per_mille(&mut self, p: u32) -> bool {
        self.below(1000) < p
    }

    fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// One of `items`, which must not be empty (the tables are constants, checked by tests).
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let i = self.below(u32::try_from(items.len()).unwrap_or(u32::MAX));
        items[i as usize]
    }

    /// One of `items` by weight; `items` must not be empty.
    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut r = self.below(total);
        for &(item, w) in items {
            if r < w {
                return item;
            }
            r -= w;
        }
        items[items.len() - 1].0
    }

    /// An index drawn by a cumulative weight table.
    fn cumulative(&mut self, cdf: &[u32]) -> usize {
        let r = self.below(cdf.last().copied().unwrap_or(0));
        cdf.partition_point(|&c| c <= r)
            .min(cdf.len().saturating_sub(1))
    }

    /// A day in `lo..=hi` (`lo` when `hi` is before it).
    fn day(&mut self, lo: Date, hi: Date) -> Date {
        after(lo, self.below(span(lo, hi).saturating_add(1)))
    }

    /// A time of day in working hours, in seconds after midnight.
    fn office_hours(&mut self) -> u32 {
        self.between(8 * 3600, 18 * 3600)
    }

    /// Poisson-distributed, at most 20 (Knuth's method: λ is small here).
    fn poisson(&mut self, lambda: f64) -> u32 {
        let limit = (-lambda).exp();
        let mut p = self.unit();
        let mut k = 0;
        while p > limit && k < 20 {
            p *= self.unit();
            k += 1;
        }
        k
    }
}

fn before(d: Date, days: u32) -> Date {
    d.checked_sub_days(Days::new(days.into())).unwrap_or(d)
}

fn after(d: Date, days: u32) -> Date {
    d.checked_add_days(Days::new(days.into())).unwrap_or(d)
}

/// Whole days from `lo` to `hi`, 0 when `hi` is not after `lo`.
fn span(lo: Date, hi: Date) -> u32 {
    u32::try_from((hi - lo).num_days()).unwrap_or(0)
}

fn at(date: Date, seconds: u32) -> Timestamp {
    let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds, 0).unwrap_or(NaiveTime::MIN);
    date.and_time(time).and_utc()
}

fn weight_table(len: usize, flatten: u32) -> Vec<u32> {
    let mut total = 0u32;
    (0..len)
        .map(|rank| {
            total += 1_000_000 / (u32::try_from(rank).unwrap_or(u32::MAX) + flatten);
            total
        })
        .collect()
}

/// Why a person could not be built: only a bug in the tables can cause it.
type BuildError = Box<dyn Error + Send + Sync>;

/// What the people of one household share.
struct Household {
    root: u64,
    postcode: usize,
    house: u32,
    flat: Option<u32>,
    family: &'static str,
    practice: usize,
    head_gender: Gender,
    head_age: u32,
    /// The oldest a child of the head can be, in days, if the head can have children.
    max_child_age: Option<u32>,
    /// Twin children (household positions 2 and 3) share this age.
    twin_age: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Head,
    Partner,
    Child,
    Adult,
}

/// A deterministic generator of synthetic people. See the crate documentation for what a
/// dataset holds.
pub struct Generator {
    seed: u64,
    now: Timestamp,
    today: Date,
    key: [u8; 32],
    nhs_multiplier: u64,
    nhs_offset: u64,
    nhs_slot_offset: u64,
    sources: [Source; 7],
    dpo: Actor,
    postcodes: Vec<Postcode>,
    practices: Vec<GpPractice>,
    family_weights: Vec<u32>,
    male_weights: Vec<u32>,
    female_weights: Vec<u32>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// A generator for the dataset `seed`, as of `now`. It fails only if its own fixed
    /// vocabulary (source ids, postcodes, practice codes) were invalid.
    pub fn new(seed: u64, now: Timestamp) -> Result<Self, InvalidValue> {
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&hash(seed, TAG_KEY, i as u64, 0).to_le_bytes());
        }
        let infos = sources()?;
        let find = |src: Src| -> Result<Source, InvalidValue> {
            infos
                .iter()
                .find(|i| i.source.id.as_str() == src.id())
                .map(|i| i.source.clone())
                .ok_or_else(|| InvalidValue::new("source", "missing synthetic source"))
        };
        let sources = [
            find(Src::Pds)?,
            find(Src::Gp)?,
            find(Src::Uhd)?,
            find(Src::Dchft)?,
            find(Src::Community)?,
            find(Src::CouncilBcp)?,
            find(Src::CouncilDc)?,
        ];
        let dpo = Actor::new(
            UserId::parse("synthetic-dpo")?,
            OrganisationId::parse("DPO")?,
            Role::Dpo,
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        );
        let letters = tables::INWARD_LETTERS;
        let mut postcodes = Vec::with_capacity(OUTWARDS.len() * tables::INWARD_PER_OUTWARD);
        for (o, outward) in OUTWARDS.iter().enumerate() {
            for n in 0..tables::INWARD_PER_OUTWARD {
                let digit = n % 10;
                let first = letters[(n / 10) % 20] as char;
                let second = letters[(n / 200 * 5 + digit + o) % 20] as char;
                postcodes.push(Postcode::parse(&format!(
                    "{} {digit}{first}{second}",
                    outward.code
                ))?);
            }
        }
        let stems = tables::PRACTICE_STEMS;
        let suffixes = tables::PRACTICE_SUFFIXES;
        let practices = (0..OUTWARDS.len() * 2)
            .map(|p| {
                let name = format!(
                    "{} {}",
                    stems[p % stems.len()],
                    suffixes[(p + p / stems.len()) % suffixes.len()]
                );
                GpPractice::new(&format!("J81{:03}", p + 1), Some(&name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nhs = hash(seed, TAG_NHS, 0, 0);
        // Any multiplier prime to 100,000 permutes the 100,000 decades of the test range.
        let mut nhs_multiplier = (nhs % 100_000) | 1;
        if nhs_multiplier.is_multiple_of(5) {
            nhs_multiplier += 2;
        }
        Ok(Self {
            seed,
            now,
            today: now.date_naive(),
            key,
            nhs_multiplier,
            nhs_offset: (nhs >> 20) % 100_000,
            nhs_slot_offset: (nhs >> 40) % 9,
            sources,
            dpo,
            postcodes,
            practices,
            family_weights: weight_table(FAMILY_NAMES.len(), 30),
            male_weights: weight_table(MALE_NAMES.len(), 25),
            female_weights: weight_table(FEMALE_NAMES.len(), 25),
        })
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The moment the dataset is generated as of.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// People `0..n`, one at a time.
    pub fn people(&self, n: u64) -> impl Iterator<Item = SyntheticPerson> + '_ {
        self.people_range(0..n)
    }

    /// People with the indices in `range`, one at a time (for generating a dataset in
    /// parallel slices: person `i` is the same whichever slice builds it).
    pub fn people_range(&self, range: Range<u64>) -> impl Iterator<Item = SyntheticPerson> + '_ {
        range.map(|i| self.person(i))
    }

    /// Person `index` of the dataset.
    pub fn person(&self, index: u64) -> SyntheticPerson {
        let built = self.build(index);
        // Every value is drawn from tables that the tests check; a failure here is a bug
        // in them. Debug builds stop on it; release builds keep going with a bare record
        // rather than lose the rest of a million-person load.
        debug_assert!(
            built.is_ok(),
            "synthetic person {index}: {:?}",
            built.as_ref().err()
        );
        built.unwrap_or_else(|_| {
            let mut person = Person::new(self.person_id(index));
            if let Some(nhs) = self.nhs_number(index) {
                let _ = person.add_identifier(Identifier::Nhs(nhs));
            }
            SyntheticPerson {
                index,
                person,
                alerts: Vec::new(),
                referrals: Vec::new(),
                consent: None,
            }
        })
    }

    /// The id of person `index`.
    pub fn person_id(&self, index: u64) -> PersonId {
        PersonId::from_uuid(derived_uuid(self.seed, TAG_PERSON, index, 0))
    }

    /// The NHS number of person `index`: unique within the dataset, from the 999 test
    /// range, `None` from [`NHS_NUMBER_CAPACITY`] on.
    pub fn nhs_number(&self, index: u64) -> Option<NhsNumber> {
        if index >= NHS_NUMBER_CAPACITY {
            return None;
        }
        // Nine people per decade of stems (a decade has at most one stem without a check
        // digit), the decades permuted by the seed, the nine slots rotated by it.
        let decade = (self.nhs_multiplier * (index / 9) + self.nhs_offset) % 100_000;
        let slot = (index % 9 * 4 + self.nhs_slot_offset) % 9;
        let base = 999_000_000 + u32::try_from(decade * 10).ok()?;
        // The stem whose last digit is `d` has the weighted sum `sum + 2d`, which has no
        // check digit when it is 1 modulo 11: at most one `d` in the decade.
        let mut rest = base;
        let mut sum = 0;
        for weight in 2..=10 {
            sum += (rest % 10) * weight;
            rest /= 10;
        }
        let slot = u32::try_from(slot).ok()?;
        let skip = (0..=slot).any(|d| (sum + 2 * d) % 11 == 1);
        NhsNumber::from_first_nine(base + slot + u32::from(skip))
    }

    fn source(&self, src: Src) -> &Source {
        &self.sources[src as usize]
    }

    fn household_root(&self, index: u64) -> u64 {
        let block_start = index - index % HOUSEHOLD_BLOCK;
        let mut root = index;
        // 55% of people join the household of the index before theirs.
        while root > block_start && hash(self.seed, TAG_HOUSEHOLD, root, 0) % 100 < 55 {
            root -= 1;
        }
        root
    }

    fn household(&self, index: u64) -> Household {
        let root = self.household_root(index);
        let mut d = Dice::new(self.key, HOUSEHOLD_STREAM | root);
        let postcode = d.below(u32::try_from(self.postcodes.len()).unwrap_or(u32::MAX)) as usize;
        let house = d.between(1, 140);
        let flat = if d.per_mille(120) {
            Some(d.between(1, 12))
        } else {
            None
        };
        let family = FAMILY_NAMES[d.cumulative(&self.family_weights)];
        let practice = (postcode / tables::INWARD_PER_OUTWARD) * 2 + d.below(2) as usize;
        let head_gender = if d.per_mille(500) {
            Gender::Male
        } else {
            Gender::Female
        };
        let head_age = adult_age(&mut d);
        let max_child_age = (head_age > years(17) && head_age < years(62))
            .then(|| (years(18) - 1).min(head_age - years(17)));
        let twin_age = match max_child_age {
            Some(max) if d.per_mille(100) => Some(d.between(0, max)),
            _ => None,
        };
        Household {
            root,
            postcode,
            house,
            flat,
            family,
            practice,
            head_gender,
            head_age,
            max_child_age,
            twin_age,
        }
    }

    fn given_name(&self, d: &mut Dice, gender: Gender) -> &'static str {
        let male = match gender {
            Gender::Male => true,
            Gender::Female => false,
            Gender::Other | Gender::Unknown => d.per_mille(500),
        };
        if male {
            MALE_NAMES[d.cumulative(&self.male_weights)]
        } else {
            FEMALE_NAMES[d.cumulative(&self.female_weights)]
        }
    }

    fn address_lines(&self, postcode: usize, house: u32, flat: Option<u32>) -> Vec<String> {
        let streets = tables::STREETS;
        let street = streets[(mix(postcode as u64) % streets.len() as u64) as usize];
        let town = OUTWARDS[postcode / tables::INWARD_PER_OUTWARD].town;
        let mut lines = Vec::with_capacity(3);
        if let Some(flat) = flat {
            lines.push(format!("Flat {flat}"));
        }
        lines.push(format!("{house} {street}"));
        lines.push(town.to_owned());
        lines
    }

    fn build(&self, index: u64) -> Result<SyntheticPerson, BuildError> {
        let today = self.today;
        let hh = self.household(index);
        let position = index - hh.root;
        let mut d = Dice::new(self.key, index);

        // Who they are in the household, and so their age, gender and names.
        let member = match position {
            0 => Member::Head,
            1 if hh.max_child_age.is_some() && d.per_mille(300) => Member::Child,
            1 => Member::Partner,
            _ if hh.max_child_age.is_some() && d.per_mille(800) => Member::Child,
            _ => Member::Adult,
        };
        let age = match member {
            Member::Head => hh.head_age,
            Member::Partner => (hh.head_age + d.between(0, years(12)))
                .saturating_sub(years(6))
                .clamp(years(18), years(100)),
            Member::Child => match hh.twin_age {
                Some(twins) if position == 2 || position == 3 => twins,
                _ => d.between(0, hh.max_child_age.unwrap_or(0)),
            },
            Member::Adult => adult_age(&mut d),
        };
        let gender = match member {
            Member::Head => hh.head_gender,
            Member::Partner if d.per_mille(900) => match hh.head_gender {
                Gender::Male => Gender::Female,
                _ => Gender::Male,
            },
            _ => {
                let g = d.below(1000);
                if g < 490 {
                    Gender::Male
                } else if g < 982 {
                    Gender::Female
                } else if g < 986 {
                    Gender::Other
                } else {
                    Gender::Unknown
                }
            }
        };
        let first = self.given_name(&mut d, gender);
        let given = if d.per_mille(350) {
            let middle = self.given_name(&mut d, gender);
            if middle == first {
                first.to_owned()
            } else {
                format!("{first} {middle}")
            }
        } else {
            first.to_owned()
        };
        let keeps_family = match member {
            Member::Head => true,
            Member::Partner => d.per_mille(720),
            Member::Child => d.per_mille(920),
            Member::Adult => d.per_mille(500),
        };
        let own_family = FAMILY_NAMES[d.cumulative(&self.family_weights)];
        let family = if keeps_family { hh.family } else { own_family };
        let birth = before(today, age);

        // Death: about 1% within the 8 years shown, 0.5% before.
        let fate = d.below(1000);
        let death_ago = if fate < 15 && age >= 1 {
            let old = (fate >= 10).then(|| (OLD_DEATH_MIN_DAYS, age.min(years(40))));
            match old {
                Some((lo, hi)) if hi >= lo => Some(d.between(lo, hi)),
                _ => Some(d.between(1, age.min(RECENT_DEATH_MAX_DAYS))),
            }
        } else {
            None
        };
        let death = death_ago.map(|ago| before(today, ago));
        let end = death.unwrap_or(today);
        // The latest anything can be said about them.
        let anchor = death.map_or(self.now, |died| at(after(died, 5), 12 * 3600).min(self.now));

        let nhs = self.nhs_number(index);
        let outward = &OUTWARDS[hh.postcode / tables::INWARD_PER_OUTWARD];

        // Referrals: children's social care, mostly for children.
        let referral_count = if age < years(18) {
            d.weighted(&[(0u32, 68), (1, 20), (2, 8), (3, 3), (4, 1)])
        } else if age < years(26) {
            d.weighted(&[(0u32, 90), (1, 8), (2, 2)])
        } else {
            0
        };
        let council = if outward.bcp {
            Src::CouncilBcp
        } else {
            Src::CouncilDc
        };
        let (acute, other_acute) = if outward.uhd {
            (Src::Uhd, Src::Dchft)
        } else {
            (Src::Dchft, Src::Uhd)
        };

        // The sources that know them by a local id: one to three.
        let elderly = age >= years(65);
        let mut wanted: Vec<Src> = Vec::with_capacity(5);
        if referral_count > 0 {
            wanted.push(council);
        }
        if d.per_mille(880) {
            wanted.push(Src::Gp);
        }
        if d.per_mille(if elderly { 550 } else { 300 }) {
            wanted.push(acute);
        }
        if d.per_mille(if elderly { 250 } else { 100 }) {
            wanted.push(Src::Community);
        }
        if d.per_mille(60) {
            wanted.push(other_acute);
        }
        if referral_count == 0 && d.per_mille(if elderly { 120 } else { 40 }) {
            wanted.push(council);
        }
        if wanted.is_empty() {
            wanted.push(Src::Gp);
        }
        wanted.truncate(3);
        wanted.sort_unstable();
        let locals = wanted;

        // Demographics from one to three of: the PDS (most people with an NHS number)
        // and the local sources. The first, most trusted, states the truth; the others
        // sometimes hold something older or spelled differently.
        let mut stating: Vec<Src> = Vec::with_capacity(3);
        if nhs.is_some() && d.per_mille(800) {
            stating.push(Src::Pds);
        }
        stating.extend(locals.iter().copied());
        stating.truncate(if d.per_mille(150) { 1 } else { 3 });
        let practice = if d.per_mille(100) {
            d.below(u32::try_from(self.practices.len()).unwrap_or(u32::MAX)) as usize
        } else {
            hh.practice
        };
        let truth = Demographics {
            name: Some(PersonName::new(family, &given)?),
            birth_date: Some(birth),
            gender: Some(gender),
            address: Some(Address::new(
                self.address_lines(hh.postcode, hh.house, hh.flat),
                Some(self.postcodes[hh.postcode].clone()),
            )?),
            registered_gp: Some(self.practices[practice].clone()),
        };

        let mut person = Person::new(self.person_id(index));
        if let Some(nhs) = &nhs {
            person.add_identifier(Identifier::Nhs(nhs.clone()))?;
        }
        let mut text = String::with_capacity(32);
        for &src in &locals {
            text.clear();
            src.write_local_id(&mut text, index)?;
            let id = LocalId::new(self.source(src).id.clone(), &text)?;
            person.add_identifier(Identifier::Local(id))?;
        }
        // The most trusted statement last, so that it can take the truth rather than a copy.
        let mut truth = Some(truth);
        for (n, &src) in stating.iter().enumerate().rev() {
            let kind = self.source(src).kind;
            let keeps_practice = match kind {
                SourceKind::National | SourceKind::GpPractice => true,
                SourceKind::Acute | SourceKind::Community => d.per_mille(500),
                SourceKind::SocialCare | SourceKind::Other => d.per_mille(200),
            };
            let mut demographics = match &truth {
                Some(t) if n > 0 => {
                    self.disagree(&mut d, kind, t, family, &given, hh.postcode, keeps_practice)?
                }
                _ => truth.take().unwrap_or_default(),
            };
            if !keeps_practice {
                demographics.registered_gp = None;
            }
            let seconds_ago = i64::from(d.below(730)) * 86_400 + i64::from(d.below(86_400));
            let stated = anchor
                .checked_sub_signed(TimeDelta::seconds(seconds_ago))
                .unwrap_or(anchor)
                .max(at(birth, 12 * 3600))
                .min(anchor);
            person.apply_demographics(self.source(src).clone(), stated, demographics)?;
        }
        if let Some(died) = death {
            let reporter = stating.first().copied().unwrap_or(Src::Gp);
            let reported = at(after(died, d.between(1, 4)), d.office_hours()).min(self.now);
            person.record_death(died, self.source(reporter).clone(), reported)?;
        }

        let person_id = person.id();

        // Alerts: more for older people; about 2.9 a person overall.
        let lambda = match age / 365 {
            0..18 => 0.9,
            18..40 => 1.85,
            40..65 => 3.1,
            65..80 => 4.6,
            _ => 5.9,
        };
        let alert_count = d.poisson(lambda);
        let mut alerts = Vec::with_capacity(alert_count as usize);
        let alert_sources: Vec<(Src, u32)> = locals
            .iter()
            .map(|&s| (s, s.alert_weight()))
            .filter(|(_, w)| *w > 0)
            .collect();
        for n in 0..alert_count {
            let src = d.weighted(&alert_sources);
            let category = d.weighted(src.categories());
            let severity = d.weighted(if category == AlertCategory::Allergy {
                tables::ALLERGY_SEVERITIES
            } else {
                tables::OTHER_SEVERITIES
            });
            let description = d.pick(tables::descriptions(category));
            let recorded = d.day(birth.max(before(end, years(12))), end);
            let active_from = if d.per_mille(800) {
                recorded
            } else {
                before(recorded, d.between(1, 90)).max(birth)
            };
            let ending = d.below(100);
            let yesterday = before(end, 1);
            let active_to = if ending < 20 && active_from <= yesterday {
                Some(d.day(active_from, yesterday))
            } else if ending < 25 && death.is_none() {
                Some(after(today, d.between(1, 365)))
            } else {
                None
            };
            let last_said = match active_to {
                Some(to) if to < today => to,
                _ => recorded,
            };
            let details = AlertDetails::new(
                category,
                description,
                severity,
                recorded,
                active_from,
                active_to,
            )?;
            alerts.push(Alert::new(
                AlertId::from_uuid(derived_uuid(self.seed, TAG_ALERT, index, n.into())),
                person_id,
                self.source(src).clone(),
                {
                    text.clear();
                    write!(text, "{}-{:07}-{}", src.alert_prefix(), index + 1, n + 1)?;
                    &text
                },
                details,
                at(last_said, d.office_hours()).min(anchor),
            )?);
        }

        // Referrals, received while they were a child.
        let mut referrals = Vec::with_capacity(referral_count as usize);
        let window = (
            birth.max(before(end, years(8))),
            end.min(before(after(birth, years(18)), 1)),
        );
        for n in 0..referral_count {
            let (lo, hi) = window;
            if hi < lo {
                break;
            }
            let received = d.day(lo, hi);
            let statuses = if age >= years(18) {
                tables::HISTORIC_STATUSES
            } else if span(received, today) <= 365 {
                tables::RECENT_STATUSES
            } else {
                tables::OLDER_STATUSES
            };
            let status = d.weighted(statuses);
            let closed = status
                .is_closed()
                .then(|| after(received, d.below(span(received, today).min(365) + 1)));
            let involvement = d.weighted(if status == ReferralStatus::AwaitingDecision {
                tables::AWAITING_INVOLVEMENT
            } else {
                tables::INVOLVEMENT
            });
            let team = format!("{} – {}", d.pick(tables::teams(involvement)), outward.town);
            let details = ReferralDetails::new(
                received,
                &team,
                d.weighted(tables::REFERRAL_SOURCES),
                status,
                closed,
                involvement,
            )?;
            let last_said =
                closed.unwrap_or(after(received, d.below(span(received, today).min(30) + 1)));
            referrals.push(Referral::new(
                ReferralId::from_uuid(derived_uuid(self.seed, TAG_REFERRAL, index, n.into())),
                person_id,
                self.source(council).clone(),
                {
                    text.clear();
                    write!(
                        text,
                        "{}-{:07}-{}",
                        council.referral_prefix(),
                        index + 1,
                        n + 1
                    )?;
                    &text
                },
                details,
                at(last_said, d.office_hours()).min(self.now),
            )?);
        }

        // Consent: kept per NHS number, so only for people who have one.
        let choice = d.below(1000);
        let consent = match &nhs {
            Some(nhs) if choice < 33 => Some(self.consent(&mut d, nhs, choice, anchor, index)?),
            _ => None,
        };

        Ok(SyntheticPerson {
            index,
            person,
            alerts,
            referrals,
            consent,
        })
    }

    /// What a less trusted source states: the truth, or sometimes something older or
    /// spelled differently.
    #[allow(clippy::too_many_arguments)]
    fn disagree(
        &self,
        d: &mut Dice,
        kind: SourceKind,
        truth: &Demographics,
        family: &str,
        given: &str,
        postcode: usize,
        keeps_practice: bool,
    ) -> Result<Demographics, InvalidValue> {
        let address = if d.per_mille(130) {
            // They moved; this source still has the old address.
            let outward = postcode / tables::INWARD_PER_OUTWARD;
            let old = if d.per_mille(600) {
                outward * tables::INWARD_PER_OUTWARD
                    + d.below(tables::INWARD_PER_OUTWARD as u32) as usize
            } else {
                d.below(u32::try_from(self.postcodes.len()).unwrap_or(u32::MAX)) as usize
            };
            Some(Address::new(
                self.address_lines(old, d.between(1, 140), None),
                Some(self.postcodes[old].clone()),
            )?)
        } else if d.per_mille(50) {
            // The same address, with the street word abbreviated.
            match &truth.address {
                Some(address) => Some(Address::new(
                    address.lines().iter().map(|l| abbreviated(l)).collect(),
                    address.postcode().cloned(),
                )?),
                None => None,
            }
        } else {
            truth.address.clone()
        };
        let other_family = d.per_mille(60).then(|| family_variant(d, family));
        // Only the first of several given names.
        let first_only = given.contains(' ') && d.per_mille(400);
        let name = if other_family.is_some() || first_only {
            let given = if first_only {
                given.split(' ').next().unwrap_or(given)
            } else {
                given
            };
            Some(PersonName::new(
                other_family.as_deref().unwrap_or(family),
                given,
            )?)
        } else {
            truth.name.clone()
        };
        let birth_date = match truth.birth_date {
            // A birth date keyed a day out.
            Some(birth) if d.per_mille(8) => Some(if d.per_mille(500) {
                after(birth, 1).min(self.today)
            } else {
                before(birth, 1)
            }),
            other => other,
        };
        let gender =
            if matches!(kind, SourceKind::Acute | SourceKind::SocialCare) && d.per_mille(100) {
                None
            } else {
                truth.gender
            };
        Ok(Demographics {
            name,
            birth_date,
            gender,
            address,
            registered_gp: if keeps_practice {
                truth.registered_gp.clone()
            } else {
                None
            },
        })
    }

    fn consent(
        &self,
        d: &mut Dice,
        nhs: &NhsNumber,
        choice: u32,
        anchor: Timestamp,
        index: u64,
    ) -> Result<Consent, BuildError> {
        let days_ago = i64::from(d.between(30, 5 * 365));
        let when = anchor
            .checked_sub_signed(TimeDelta::days(days_ago))
            .unwrap_or(anchor);
        let mut consent = Consent::participating(nhs.clone());
        if choice < 20 {
            consent.ask_first(
                &self.dpo,
                when,
                "Asked to be asked first: letter to the DPO",
            )?;
        } else if d.per_mille(333) {
            let family = FAMILY_NAMES[d.cumulative(&self.family_weights)];
            let given = self.given_name(d, Gender::Unknown);
            let representative = Representative::new(
                &format!("{given} {family}"),
                d.pick(tables::RELATIONSHIPS),
                true,
                true,
                &format!("LPA-{:07}", index + 1),
            )?;
            consent.opt_out(
                &self.dpo,
                when,
                Some(representative),
                "Opt-out form from a representative",
            )?;
            let evidence = d.below(3);
            if evidence >= 1 {
                let asked = when + TimeDelta::days(7);
                consent.set_evidence_status(
                    &self.dpo,
                    asked,
                    EvidenceStatus::Requested,
                    "Asked for a copy of the lasting power of attorney",
                )?;
                if evidence == 2 {
                    consent.set_evidence_status(
                        &self.dpo,
                        asked + TimeDelta::days(14),
                        EvidenceStatus::Verified,
                        "Lasting power of attorney seen and registered",
                    )?;
                }
            }
        } else {
            consent.opt_out(&self.dpo, when, None, "Opt-out form from the person")?;
        }
        if choice >= 30 {
            // Opted out, then back in: participating, with the history kept.
            consent.opt_in(
                &self.dpo,
                when + TimeDelta::days(20),
                "Asked to take part again",
            )?;
        }
        Ok(consent)
    }
}

/// An adult's age in days, by the age structure of Dorset (older than England's).
fn adult_age(d: &mut Dice) -> u32 {
    let (lo, hi) = d.weighted(&[
        ((18, 30), 16),
        ((30, 40), 15),
        ((40, 50), 15),
        ((50, 60), 17),
        ((60, 70), 15),
        ((70, 80), 13),
        ((80, 90), 7),
        ((90, 101), 2),
    ]);
    d.between(years(lo), years(hi) - 1)
}

/// A family name as a less careful system holds it: without punctuation or accents, in
/// capitals, or with two letters swapped.
fn family_variant(d: &mut Dice, family: &str) -> String {
    let plain: String = family
        .chars()
        .filter(|c| *c != '\'')
        .map(|c| if c == '-' { ' ' } else { unaccented(c) })
        .collect();
    let choice = d.below(3);
    if choice == 0 && plain != family {
        return plain;
    }
    let chars: Vec<char> = family.chars().collect();
    if choice == 1 && chars.len() >= 5 && chars.iter().all(|c| c.is_alphabetic()) {
        let mut swapped = chars;
        let i = 1 + d.below(u32::try_from(swapped.len() - 3).unwrap_or(1)) as usize;
        swapped.swap(i, i + 1);
        return swapped.into_iter().collect();
    }
    family.to_uppercase()
}

/// An address line with its street word abbreviated, as some systems store it.
fn abbreviated(line: &str) -> String {
    for (long, short) in tables::ABBREVIATIONS {
        if let Some(stem) = line.strip_suffix(long) {
            return format!("{stem}{short}");
        }
    }
    line.to_owned()
}

fn unaccented(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' | 'ą' => 'a',
        'é' | 'è' | 'ê' | 'ë' | 'ę' | 'ě' => 'e',
        'í' | 'ì' | 'î' | 'ï' | 'ı' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ç' | 'ć' | 'č' => 'c',
        'ś' | 'ş' | 'š' => 's',
        'ń' | 'ñ' => 'n',
        'ł' => 'l',
        'ř' => 'r',
        'ż' | 'ź' | 'ž' => 'z',
        'ễ' => 'e',
        'Ó' | 'Ö' => 'O',
        'Ł' => 'L',
        'Ş' | 'Š' => 'S',
        other => other,
    }
}
