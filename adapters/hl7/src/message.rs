//! One message: segment slices found once, fields and components split when asked for.

use std::borrow::Cow;
use std::fmt;

use crate::Hl7Error;
use crate::delimiters::{Delimiters, Seps, header_name, read_header};
use crate::escape::unescape;

/// One HL7 v2 message, borrowing the text it was parsed from.
///
/// Parsing finds the segments and checks the header and every segment id; fields,
/// repetitions and components are split only when read, so reading five fields of a
/// forty-segment message costs five small scans.
///
/// `Debug` shows segment ids only: the text is a patient's record.
#[derive(Clone)]
pub struct Message<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    seps: Seps,
    segments: Vec<&'a str>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("delimiters", &self.delimiters)
            .field(
                "segments",
                &self.segments().map(|s| s.id()).collect::<Vec<_>>(),
            )
            .field("bytes", &self.raw.len())
            .finish()
    }
}

/// The text without a leading UTF-8 byte order mark.
pub(crate) fn strip_bom(input: &str) -> &str {
    input.strip_prefix('\u{FEFF}').unwrap_or(input)
}

/// Non-blank lines with their byte offsets. CR, LF and CRLF all end a segment; a line of
/// only spaces or tabs counts as blank (feeds put blank lines between messages).
#[derive(Debug, Clone)]
pub(crate) struct Lines<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.pos;
            let rest = self.text.as_bytes().get(start..)?;
            if rest.is_empty() {
                return None;
            }
            let end = memchr::memchr2(b'\r', b'\n', rest).map_or(self.text.len(), |i| start + i);
            self.pos = end + 1;
            let line = self.text.get(start..end)?;
            if !line.bytes().all(|b| b == b' ' || b == b'\t') {
                return Some((start, line));
            }
        }
    }
}

/// True when `line` starts with a well-formed segment id followed by the field separator
/// (or nothing).
pub(crate) fn has_segment_id(line: &[u8], field: u8) -> bool {
    match line {
        [a, b, c, rest @ ..] => {
            a.is_ascii_uppercase()
                && (b.is_ascii_uppercase() || b.is_ascii_digit())
                && (c.is_ascii_uppercase() || c.is_ascii_digit())
                && rest.first().is_none_or(|&f| f == field)
        }
        _ => false,
    }
}

/// The segments that begin or end a message, batch or file.
pub(crate) fn boundary_name(line: &str) -> Option<&'static str> {
    let id = line.get(..3)?;
    // "MSHX..." is not an MSH segment.
    if line
        .as_bytes()
        .get(3)
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    match id {
        "MSH" => Some("MSH"),
        "FHS" => Some("FHS"),
        "BHS" => Some("BHS"),
        "BTS" => Some("BTS"),
        "FTS" => Some("FTS"),
        _ => None,
    }
}

impl<'a> Message<'a> {
    /// Parses exactly one message. A leading UTF-8 BOM, blank lines, and trailing segment
    /// terminators are accepted; a second MSH (or a batch segment) is an error — use
    /// [`crate::split_messages`] for files and batches.
    ///
    /// # Errors
    /// [`Hl7Error::Empty`], [`Hl7Error::NotMsh`], the MSH-1/MSH-2 errors, and
    /// [`Hl7Error::InvalidSegmentId`] / [`Hl7Error::UnexpectedSegment`] naming the segment.
    pub fn parse(input: &'a str) -> Result<Self, Hl7Error> {
        Self::parse_inner(input, false)
    }

    /// Reads only the MSH segment and ignores the rest, so that a message whose body is
    /// broken can still be answered with an AR/AE [`crate::ack`]. [`Message::raw`] is then
    /// the MSH segment alone.
    ///
    /// # Errors
    /// As [`Message::parse`], for the MSH segment only.
    pub fn parse_header(input: &'a str) -> Result<Self, Hl7Error> {
        Self::parse_inner(input, true)
    }

