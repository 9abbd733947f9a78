//! Escape sequences: `\F\ \S\ \T\ \R\ \E\ \P\`, `\Xhh..\`, `\.br\`, and the rest passed through.

use std::borrow::Cow;

use crate::Delimiters;
use crate::delimiters::{NONE, Seps};

/// Replaces escape sequences by the text they stand for.
///
/// - `\F\ \S\ \T\ \R\ \E\` become the message's field, component, subcomponent, repetition
///   and escape characters; `\P\` its truncation character (when MSH-2 declares one).
/// - `\Xhh..\` (an even number of hex digits) becomes those bytes: read as UTF-8 when they
///   are valid UTF-8 (`\XC3A1\` is "á"), otherwise byte by byte as ISO-8859-1 (`\Xe1\` is
///   "á" too, as python-hl7 and older feeds have it).
/// - `\.br\` (line break) becomes `\n`.
/// - Every other sequence (`\H\`, `\N\`, `\.sp\`, `\Zxx\`, `\Cxxyy\`, `\Mxxyyzz\`, ...)
///   is formatting or a charset switch this reader does not apply: it is kept as written,
///   escape characters included, so nothing is lost.
/// - A malformed sequence (no closing escape character, bad hex) is kept as written.
pub(crate) fn unescape<'a>(raw: &'a str, seps: &Seps) -> Cow<'a, str> {
    let esc = seps.escape;
    if esc == NONE {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let Some(first) = memchr::memchr(esc, bytes) else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(slice(raw, 0, first));
    let mut at = first;
    loop {
        // bytes[at] is an escape character.
        let open = at + 1;
        let Some(len) = memchr::memchr(esc, bytes.get(open..).unwrap_or_default()) else {
            out.push_str(slice(raw, at, raw.len()));
            break;
        };
        let close = open + len;
        if !decode_sequence(slice(raw, open, close), seps, &mut out) {
            out.push_str(slice(raw, at, close + 1));
        }
        let next = close + 1;
        match memchr::memchr(esc, bytes.get(next..).unwrap_or_default()) {
            None => {
                out.push_str(slice(raw, next, raw.len()));
                break;
            }
            Some(k) => {
                out.push_str(slice(raw, next, next + k));
                at = next + k;
            }
        }
    }
    Cow::Owned(out)
}

/// `&s[from..to]`, or "" where that is not a valid range (it always is here: every index
/// comes from an ASCII byte's position).
fn slice(s: &str, from: usize, to: usize) -> &str {
    s.get(from..to).unwrap_or_default()
}

