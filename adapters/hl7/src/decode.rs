//! Bytes to text: UTF-8, or ISO-8859-1 when MSH-18 says so.

use std::borrow::Cow;

use crate::Hl7Error;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Turns received bytes into text for [`crate::Message::parse`] or [`crate::split_messages`].
///
/// Strips a UTF-8 BOM, then accepts valid UTF-8 as it is (borrowed). Bytes that are not
/// UTF-8 are read as ISO-8859-1 when MSH-18 of the first MSH names it (`8859/1`, HL7 table
/// 0211, or `ISO-8859-1`); any other charset is an error. Valid UTF-8 is taken as UTF-8
/// even when MSH-18 says `8859/1`: Latin-1 text with accents is practically never valid
/// UTF-8, and plain ASCII reads the same either way.
///
/// # Errors
/// [`Hl7Error::NotUtf8`], naming the first bad byte's offset and MSH-18.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, Hl7Error> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(error) => {
            let charset = msh18(bytes);
            if is_latin1(charset) {
                Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
            } else {
                Err(Hl7Error::NotUtf8 {
                    offset: error.valid_up_to(),
                    charset: charset
                        .iter()
                        .take(32)
                        .map(|&b| {
                            if b.is_ascii_graphic() || b == b' ' {
                                char::from(b)
                            } else {
                                '?'
                            }
                        })
                        .collect(),
                })
            }
        }
    }
}

fn is_latin1(charset: &[u8]) -> bool {
    const NAMES: [&[u8]; 7] = [
        b"8859/1",
        b"ISO-8859-1",
        b"ISO8859-1",
        b"ISO_8859-1",
        b"ISO-IR-100",
        b"LATIN1",
        b"LATIN-1",
    ];
    NAMES.iter().any(|name| name.eq_ignore_ascii_case(charset))
}

/// The first value of MSH-18 in the first MSH line, trimmed; empty when there is none.
fn msh18(bytes: &[u8]) -> &[u8] {
    let Some(line) = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .find(|line| line.starts_with(b"MSH"))
    else {
        return &[];
    };
    let (Some(&field), component, repetition) = (line.get(3), line.get(4), line.get(5)) else {
        return &[];
    };
    let value = line.split(|&b| b == field).nth(17).unwrap_or_default();
    let value = value
        .split(|b| Some(b) == component || Some(b) == repetition)
        .next()
        .unwrap_or_default();
    value.trim_ascii()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const LATIN1_MSH: &[u8] =
        b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5|||||GBR|8859/1\rPID|||1||M\xdcLLER^J\xd6RG\r";

    #[test]
    fn utf8_is_borrowed_and_the_bom_is_dropped() {
        let input = "\u{FEFF}MSH|^~\\&|A\rPID|||1||MÜLLER\r";
        let text = decode(input.as_bytes()).unwrap();
        assert!(matches!(text, Cow::Borrowed(_)));
        assert!(text.starts_with("MSH|"));
        assert!(text.contains("MÜLLER"));
    }

    #[test]
    fn latin1_is_read_when_msh18_names_it() {
        let text = decode(LATIN1_MSH).unwrap();
        assert!(text.contains("MÜLLER^JÖRG"));
        let other = String::from_utf8_lossy(LATIN1_MSH).replace("8859/1", "ISO-8859-1");
        let mut bytes = other.into_bytes();
        // from_utf8_lossy replaced the Latin-1 bytes; put one back.
        bytes.extend_from_slice(b"NTE|||\xe9\r");
        assert!(decode(&bytes).unwrap().ends_with("NTE|||é\r"));
    }

    #[test]
    fn other_bytes_are_a_clear_error() {
        let bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|||1||M\xdcLLER\r";
        let error = decode(bytes).unwrap_err();
        assert_eq!(
            error,
            Hl7Error::NotUtf8 {
                offset: 53,
                charset: String::new()
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("not UTF-8 (invalid byte at offset 53)")
        );
        let unicode = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5|||||GBR|UNICODE UTF-8\r\xff";
        assert!(
            decode(unicode)
                .unwrap_err()
                .to_string()
                .contains("\"UNICODE UTF-8\"")
        );
    }
}
