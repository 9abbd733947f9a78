//! The separators a message declares in MSH-1 and MSH-2 (FHS and BHS declare theirs the same way).

use crate::Hl7Error;

/// The separators and escape character of a message, as declared in MSH-1 and MSH-2.
///
/// Parsed messages always have `escape: Some(_)`: MSH-2 must hold component, repetition,
/// escape and subcomponent characters (four, as every version of the standard says),
/// optionally followed by the v2.7 truncation character. A caller building its own
/// `Delimiters` for [`crate::escape`] may set `escape: None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// MSH-1, normally `|`.
    pub field: char,
    /// MSH-2 first character, normally `^`.
    pub component: char,
    /// MSH-2 second character, normally `~`.
    pub repetition: char,
    /// MSH-2 third character, normally `\`.
    pub escape: Option<char>,
    /// MSH-2 fourth character, normally `&`.
    pub subcomponent: char,
    /// MSH-2 fifth character (v2.7 and later), normally `#` when present.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    /// `|^~\&`, no truncation character.
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// The MSH-2 text for these delimiters (`^~\&`, with the truncation character if any).
    #[must_use]
    pub fn encoding_characters(&self) -> String {
        let mut out = String::with_capacity(5);
        out.push(self.component);
        out.push(self.repetition);
        if let Some(escape) = self.escape {
            out.push(escape);
        }
        out.push(self.subcomponent);
        if let Some(truncation) = self.truncation {
            out.push(truncation);
        }
        out
    }

    pub(crate) fn seps(&self) -> Seps {
        // Parsed delimiters are ASCII; caller-built ones are only used by `escape`, which
        // works on chars. A non-ASCII char here can never match a byte, which is harmless.
        let byte = |c: char| u8::try_from(c).ok().filter(u8::is_ascii).unwrap_or(NONE);
        Seps {
            field: byte(self.field),
            component: byte(self.component),
            repetition: byte(self.repetition),
            escape: self.escape.map_or(NONE, byte),
            subcomponent: byte(self.subcomponent),
            truncation: self.truncation.map_or(NONE, byte),
        }
    }
}

/// A byte that never occurs in UTF-8 text: a separator set to it never splits anything.
pub(crate) const NONE: u8 = 0xFF;

/// The delimiters as bytes, copied into every segment, field and component view.
///
/// All parsed delimiters are ASCII, so splitting on these bytes always lands on char
/// boundaries of the UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seps {
    pub(crate) field: u8,
    pub(crate) component: u8,
    pub(crate) repetition: u8,
    pub(crate) escape: u8,
    pub(crate) subcomponent: u8,
    pub(crate) truncation: u8,
}

impl Seps {
    /// For MSH-1 and MSH-2, which are read literally: nothing splits, nothing unescapes.
    pub(crate) const LITERAL: Seps = Seps {
        field: NONE,
        component: NONE,
        repetition: NONE,
        escape: NONE,
        subcomponent: NONE,
        truncation: NONE,
    };

    pub(crate) fn default_seps() -> Seps {
        Delimiters::default().seps()
    }
}

/// `MSH`, `FHS` or `BHS` as a static string, if `id` is one of them.
pub(crate) fn header_name(id: &str) -> Option<&'static str> {
    match id {
        "MSH" => Some("MSH"),
        "FHS" => Some("FHS"),
        "BHS" => Some("BHS"),
        _ => None,
    }
}

fn usable(b: u8) -> bool {
    b.is_ascii_graphic() && !b.is_ascii_alphanumeric()
}

/// Reads the delimiters of a header segment (`MSH|^~\&|...`, `FHS|...`, `BHS|...`).
///
/// `segment` is one segment, already cut at its terminator, beginning with its id.
pub(crate) fn read_header(
    segment: &str,
    header: &'static str,
) -> Result<(Delimiters, Seps), Hl7Error> {
    let bytes = segment.as_bytes();
    let Some(&field) = bytes.get(3) else {
        return Err(Hl7Error::FieldSeparatorMissing { header });
    };
    if !usable(field) {
        return Err(Hl7Error::FieldSeparatorInvalid { header });
    }
    let rest = bytes.get(4..).unwrap_or_default();
    let encoding = match memchr::memchr(field, rest) {
        Some(end) => rest.get(..end).unwrap_or_default(),
        None => rest,
    };
    let invalid = |reason| Hl7Error::EncodingCharactersInvalid { header, reason };
    let (component, repetition, escape, subcomponent, truncation) = match *encoding {
        [] => return Err(Hl7Error::EncodingCharactersMissing { header }),
        [c, r, e, s] => (c, r, e, s, None),
        [c, r, e, s, t] => (c, r, e, s, Some(t)),
        [_] | [_, _] | [_, _, _] => {
            return Err(invalid(
                "fewer than four (component, repetition, escape, subcomponent)",
            ));
        }
        _ => {
            return Err(invalid(
                "more than five, or the field separator is missing after them",
            ));
        }
    };
    let all = [component, repetition, escape, subcomponent];
    if !all.iter().chain(truncation.as_ref()).all(|&b| usable(b)) {
        return Err(invalid(
            "each must be printable ASCII punctuation (like ^~\\&)",
        ));
    }
    let mut seen = [field, component, repetition, escape, subcomponent, NONE];
    if let Some(t) = truncation {
        seen[5] = t;
    }
    let used = if truncation.is_some() { 6 } else { 5 };
    for (i, a) in seen.iter().take(used).enumerate() {
        if seen.iter().take(used).skip(i + 1).any(|b| b == a) {
            return Err(invalid("they repeat a character (or the field separator)"));
        }
    }
    let delimiters = Delimiters {
        field: char::from(field),
        component: char::from(component),
        repetition: char::from(repetition),
        escape: Some(char::from(escape)),
        subcomponent: char::from(subcomponent),
        truncation: truncation.map(char::from),
    };
    let seps = Seps {
        field,
        component,
        repetition,
        escape,
        subcomponent,
        truncation: truncation.unwrap_or(NONE),
    };
    Ok((delimiters, seps))
}