/// Appends what `content` (the text between two escape characters) stands for; false when
/// it is not a sequence this reader replaces.
fn decode_sequence(content: &str, seps: &Seps, out: &mut String) -> bool {
    let char_of = |b: u8| char::from(b);
    match content {
        "F" => out.push(char_of(seps.field)),
        "S" => out.push(char_of(seps.component)),
        "T" => out.push(char_of(seps.subcomponent)),
        "R" => out.push(char_of(seps.repetition)),
        "E" => out.push(char_of(seps.escape)),
        "P" if seps.truncation != NONE => out.push(char_of(seps.truncation)),
        ".br" => out.push('\n'),
        _ => {
            let Some(hex) = content.strip_prefix('X') else {
                return false;
            };
            let Some(decoded) = hex_bytes(hex) else {
                return false;
            };
            match std::str::from_utf8(&decoded) {
                Ok(text) => out.push_str(text),
                Err(_) => out.extend(decoded.iter().map(|&b| char::from(b))),
            }
        }
    }
    true
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |d: u8| {
        char::from(d)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
    };
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

/// Escapes `text` for use as one value inside a message with these delimiters.
///
/// The field, component, repetition, subcomponent, escape and truncation characters become
/// `\F\ \S\ \R\ \T\ \E\ \P\`; a line feed becomes `\.br\` and a carriage return `\X0D\`
/// (either would otherwise end the segment). Other characters, non-ASCII included, are
/// kept: messages are UTF-8 here (python-hl7 writes non-ASCII as Latin-1 `\Xhh\`; we read
/// that but do not write it). Borrowed when nothing needs escaping.
///
/// When `delims.escape` is `None` there is no way to escape, and each of those characters
/// is replaced by a space.
#[must_use]
pub fn escape<'t>(text: &'t str, delims: &Delimiters) -> Cow<'t, str> {
    let special = |c: char| -> Option<&'static str> {
        if c == '\r' {
            Some("X0D")
        } else if c == '\n' {
            Some(".br")
        } else if Some(c) == delims.escape {
            Some("E")
        } else if c == delims.field {
            Some("F")
        } else if c == delims.component {
            Some("S")
        } else if c == delims.repetition {
            Some("R")
        } else if c == delims.subcomponent {
            Some("T")
        } else if Some(c) == delims.truncation {
            Some("P")
        } else {
            None
        }
    };
    let Some(first) = text.find(|c| special(c).is_some()) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(text.get(..first).unwrap_or_default());
    for c in text.get(first..).unwrap_or_default().chars() {
        match (special(c), delims.escape) {
            (None, _) => out.push(c),
            (Some(code), Some(esc)) => {
                out.push(esc);
                out.push_str(code);
                out.push(esc);
            }
            (Some(_), None) => out.push(' '),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn un(raw: &str) -> Cow<'_, str> {
        unescape(raw, &Delimiters::default().seps())
    }

    #[test]
    fn text_without_escapes_is_borrowed() {
        assert!(matches!(un("SMITH"), Cow::Borrowed("SMITH")));
    }

    #[test]
    fn each_delimiter_escape_becomes_its_character() {
        assert_eq!(un(r"a\F\b\S\c\T\d\R\e\E\f"), "a|b^c&d~e\\f");
    }

    #[test]
    fn escapes_follow_the_message_delimiters_not_the_defaults() {
        let custom = Delimiters {
            field: '^',
            component: '~',
            repetition: '|',
            escape: Some('!'),
            subcomponent: '&',
            truncation: Some('#'),
        };
        assert_eq!(unescape("x!F!y!S!z!R!!E!!P!", &custom.seps()), "x^y~z|!#");
        // `\P\` means nothing without a declared truncation character.
        assert_eq!(un(r"\P\"), r"\P\");
    }

    #[test]
    fn hex_is_utf8_when_it_is_valid_utf8_and_latin1_otherwise() {
        assert_eq!(un(r"\XC3A1\"), "á");
        assert_eq!(un(r"\Xe1\"), "á");
        assert_eq!(un(r"\X0D0A\"), "\r\n");
    }

    #[test]
    fn line_break_becomes_newline_and_other_formatting_is_kept() {
        assert_eq!(un(r"one\.br\two"), "one\ntwo");
        assert_eq!(un(r"\H\bold\N\ \.sp2\"), r"\H\bold\N\ \.sp2\");
    }

    #[test]
    fn malformed_escapes_are_kept_as_written() {
        assert_eq!(un(r"unterminated \F"), r"unterminated \F");
        assert_eq!(un(r"\"), r"\");
        assert_eq!(un(r"\\"), r"\\");
        assert_eq!(un(r"odd \X123\ bad \XZZ\ end"), r"odd \X123\ bad \XZZ\ end");
        assert_eq!(un(r"C:\temp\F\x"), r"C:\temp\F\x");
        assert_eq!(un(r"\F\\"), r"|\");
    }

    #[test]
    fn escape_round_trips_through_unescape() {
        let d = Delimiters::default();
        let text = "a|b^c~d&e\\f\nline\rcr áé";
        let escaped = escape(text, &d);
        assert_eq!(escaped, r"a\F\b\S\c\R\d\T\e\E\f\.br\line\X0D\cr áé");
        assert_eq!(un(&escaped), text);
        assert!(matches!(escape("plain", &d), Cow::Borrowed("plain")));
    }

    #[test]
    fn escape_without_an_escape_character_blanks_delimiters() {
        let d = Delimiters {
            escape: None,
            ..Delimiters::default()
        };
        assert_eq!(escape("a|b", &d), "a b");
    }
}