    fn parse_inner(input: &'a str, header_only: bool) -> Result<Self, Hl7Error> {
        let body = strip_bom(input);
        let mut lines = Lines::new(body);
        let Some((start, msh)) = lines.next() else {
            return Err(Hl7Error::Empty);
        };
        if !msh.starts_with("MSH") {
            return Err(Hl7Error::NotMsh);
        }
        let (delimiters, seps) = read_header(msh, "MSH")?;
        let mut segments = Vec::with_capacity(if header_only { 1 } else { 16 });
        segments.push(msh);
        let mut end = start + msh.len();
        if !header_only {
            for (i, (at, line)) in lines.enumerate() {
                let index = i + 2;
                if !has_segment_id(line.as_bytes(), seps.field) {
                    return Err(Hl7Error::InvalidSegmentId { index });
                }
                if let Some(id) = boundary_name(line) {
                    return Err(Hl7Error::UnexpectedSegment { index, id });
                }
                segments.push(line);
                end = at + line.len();
            }
        }
        Ok(Self {
            raw: body.get(start..end).unwrap_or(msh),
            delimiters,
            seps,
            segments,
        })
    }

    /// The message text, from `MSH` to the end of its last segment (no BOM, no trailing
    /// terminators).
    #[must_use]
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The delimiters declared in MSH-1 and MSH-2.
    #[must_use]
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// The MSH segment.
    #[must_use]
    pub fn header(&self) -> Segment<'a> {
        Segment {
            raw: self.segments.first().copied().unwrap_or_default(),
            seps: self.seps,
        }
    }

    /// Every segment, in order, MSH first.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        let seps = self.seps;
        self.segments.iter().map(move |&raw| Segment { raw, seps })
    }

    /// How many segments the message has (blank lines are not segments).
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The first segment with this id (`"PID"`), if any.
    #[must_use]
    pub fn segment(&self, id: &str) -> Option<Segment<'a>> {
        self.segments_named(id).next()
    }

    /// Every segment with this id, in order (`"OBX"`, or `"PID"` in an A40 with several).
    pub fn segments_named<'s>(&'s self, id: &'s str) -> impl Iterator<Item = Segment<'a>> + 's {
        let seps = self.seps;
        self.segments
            .iter()
            .filter(move |raw| raw.as_bytes().get(..3) == Some(id.as_bytes()))
            .map(move |&raw| Segment { raw, seps })
    }

    /// MSH-9.1 and MSH-9.2, for example `("ADT", "A01")`; empty when absent.
    #[must_use]
    pub fn message_type(&self) -> (Cow<'a, str>, Cow<'a, str>) {
        let field = self.header().field(9);
        (field.component(1).value(), field.component(2).value())
    }

    /// MSH-10, the message control id.
    #[must_use]
    pub fn control_id(&self) -> Cow<'a, str> {
        self.header().field(10).value()
    }

    /// MSH-12.1, the version id (`"2.5"`).
    #[must_use]
    pub fn version(&self) -> Cow<'a, str> {
        self.header().field(12).value()
    }
}

/// The `n`th (0-based) piece of `s` split on `sep`, or "" when there are fewer pieces.
pub(crate) fn nth_piece(s: &str, sep: u8, n: usize) -> &str {
    let mut start = 0;
    let mut index = 0;
    for pos in memchr::memchr_iter(sep, s.as_bytes()) {
        if index == n {
            return s.get(start..pos).unwrap_or_default();
        }
        index += 1;
        start = pos + 1;
    }
    if index == n {
        s.get(start..).unwrap_or_default()
    } else {
        ""
    }
}

