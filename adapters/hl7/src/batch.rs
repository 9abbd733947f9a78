//! Files and batches: FHS/BHS/BTS/FTS around messages, or messages one after another.

use std::fmt;

use crate::Hl7Error;
use crate::delimiters::{Seps, read_header};
use crate::message::{Lines, Message, Segment, boundary_name, strip_bom};

/// What [`split_messages`] noticed but did not let stop the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchWarning {
    /// A BTS (or FTS) count differs from what was found.
    CountMismatch {
        /// `BTS` or `FTS`.
        trailer: &'static str,
        /// 1-based number of the batch (BTS) or 1 (FTS).
        number: usize,
        /// The count the trailer states.
        stated: u64,
        /// The count found.
        found: usize,
    },
    /// A BTS-1 or FTS-1 count that is not a number.
    UnreadableCount {
        /// `BTS` or `FTS`.
        trailer: &'static str,
    },
    /// A BTS with no open batch, or a second FHS/FTS.
    Misplaced {
        /// The segment id.
        id: &'static str,
        /// 1-based position among the file's non-blank lines.
        line: usize,
    },
    /// Lines outside any message (before the first MSH, or after a trailer) were skipped.
    SkippedLines {
        /// 1-based position of the first skipped line among the file's non-blank lines.
        first_line: usize,
        /// How many non-blank lines were skipped there.
        count: usize,
    },
    /// An FHS or BHS whose own delimiters could not be read; it is kept with the default ones.
    HeaderUnreadable {
        /// `FHS` or `BHS`.
        header: &'static str,
        /// Why.
        error: Hl7Error,
    },
}

impl fmt::Display for BatchWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CountMismatch {
                trailer: "BTS",
                number,
                stated,
                found,
            } => write!(
                f,
                "batch trailer BTS says {stated} messages, found {found} (batch {number})"
            ),
            Self::CountMismatch {
                trailer,
                stated,
                found,
                ..
            } => write!(
                f,
                "file trailer {trailer} says {stated} batches, found {found}"
            ),
            Self::UnreadableCount { trailer } => {
                write!(f, "{trailer}-1 count is not a number; not checked")
            }
            Self::Misplaced { id, line } => write!(f, "line {line}: {id} out of place; ignored"),
            Self::SkippedLines { first_line, count } => write!(
                f,
                "{count} line(s) outside any message skipped, from line {first_line}"
            ),
            Self::HeaderUnreadable { header, error } => {
                write!(
                    f,
                    "{header} unreadable ({error}); default delimiters assumed"
                )
            }
        }
    }
}

/// The messages of a file, batch or stream, each still a `&str` to parse on its own, so
/// one bad message does not stop the rest.
#[derive(Clone)]
pub struct Batch<'a> {
    file_header: Option<Segment<'a>>,
    file_trailer: Option<Segment<'a>>,
    batch_headers: Vec<Segment<'a>>,
    batch_trailers: Vec<Segment<'a>>,
    messages: Vec<&'a str>,
    warnings: Vec<BatchWarning>,
}

impl fmt::Debug for Batch<'_> {
    /// Counts and warnings only: the text is patients' records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("file_header", &self.file_header.is_some())
            .field("batches", &self.batch_headers.len())
            .field("messages", &self.messages.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl<'a> Batch<'a> {
    /// Each message's text, from its MSH to its last segment, in order.
    #[must_use]
    pub fn messages(&self) -> &[&'a str] {
        &self.messages
    }

    /// Parses each message on its own.
    pub fn parse_messages(&self) -> impl Iterator<Item = Result<Message<'a>, Hl7Error>> + '_ {
        self.messages.iter().map(|m| Message::parse(m))
    }

    /// The FHS segment, if the input is a file (read with its own delimiters, FHS-1/FHS-2).
    #[must_use]
    pub fn file_header(&self) -> Option<Segment<'a>> {
        self.file_header
    }

    /// The FTS segment, if any.
    #[must_use]
    pub fn file_trailer(&self) -> Option<Segment<'a>> {
        self.file_trailer
    }

    /// The BHS segments, one per batch.
    #[must_use]
    pub fn batch_headers(&self) -> &[Segment<'a>] {
        &self.batch_headers
    }

    /// The BTS segments.
    #[must_use]
    pub fn batch_trailers(&self) -> &[Segment<'a>] {
        &self.batch_trailers
    }

    /// True when the input had FHS or BHS segments.
    #[must_use]
    pub fn is_batch(&self) -> bool {
        self.file_header.is_some() || !self.batch_headers.is_empty()
    }

    /// What did not add up (trailer counts, skipped lines); the messages are still there.
    #[must_use]
    pub fn warnings(&self) -> &[BatchWarning] {
        &self.warnings
    }
}

