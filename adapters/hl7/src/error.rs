//! What the parser cannot read, said in words an interface engineer can act on.
//!
//! Messages never quote the payload: a segment that is not a segment may be the tail of a
//! patient's name, and these errors end up in logs.

/// Why an input could not be read as HL7 v2.
///
/// `Display` names what and where ("segment 3: ...", "MSH-2 encoding characters missing").
/// [`Hl7Error::code`] gives a stable short name for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Hl7Error {
    /// Nothing but blank lines (or nothing at all).
    #[error("input is empty")]
    Empty,
    /// [`crate::Message::parse`] was given something that does not begin with an MSH segment.
    #[error("input does not start with MSH")]
    NotMsh,
    /// [`crate::split_messages`] found no MSH, FHS or BHS segment anywhere.
    #[error("input holds no HL7 message (no MSH, FHS or BHS segment)")]
    NoMessage,
    /// The header segment ends right after its id.
    #[error("{header}-1 field separator missing")]
    FieldSeparatorMissing {
        /// `MSH`, `FHS` or `BHS`.
        header: &'static str,
    },
    /// The character after the header id cannot be a separator.
    #[error(
        "{header}-1 field separator invalid: it must be printable ASCII punctuation (like '|')"
    )]
    FieldSeparatorInvalid {
        /// `MSH`, `FHS` or `BHS`.
        header: &'static str,
    },
    /// The header's second field (normally `^~\&`) is empty.
    #[error("{header}-2 encoding characters missing")]
    EncodingCharactersMissing {
        /// `MSH`, `FHS` or `BHS`.
        header: &'static str,
    },
    /// The header's second field is present but cannot be read as encoding characters.
    #[error("{header}-2 encoding characters invalid: {reason}")]
    EncodingCharactersInvalid {
        /// `MSH`, `FHS` or `BHS`.
        header: &'static str,
        /// What is wrong with them.
        reason: &'static str,
    },
    /// A line inside a message does not begin with a segment id.
    #[error(
        "segment {index}: no segment id (expected three capital letters or digits, then the field separator)"
    )]
    InvalidSegmentId {
        /// 1-based position among the message's non-blank segments.
        index: usize,
    },
    /// A message or batch header/trailer where only a message's own segments may be.
    #[error(
        "segment {index} ({id}): {id} cannot appear inside a message; split the input with split_messages"
    )]
    UnexpectedSegment {
        /// 1-based position among the message's non-blank segments.
        index: usize,
        /// `MSH`, `FHS`, `BHS`, `BTS` or `FTS`.
        id: &'static str,
    },
    /// Bytes that are not UTF-8 in a message that does not declare ISO-8859-1.
    #[error(
        "not UTF-8 (invalid byte at offset {offset}) and MSH-18 {charset:?} does not name ISO-8859-1 (8859/1)"
    )]
    NotUtf8 {
        /// Byte offset of the first invalid sequence (after any BOM).
        offset: usize,
        /// MSH-18 as found (empty when absent), at most 32 characters.
        charset: String,
    },
}

impl Hl7Error {
    /// A stable short name for the kind of error, for metrics, logs and tests.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotMsh => "not_msh",
            Self::NoMessage => "no_message",
            Self::FieldSeparatorMissing { .. } => "field_separator_missing",
            Self::FieldSeparatorInvalid { .. } => "field_separator_invalid",
            Self::EncodingCharactersMissing { .. } => "encoding_characters_missing",
            Self::EncodingCharactersInvalid { .. } => "encoding_characters_invalid",
            Self::InvalidSegmentId { .. } => "invalid_segment_id",
            Self::UnexpectedSegment { .. } => "unexpected_segment",
            Self::NotUtf8 { .. } => "not_utf8",
        }
    }
}