/// The pieces of a non-empty string split on a byte; nothing for an empty string.
#[derive(Debug, Clone)]
struct Pieces<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Pieces<'a> {
    fn new(s: &'a str, sep: u8) -> Self {
        Self {
            rest: (!s.is_empty()).then_some(s),
            sep,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match memchr::memchr(self.sep, s.as_bytes()) {
            Some(i) => {
                self.rest = s.get(i + 1..);
                s.get(..i)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

const NULL: &str = "\"\"";

macro_rules! text_view {
    ($name:ident) => {
        text_view!($name, no_text);

        impl<'a> $name<'a> {
            /// The whole text unescaped, separators below this level included (`""` reads
            /// as ""). Borrowed when there is nothing to unescape.
            #[must_use]
            pub fn text(&self) -> Cow<'a, str> {
                if self.is_null() {
                    Cow::Borrowed("")
                } else {
                    unescape(self.raw, &self.seps)
                }
            }
        }
    };
    ($name:ident, no_text) => {
        impl<'a> $name<'a> {
            /// The text as it stands in the message, escape sequences and separators included.
            #[must_use]
            pub fn raw(&self) -> &'a str {
                self.raw
            }

            /// True when nothing was sent here (absent and empty read the same).
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self.raw.is_empty()
            }

            /// True for `""`, HL7's explicit null ("delete the value you hold"), which is
            /// not the same as empty ("no change"). Its value reads as "".
            #[must_use]
            pub fn is_null(&self) -> bool {
                self.raw == NULL
            }
        }

        impl fmt::Debug for $name<'_> {
            /// The length only: the text is a patient's record.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("bytes", &self.raw.len())
                    .finish()
            }
        }
    };
}

/// One segment: its id and its fields, numbered as in the standard.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a str,
    seps: Seps,
}

impl fmt::Debug for Segment<'_> {
    /// The id and length only: the text is a patient's record.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id())
            .field("bytes", &self.raw.len())
            .finish()
    }
}

impl<'a> Segment<'a> {
    pub(crate) fn new(raw: &'a str, seps: Seps) -> Self {
        Self { raw, seps }
    }

    /// The segment id (`"PID"`).
    #[must_use]
    pub fn id(&self) -> &'a str {
        self.raw.get(..3).unwrap_or(self.raw)
    }

    /// The segment text, id included, terminator excluded.
    #[must_use]
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// MSH, FHS and BHS count their field separator as field 1.
    fn is_header(&self) -> bool {
        header_name(self.id()).is_some()
    }

    /// Field `n` as the standard numbers it (`PID-3` is `field(3)`); empty when absent.
    ///
    /// In MSH (and FHS, BHS) `field(1)` is the field separator itself and `field(2)` the
    /// encoding characters, both read literally (never split or unescaped); `field(3)` is
    /// the sending application. `field(0)` is the segment id.
    #[must_use]
    pub fn field(&self, n: usize) -> Field<'a> {
        let literal = |raw| Field {
            raw,
            seps: Seps::LITERAL,
        };
        if n == 0 {
            return literal(self.id());
        }
        let piece = if self.is_header() {
            match n {
                1 => return literal(self.raw.get(3..4).unwrap_or_default()),
                2 => return literal(nth_piece(self.raw, self.seps.field, 1)),
                _ => nth_piece(self.raw, self.seps.field, n - 1),
            }
        } else {
            nth_piece(self.raw, self.seps.field, n)
        };
        Field {
            raw: piece,
            seps: self.seps,
        }
    }

    /// The number of the last field present (`PID|1||x` has 3; `MSH|^~\&|A` has 3).
    #[must_use]
    pub fn field_count(&self) -> usize {
        let separators = memchr::memchr_iter(self.seps.field, self.raw.as_bytes()).count();
        if self.is_header() && separators > 0 {
            separators + 1
        } else {
            separators
        }
    }

    /// Fields 1 to [`Segment::field_count`], in order, in one pass.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + use<'a> {
        let seps = self.seps;
        let header = self.is_header() && self.raw.len() > 3;
        let literal = |raw| Field {
            raw,
            seps: Seps::LITERAL,
        };
        let leading = header
            .then(|| {
                [
                    literal(self.raw.get(3..4).unwrap_or_default()),
                    literal(nth_piece(self.raw, seps.field, 1)),
                ]
            })
            .into_iter()
            .flatten();
        let rest = Pieces::new(self.raw, seps.field)
            .skip(if header { 2 } else { 1 })
            .map(move |raw| Field { raw, seps });
        leading.chain(rest)
    }
}

/// One field of a segment; its repetitions, components and subcomponents are split when
/// asked for.
#[derive(Clone, Copy)]
pub struct Field<'a> {
    raw: &'a str,
    seps: Seps,
}

