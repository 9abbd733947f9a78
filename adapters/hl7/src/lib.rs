//! HL7 v2 for Care Record's feeds: bytes to text ([`decode`]), files and batches to
//! messages ([`split_messages`]), messages to segments, fields, repetitions, components
//! and subcomponents ([`Message`]), text to escaped text ([`escape`]), and ACKs ([`ack`]).
//!
//! Pure: no I/O, no async. It never panics, never recurses on the input and runs in
//! time linear in the input (tested on fuzzer-found inputs and by proptest).
//!
//! # Shape
//!
//! [`Message::parse`] borrows its input. It finds the segment boundaries (CR, LF or CRLF),
//! reads the delimiters from MSH-1/MSH-2 and checks every segment id, and keeps a slice
//! per segment. Fields, repetitions, components and subcomponents are views (`&'a str` plus
//! the delimiters), split when asked for; `value()`/`text()` unescape into a
//! `Cow<'a, str>` that is borrowed unless an escape sequence was there. Absent parts read
//! as empty, never as errors (HL7 semantics); `""` is the explicit null: `is_null()`.
//!
//! ```
//! let msg = care_hl7::Message::parse(
//!     "MSH|^~\\&|HIS|RBH|CARE|LA|20240101120000||ADT^A01^ADT_A01|42|P|2.5\r\
//!      PID|1||1234^^^RBH^MR~9434765919^^^NHS^NH||SMITH^JOHN\\T\\CO||19800101|M",
//! )?;
//! assert_eq!(msg.message_type(), ("ADT".into(), "A01".into()));
//! let pid = msg.segment("PID").expect("a PID");
//! let ids: Vec<_> = pid.field(3).repetitions().map(|r| r.value()).collect();
//! assert_eq!(ids, ["1234", "9434765919"]);
//! assert_eq!(pid.field(3).repetition(1).component(4).value(), "NHS");
//! assert_eq!(pid.field(5).component(2).value(), "JOHN&CO");
//! # Ok::<(), care_hl7::Hl7Error>(())
//! ```
//!
//! # Decisions, and differences from the API first proposed
//!
//! - MSH-2 must hold four characters (component, repetition, escape, subcomponent), or
//!   five with the v2.7 truncation character, all printable ASCII punctuation and all
//!   different (and different from MSH-1). Anything else is an error rather than a guess:
//!   a misread delimiter misfiles every field after it. So `Delimiters::escape` is always
//!   `Some` for a parsed message (it stays an `Option` for callers building delimiters).
//! - `value()` is the *leaf* value: first repetition, first component, first
//!   subcomponent, unescaped. `text()` is the whole first repetition (or component)
//!   unescaped; `raw()` is the text as sent.
//! - Escapes: `\F\ \S\ \T\ \R\ \E\` and `\P\` (truncation) become their characters,
//!   `\Xhh..\` becomes bytes read as UTF-8 when valid, else as ISO-8859-1, `\.br\` becomes
//!   `\n`; other formatting escapes (`\H\ \N\ \.sp\`...) and malformed sequences are kept
//!   as written. See the private `escape::unescape`.
//! - [`split_messages`] returns a [`Batch`] whose warnings are typed ([`BatchWarning`],
//!   with `Display`) rather than strings.
//! - Extras: [`Message::parse_header`] (only MSH, to answer a broken message),
//!   [`Message::header`], [`Segment::fields`], `text()` on every view,
//!   [`best_effort_control_id`], [`ack_unreadable`], [`Hl7Error::code`].
//! - `Debug` on messages and views shows ids and lengths, never the text.

mod ack;
mod batch;
mod decode;
mod delimiters;
mod error;
mod escape;
mod message;

pub use ack::{AckCode, ack, ack_unreadable, best_effort_control_id};
pub use batch::{Batch, BatchWarning, split_messages};
pub use decode::decode;
pub use delimiters::Delimiters;
pub use error::Hl7Error;
pub use escape::escape;
pub use message::{Component, Field, Message, Repetition, Segment, Subcomponent};

#[cfg(test)]
mod tests;
