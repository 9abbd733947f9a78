use std::fmt;

use care_kernel::InvalidValue;
use serde::{Deserialize, Serialize};

/// A valid NHS number: ten digits whose last is the modulus-11 check digit of the first nine.
///
/// `NhsNumber::parse` is the only way to get one, so a value of this type is always valid.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NhsNumber([u8; 10]);

impl NhsNumber {
    /// Parses ten digits, allowing spaces and hyphens between them (`943 476 5919`), and
    /// refuses anything whose check digit is wrong.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut digits = [0u8; 10];
        let mut count = 0usize;
        for c in raw.trim().chars() {
            match c {
                ' ' | '-' => continue,
                '0'..='9' => {
                    if count == 10 {
                        return Err(InvalidValue::new("nhs_number", "must have 10 digits"));
                    }
                    digits[count] = c as u8 - b'0';
                    count += 1;
                }
                _ => {
                    return Err(InvalidValue::new(
                        "nhs_number",
                        "must contain only digits and spaces",
                    ));
                }
            }
        }
        if count != 10 {
            return Err(InvalidValue::new("nhs_number", "must have 10 digits"));
        }
        match check_digit(&digits) {
            Some(check) if check == digits[9] => Ok(Self(digits)),
            _ => Err(InvalidValue::new(
                "nhs_number",
                "check digit does not match (modulus 11)",
            )),
        }
    }

    /// Completes nine leading digits with their check digit. Returns `None` when the nine
    /// digits have no valid check digit (remainder 10), as one in eleven do.
    pub fn from_first_nine(first_nine: u32) -> Option<Self> {
        if first_nine > 999_999_999 {
            return None;
        }
        let mut digits = [0u8; 10];
        let mut rest = first_nine;
        for slot in digits[..9].iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        digits[9] = check_digit(&digits)?;
        Some(Self(digits))
    }

    /// The ten digits without spaces (`9434765919`), as stored and exchanged.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// The number as people read it: `943 476 5919`.
    pub fn formatted(&self) -> String {
        let d = self.digits();
        format!("{} {} {}", &d[..3], &d[3..6], &d[6..])
    }
}

/// The modulus-11 check digit of the first nine digits, or `None` when it would be 10.
fn check_digit(digits: &[u8; 10]) -> Option<u8> {
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, weight)| u32::from(*d) * weight)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        check => Some(check as u8),
    }
}

/// NHS numbers are personal data: `Debug` masks all but the last three digits.
impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        write!(f, "NhsNumber(*******{})", &d[7..])
    }
}

impl TryFrom<String> for NhsNumber {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<NhsNumber> for String {
    fn from(value: NhsNumber) -> Self {
        value.digits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_a_valid_number_with_or_without_spaces() {
        let n = NhsNumber::parse("9434765919").unwrap();
        assert_eq!(n.digits(), "9434765919");
        assert_eq!(n.formatted(), "943 476 5919");
        assert_eq!(NhsNumber::parse("943 476 5919").unwrap(), n);
        assert_eq!(NhsNumber::parse(" 943-476-5919 ").unwrap(), n);
    }

    #[test]
    fn refuses_a_wrong_check_digit() {
        let err = NhsNumber::parse("9434765918").unwrap_err();
        assert_eq!(err.field, "nhs_number");
        assert!(err.reason.contains("check digit"));
    }

    #[test]
    fn refuses_nine_or_eleven_digits_and_letters() {
        assert!(NhsNumber::parse("943476591").is_err());
        assert!(NhsNumber::parse("94347659190").is_err());
        assert!(NhsNumber::parse("943476591X").is_err());
        assert!(NhsNumber::parse("").is_err());
    }

    #[test]
    fn refuses_numbers_whose_check_digit_would_be_ten() {
        // 123456789: weighted sum 1*10+2*9+...+9*2 = 210, 210 % 11 = 1, 11 - 1 = 10.
        assert_eq!(NhsNumber::from_first_nine(123_456_789), None);
        for last in 0..=9 {
            assert!(NhsNumber::parse(&format!("123456789{last}")).is_err());
        }
    }

    #[test]
    fn debug_does_not_show_the_number() {
        let n = NhsNumber::parse("9434765919").unwrap();
        assert_eq!(format!("{n:?}"), "NhsNumber(*******919)");
    }

    proptest! {
        #[test]
        fn completed_numbers_parse_and_round_trip(first_nine in 0u32..=999_999_999) {
            if let Some(n) = NhsNumber::from_first_nine(first_nine) {
                prop_assert_eq!(NhsNumber::parse(&n.digits()), Ok(n.clone()));
                prop_assert_eq!(NhsNumber::parse(&n.formatted()), Ok(n));
            }
        }

        #[test]
        fn changing_any_one_digit_is_detected(first_nine in 0u32..=999_999_999, pos in 0usize..10, delta in 1u8..10) {
            if let Some(n) = NhsNumber::from_first_nine(first_nine) {
                let mut digits: Vec<u8> = n.digits().into_bytes();
                digits[pos] = b'0' + (digits[pos] - b'0' + delta) % 10;
                let changed = String::from_utf8(digits).unwrap();
                prop_assert!(NhsNumber::parse(&changed).is_err());
            }
        }

        #[test]
        fn parse_never_panics(raw in ".{0,30}") {
            let _ = NhsNumber::parse(&raw);
        }
    }
}
