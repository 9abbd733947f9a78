//! HL7 v2 date and time values (DT, DTM/TS): `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`.

use care_kernel::{Date, Timestamp};
use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// Why a date or time could not be read.
pub(crate) type TimeError = String;

fn digits(s: &str, at: usize, len: usize) -> Option<u32> {
    let part = s.get(at..at + len)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// A date from the first eight characters of a DT or DTM value. Values precise only to
/// the year or month are not dates of anything this record keeps and read as `None`.
pub(crate) fn date(raw: &str) -> Result<Option<Date>, TimeError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if !raw.is_ascii() {
        return Err(format!("{raw:?} is not an HL7 date (YYYYMMDD)"));
    }
    let body = raw.split(['+', '-']).next().unwrap_or(raw);
    if body.len() < 8 {
        if body.len() == 4 || body.len() == 6 {
            return Ok(None);
        }
        return Err(format!("{raw:?} is not an HL7 date (YYYYMMDD)"));
    }
    let (Some(y), Some(m), Some(d)) = (digits(body, 0, 4), digits(body, 4, 2), digits(body, 6, 2))
    else {
        return Err(format!("{raw:?} is not an HL7 date (YYYYMMDD)"));
    };
    NaiveDate::from_ymd_opt(i32::try_from(y).unwrap_or(0), m, d)
        .map(Some)
        .ok_or_else(|| format!("{raw:?} is not a calendar date"))
}

/// An instant from a DTM/TS value. A value without an offset is UK local time
/// (Europe/London: GMT in winter, BST in summer; in the hour the clocks go back, the
/// earlier of the two instants; in the hour they skip, as if the clocks had already
/// changed); missing time parts are zero.
pub(crate) fn timestamp(raw: &str) -> Result<Timestamp, TimeError> {
    let raw = raw.trim();
    let bad = || format!("{raw:?} is not an HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ])");
    // Every valid value is ASCII; checking first makes every slice below safe.
    if !raw.is_ascii() {
        return Err(bad());
    }
    let (body, offset) = match raw.find(['+', '-']) {
        Some(i) => (&raw[..i], Some(&raw[i..])),
        None => (raw, None),
    };
    let (whole, _fraction) = match body.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => (w, Some(f)),
        Some(_) => return Err(bad()),
        None => (body, None),
    };
    if whole.len() < 8 || whole.len() % 2 != 0 || whole.len() > 14 {
        return Err(bad());
    }
    let day = date(&whole[..8])?.ok_or_else(bad)?;
    let part = |at: usize| -> Result<u32, TimeError> {
        if whole.len() > at {
            digits(whole, at, 2).ok_or_else(bad)
        } else {
            Ok(0)
        }
    };
    let time = NaiveTime::from_hms_opt(part(8)?, part(10)?, part(12)?).ok_or_else(bad)?;
    let local = NaiveDateTime::new(day, time);
    let fraction_micros = match _fraction {
        Some(f) => {
            let padded: String = f.chars().chain("000000".chars()).take(6).collect();
            padded.parse::<i64>().map_err(|_| bad())?
        }
        None => 0,
    };
    let local = local + chrono::Duration::microseconds(fraction_micros);
    let instant = match offset {
        // No offset: the sender's local time, which for this record's feeds is UK time.
        None => uk_local(&local).ok_or_else(bad)?,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (Some(h), Some(m)) = (digits(o, 1, 2), digits(o, 3, 2)) else {
                return Err(bad());
            };
            if o.len() != 5 || h > 14 || m > 59 {
                return Err(bad());
            }
            let secs = sign * i32::try_from(h * 3600 + m * 60).unwrap_or(0);
            let zone = FixedOffset::east_opt(secs).ok_or_else(bad)?;
            zone.from_local_datetime(&local)
                .single()
                .ok_or_else(bad)?
                .with_timezone(&Utc)
        }
    };
    Ok(instant)
}

/// A UK wall-clock time as an instant.
fn uk_local(local: &NaiveDateTime) -> Option<Timestamp> {
    use chrono::LocalResult;
    use chrono_tz::Europe::London;
    let at = match London.from_local_datetime(local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at,
        // The skipped hour in March: read it an hour on, in summer time.
        LocalResult::None => London
            .from_local_datetime(&(*local + chrono::Duration::hours(1)))
            .earliest()?,
    };
    Some(at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_precisions_hl7_allows() {
        assert_eq!(
            timestamp("20200508130643").unwrap().to_rfc3339(),
            "2020-05-08T12:06:43+00:00",
            "summer: BST"
        );
        assert_eq!(
            timestamp("20200108130643").unwrap().to_rfc3339(),
            "2020-01-08T13:06:43+00:00",
            "winter: GMT"
        );
        // The clocks went back at 02:00 BST on 2026-10-25: 01:30 happened twice.
        assert_eq!(
            timestamp("202610250130").unwrap().to_rfc3339(),
            "2026-10-25T00:30:00+00:00",
            "the earlier of the two"
        );
        // They went forward at 01:00 GMT on 2026-03-29: 01:30 did not happen.
        assert_eq!(
            timestamp("202603290130").unwrap().to_rfc3339(),
            "2026-03-29T01:30:00+00:00"
        );
        assert_eq!(
            timestamp("198908181126+0215").unwrap().to_rfc3339(),
            "1989-08-18T09:11:00+00:00"
        );
        assert_eq!(
            timestamp("20210817151943.4+0200").unwrap().to_rfc3339(),
            "2021-08-17T13:19:43.400+00:00"
        );
        assert_eq!(
            timestamp("20160102").unwrap().to_rfc3339(),
            "2016-01-02T00:00:00+00:00"
        );
        assert_eq!(
            timestamp("20160102101112+0000").unwrap().to_rfc3339(),
            "2016-01-02T10:11:12+00:00",
            "an explicit offset wins"
        );
        assert_eq!(
            timestamp("201601021011-0500").unwrap().to_rfc3339(),
            "2016-01-02T15:11:00+00:00"
        );
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "2016",
            "20161302",
            "2016010225",
            "20160102x",
            "20160102+25",
            "2016-01-02",
        ] {
            assert!(timestamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn non_ascii_values_are_refused_not_a_panic() {
        for bad in [
            "2016010é1",
            "2016010\u{e9}",
            "é",
            "20160101é",
            "2016\u{1F600}0101",
        ] {
            assert!(timestamp(bad).is_err(), "{bad:?}");
            assert!(date(bad).is_err(), "{bad:?}");
        }
        // Every prefix of a value with a multi-byte character: no slice panics.
        let tricky = "20160102\u{e9}\u{e9}3045+0100";
        for end in tricky.char_indices().map(|(i, _)| i) {
            let _ = timestamp(&tricky[..end]);
            let _ = date(&tricky[..end]);
        }
    }

    #[test]
    fn dates_take_the_day_and_ignore_coarser_values() {
        assert_eq!(
            date("19890118000000").unwrap(),
            NaiveDate::from_ymd_opt(1989, 1, 18)
        );
        assert_eq!(
            date("198808181126+0215").unwrap(),
            NaiveDate::from_ymd_opt(1988, 8, 18)
        );
        assert_eq!(date("").unwrap(), None);
        assert_eq!(date("1988").unwrap(), None);
        assert!(date("19880230").is_err());
        assert!(date("19x80230").is_err());
    }
}