text_view!(Field, no_text);

impl<'a> Field<'a> {
    /// The repetitions, in order; none for an empty field (`~~` is three empty ones).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'a>> + use<'a> {
        let seps = self.seps;
        Pieces::new(self.raw, seps.repetition).map(move |raw| Repetition { raw, seps })
    }

    /// Repetition `i`, 0-based; empty when absent.
    #[must_use]
    pub fn repetition(&self, i: usize) -> Repetition<'a> {
        Repetition {
            raw: nth_piece(self.raw, self.seps.repetition, i),
            seps: self.seps,
        }
    }

    /// Component `n` (1-based) of the first repetition; empty when absent.
    #[must_use]
    pub fn component(&self, n: usize) -> Component<'a> {
        self.repetition(0).component(n)
    }

    /// The value of the first repetition's first component's first subcomponent, unescaped:
    /// for a simple field (`PID-7`, `PID-8`) the whole value, for a composite one
    /// (`PID-5` `SMITH^JOHN`) the first component. Use [`Field::text`] for the whole
    /// first repetition.
    #[must_use]
    pub fn value(&self) -> Cow<'a, str> {
        self.repetition(0).value()
    }

    /// The first repetition unescaped, components and all (`""` reads as "").
    #[must_use]
    pub fn text(&self) -> Cow<'a, str> {
        self.repetition(0).text()
    }
}

/// One repetition of a field.
#[derive(Clone, Copy)]
pub struct Repetition<'a> {
    raw: &'a str,
    seps: Seps,
}

text_view!(Repetition);

impl<'a> Repetition<'a> {
    /// The components, in order; none for an empty repetition.
    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + use<'a> {
        let seps = self.seps;
        Pieces::new(self.raw, seps.component).map(move |raw| Component { raw, seps })
    }

    /// Component `n`, 1-based; empty when absent (and for `n == 0`).
    #[must_use]
    pub fn component(&self, n: usize) -> Component<'a> {
        let raw = match n.checked_sub(1) {
            Some(i) => nth_piece(self.raw, self.seps.component, i),
            None => "",
        };
        Component {
            raw,
            seps: self.seps,
        }
    }

    /// Subcomponent `n` (1-based) of the first component.
    #[must_use]
    pub fn subcomponent(&self, n: usize) -> Subcomponent<'a> {
        self.component(1).subcomponent(n)
    }

    /// The first component's first subcomponent, unescaped.
    #[must_use]
    pub fn value(&self) -> Cow<'a, str> {
        self.component(1).value()
    }
}

/// One component of a repetition.
#[derive(Clone, Copy)]
pub struct Component<'a> {
    raw: &'a str,
    seps: Seps,
}

text_view!(Component);

impl<'a> Component<'a> {
    /// The subcomponents, in order; none for an empty component.
    pub fn subcomponents(&self) -> impl Iterator<Item = Subcomponent<'a>> + use<'a> {
        let seps = self.seps;
        Pieces::new(self.raw, seps.subcomponent).map(move |raw| Subcomponent { raw, seps })
    }

    /// Subcomponent `n`, 1-based; empty when absent (and for `n == 0`).
    #[must_use]
    pub fn subcomponent(&self, n: usize) -> Subcomponent<'a> {
        let raw = match n.checked_sub(1) {
            Some(i) => nth_piece(self.raw, self.seps.subcomponent, i),
            None => "",
        };
        Subcomponent {
            raw,
            seps: self.seps,
        }
    }

    /// The first subcomponent, unescaped (the whole component when it has no `&`).
    #[must_use]
    pub fn value(&self) -> Cow<'a, str> {
        self.subcomponent(1).value()
    }
}

/// One subcomponent: a leaf.
#[derive(Clone, Copy)]
pub struct Subcomponent<'a> {
    raw: &'a str,
    seps: Seps,
}

text_view!(Subcomponent);

impl<'a> Subcomponent<'a> {
    /// The value, unescaped; "" for the explicit null `""`.
    #[must_use]
    pub fn value(&self) -> Cow<'a, str> {
        self.text()
    }
}
