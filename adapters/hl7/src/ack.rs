//! Acknowledgements (original mode): MSH + MSA (+ ERR), in the message's own delimiters.

use crate::message::{Lines, nth_piece, strip_bom};
use crate::{Delimiters, Message, escape};

/// MSA-1, the acknowledgement code (original mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error: the message was understood but could not be processed.
    AE,
    /// Application reject: the message cannot be accepted (unreadable, unsupported).
    AR,
}

impl AckCode {
    /// `"AA"`, `"AE"` or `"AR"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AA => "AA",
            Self::AE => "AE",
            Self::AR => "AR",
        }
    }
}

/// (major, minor, patch) of a version id like `2.3.1`; missing parts are 0.
fn version_tuple(version: &str) -> (u32, u32, u32) {
    let mut parts = version
        .trim()
        .split('.')
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// Builds the ACK for `msg`: MSH (sending and receiving application and facility swapped,
/// MSH-7 `now`, MSH-9 `ACK^<trigger>` plus `^ACK` from v2.3.1, MSH-10 `control_id`,
/// MSH-11 and MSH-12 copied), MSA (code, the message's MSH-10, and `text` as MSA-3), and
/// when there is a `text` an ERR: from v2.5 `ERR|||207^Application internal error^HL70357|E||||text`,
/// before it `ERR|^^^207&Application internal error&HL70357`. Segments end with `\r`.
///
/// Fields copied from the message are copied raw (they are already escaped for these
/// delimiters); `text`, `control_id` and `now` are escaped.
#[must_use]
pub fn ack(
    msg: &Message<'_>,
    code: AckCode,
    text: Option<&str>,
    control_id: &str,
    now: &str,
) -> String {
    let d = msg.delimiters();
    let h = msg.header();
    let version = msg.version();
    let v = version_tuple(&version);
    let (f, c, s) = (d.field, d.component, d.subcomponent);
    let mut out = String::with_capacity(256);
    out.push_str("MSH");
    out.push(f);
    out.push_str(h.field(2).raw());
    for n in [5, 6, 3, 4] {
        out.push(f);
        out.push_str(h.field(n).raw());
    }
    out.push(f);
    out.push_str(&escape(now, d));
    out.push(f);
    out.push(f);
    out.push_str("ACK");
    out.push(c);
    out.push_str(h.field(9).component(2).raw());
    if v >= (2, 3, 1) {
        out.push(c);
        out.push_str("ACK");
    }
    out.push(f);
    out.push_str(&escape(control_id, d));
    out.push(f);
    out.push_str(h.field(11).raw());
    out.push(f);
    out.push_str(h.field(12).raw());
    out.push('\r');

    out.push_str("MSA");
    out.push(f);
    out.push_str(code.as_str());
    out.push(f);
    out.push_str(h.field(10).raw());
    if let Some(text) = text {
        let text = escape(text, d);
        out.push(f);
        out.push_str(&text);
        out.push('\r');
        out.push_str("ERR");
        if v >= (2, 5, 0) {
            for _ in 0..3 {
                out.push(f);
            }
            for part in ["207", "Application internal error", "HL70357"] {
                out.push_str(part);
                out.push(c);
            }
            out.pop();
            out.push(f);
            out.push('E');
            for _ in 0..4 {
                out.push(f);
            }
            out.push_str(&text);
        } else {
            out.push(f);
            for _ in 0..3 {
                out.push(c);
            }
            for part in ["207", "Application internal error", "HL70357"] {
                out.push_str(part);
                out.push(s);
            }
            out.pop();
        }
    }
    out.push('\r');
    out
}

/// Reads MSH-10 (the control id) from input that may not parse, so that even a rejected
/// message can be answered with its own id. Needs only `MSH` and a field separator at the
/// start (after any BOM and blank lines); the id is returned raw.
#[must_use]
pub fn best_effort_control_id(input: &str) -> Option<&str> {
    let (_, line) = Lines::new(strip_bom(input)).next()?;
    let field = *line.as_bytes().get(3)?;
    if !line.starts_with("MSH") || !field.is_ascii_punctuation() {
        return None;
    }
    let id = nth_piece(line, field, 9).trim();
    (!id.is_empty()).then_some(id)
}

/// An AR (or AE) for input whose MSH cannot be read at all: default delimiters, v2.5,
/// no applications, MSA-2 from [`best_effort_control_id`] when there is one.
#[must_use]
pub fn ack_unreadable(
    input: &str,
    code: AckCode,
    text: Option<&str>,
    control_id: &str,
    now: &str,
) -> String {
    let d = Delimiters::default();
    let original = best_effort_control_id(input).unwrap_or_default();
    let header = format!(
        "MSH|^~\\&|||||{}||ACK^^ACK|{}|P|2.5\r",
        escape(now, &d),
        escape(original, &d)
    );
    match Message::parse(&header) {
        Ok(msg) => ack(&msg, code, text, control_id, now),
        // Unreachable in practice: the header above is well formed.
        Err(_) => String::new(),
    }
}