/// Splits a file or stream into messages: a single message, several one after another
/// (blank lines between them or not), or an FHS/BHS batch file.
///
/// A message runs from its MSH to the next MSH, FHS, BHS, BTS or FTS. Lines outside any
/// message are skipped with a [`BatchWarning::SkippedLines`]; BTS-1 and FTS-1 counts are
/// checked and a mismatch is a [`BatchWarning::CountMismatch`]. Each message is then parsed
/// with [`Message::parse`] (or [`Batch::parse_messages`]).
///
/// # Errors
/// [`Hl7Error::Empty`] for blank input; [`Hl7Error::NoMessage`] when there is no MSH, FHS
/// or BHS segment at all.
pub fn split_messages(input: &str) -> Result<Batch<'_>, Hl7Error> {
    let body = strip_bom(input);
    let mut batch = Batch {
        file_header: None,
        file_trailer: None,
        batch_headers: Vec::new(),
        batch_trailers: Vec::new(),
        messages: Vec::new(),
        warnings: Vec::new(),
    };
    // (start, end) of the message being collected.
    let mut current: Option<(usize, usize)> = None;
    // Messages seen when the open batch began, if a batch is open.
    let mut open_batch: Option<usize> = None;
    // The last header's delimiters, used to read trailers.
    let mut seps = Seps::default_seps();
    // A run of lines outside any message: (first line number, count).
    let mut skipped: Option<(usize, usize)> = None;
    let mut any_line = false;

    for (index, (at, line)) in Lines::new(body).enumerate() {
        let number = index + 1;
        any_line = true;
        let Some(boundary) = boundary_name(line) else {
            if let Some((_, end)) = current.as_mut() {
                *end = at + line.len();
            } else {
                skipped.get_or_insert((number, 0)).1 += 1;
            }
            continue;
        };
        if let Some((first, end)) = current.take() {
            batch
                .messages
                .push(body.get(first..end).unwrap_or_default());
        }
        flush_skipped(&mut skipped, &mut batch.warnings);
        match boundary {
            "MSH" => {
                current = Some((at, at + line.len()));
            }
            header @ ("FHS" | "BHS") => {
                let segment = match read_header(line, header) {
                    Ok((_, header_seps)) => {
                        seps = header_seps;
                        Segment::new(line, header_seps)
                    }
                    Err(error) => {
                        batch
                            .warnings
                            .push(BatchWarning::HeaderUnreadable { header, error });
                        Segment::new(line, Seps::default_seps())
                    }
                };
                if header == "FHS" {
                    if batch.file_header.is_some()
                        || !batch.messages.is_empty()
                        || !batch.batch_headers.is_empty()
                    {
                        batch.warnings.push(BatchWarning::Misplaced {
                            id: "FHS",
                            line: number,
                        });
                    } else {
                        batch.file_header = Some(segment);
                    }
                } else {
                    close_batch(&mut open_batch, &batch.messages, None, &mut batch.warnings);
                    batch.batch_headers.push(segment);
                    open_batch = Some(batch.messages.len());
                }
            }
            "BTS" => {
                let trailer = trailer_segment(line, seps);
                if open_batch.is_none() {
                    batch.warnings.push(BatchWarning::Misplaced {
                        id: "BTS",
                        line: number,
                    });
                } else {
                    let number = batch.batch_headers.len();
                    close_batch(
                        &mut open_batch,
                        &batch.messages,
                        Some((trailer, number)),
                        &mut batch.warnings,
                    );
                    batch.batch_trailers.push(trailer);
                }
            }
            _ => {
                // FTS
                let trailer = trailer_segment(line, seps);
                close_batch(&mut open_batch, &batch.messages, None, &mut batch.warnings);
                if batch.file_trailer.is_some() {
                    batch.warnings.push(BatchWarning::Misplaced {
                        id: "FTS",
                        line: number,
                    });
                } else {
                    check_count(
                        trailer,
                        "FTS",
                        1,
                        batch.batch_headers.len(),
                        &mut batch.warnings,
                    );
                    batch.file_trailer = Some(trailer);
                }
            }
        }
    }
    if let Some((first, end)) = current.take() {
        batch
            .messages
            .push(body.get(first..end).unwrap_or_default());
    }
    flush_skipped(&mut skipped, &mut batch.warnings);
    if !any_line {
        return Err(Hl7Error::Empty);
    }
    if batch.messages.is_empty() && !batch.is_batch() {
        return Err(Hl7Error::NoMessage);
    }
    Ok(batch)
}

fn flush_skipped(skipped: &mut Option<(usize, usize)>, warnings: &mut Vec<BatchWarning>) {
    if let Some((first_line, count)) = skipped.take() {
        warnings.push(BatchWarning::SkippedLines { first_line, count });
    }
}

/// A trailer read with the field separator it actually uses (the character after its id).
fn trailer_segment(line: &str, header_seps: Seps) -> Segment<'_> {
    let mut seps = header_seps;
    if let Some(&b) = line.as_bytes().get(3)
        && b.is_ascii_punctuation()
    {
        seps.field = b;
    }
    Segment::new(line, seps)
}

/// Ends the open batch (at a BTS, a new BHS or the FTS), checking the BTS count if there is one.
fn close_batch(
    open_batch: &mut Option<usize>,
    messages: &[&str],
    trailer: Option<(Segment<'_>, usize)>,
    warnings: &mut Vec<BatchWarning>,
) {
    let Some(first) = open_batch.take() else {
        return;
    };
    if let Some((trailer, number)) = trailer {
        let found = messages.len().saturating_sub(first);
        check_count(trailer, "BTS", number, found, warnings);
    }
}

fn check_count(
    trailer: Segment<'_>,
    name: &'static str,
    number: usize,
    found: usize,
    warnings: &mut Vec<BatchWarning>,
) {
    let raw = trailer.field(1).component(1).raw().trim();
    if raw.is_empty() {
        return;
    }
    match raw.parse::<u64>() {
        Ok(stated) if usize::try_from(stated).is_ok_and(|s| s == found) => {}
        Ok(stated) => warnings.push(BatchWarning::CountMismatch {
            trailer: name,
            number,
            stated,
            found,
        }),
        Err(_) => warnings.push(BatchWarning::UnreadableCount { trailer: name }),
    }
}
