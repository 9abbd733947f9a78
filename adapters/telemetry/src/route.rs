//! Route templates: bounded, identifier-free `route` label values.

/// What replaces an identifier-like path segment.
const PLACEHOLDER: &str = "{id}";

/// Turns a concrete request path into a route template for the `route` label.
///
/// Callers should pass the route template their router matched
/// (`/api/v1/people/{id}`) to [`Metrics::observe_request`](crate::Metrics::observe_request);
/// when only the concrete path is at hand, this function makes one by replacing every
/// path segment that looks like an identifier with `{id}`:
///
/// - a UUID, hyphenated (`0190c5a4-1b2c-7d3e-8f40-123456789abc`) or simple (32 hex
///   digits), or any run of 16 or more hex digits that contains a digit (tokens, hashes);
/// - a segment containing a run of 6 or more digits, where spaces, hyphens and `%20`
///   do not break the run — this covers NHS numbers written `9434765919`,
///   `943 476 5919` or `943-476-5919`, and other numeric ids.
///
/// The query string and fragment are dropped (they can carry search terms), and an
/// empty path becomes `/`. Applying it to a template changes nothing, so it is safe
/// to apply twice. Paths that no route matched (404s) should still be reported as one
/// fixed label by the caller, since arbitrary paths are unbounded.
#[must_use]
pub fn route_template(path: &str) -> String {
    let path = strip_query(path);
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if looks_like_identifier(segment) {
            out.push_str(PLACEHOLDER);
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// Whether [`route_template`] would change `path` (so callers can avoid an allocation).
pub(crate) fn is_template(path: &str) -> bool {
    strip_query(path).len() == path.len()
        && !path.is_empty()
        && !path.split('/').any(looks_like_identifier)
}

fn strip_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(at) => &path[..at],
        None => path,
    }
}

fn looks_like_identifier(segment: &str) -> bool {
    !segment.is_empty() && (is_hex_identifier(segment) || longest_digit_run(segment) >= 6)
}

/// A hyphenated UUID, or 16+ hex digits with at least one decimal digit.
fn is_hex_identifier(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let hyphenated_uuid = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let hex_run = bytes.len() >= 16
        && bytes.iter().all(u8::is_ascii_hexdigit)
        && bytes.iter().any(u8::is_ascii_digit);
    hyphenated_uuid || hex_run
}

/// The longest run of decimal digits, where ` `, `-` and `%20` between digits do not
/// end the run.
fn longest_digit_run(segment: &str) -> usize {
    let bytes = segment.as_bytes();
    let (mut best, mut run, mut i) = (0, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => {
                run += 1;
                best = best.max(run);
                i += 1;
            }
            b' ' | b'-' if run > 0 => i += 1,
            b'%' if run > 0 && bytes.get(i + 1..i + 3) == Some(b"20") => i += 3,
            _ => {
                run = 0;
                i += 1;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_become_placeholders() {
        assert_eq!(
            route_template("/api/v1/people/0190c5a4-1b2c-7d3e-8f40-123456789abc/referrals"),
            "/api/v1/people/{id}/referrals"
        );
        assert_eq!(
            route_template("/api/v1/people/0190C5A41B2C7D3E8F40123456789ABC"),
            "/api/v1/people/{id}"
        );
    }

    #[test]
    fn nhs_numbers_and_numeric_ids_become_placeholders() {
        assert_eq!(
            route_template("/api/v1/consent/9434765919"),
            "/api/v1/consent/{id}"
        );
        assert_eq!(
            route_template("/api/v1/consent/943 476 5919"),
            "/api/v1/consent/{id}"
        );
        assert_eq!(
            route_template("/api/v1/consent/943%20476%205919"),
            "/api/v1/consent/{id}"
        );
        assert_eq!(
            route_template("/api/v1/consent/943-476-5919"),
            "/api/v1/consent/{id}"
        );
        assert_eq!(route_template("/api/v1/audit/123456"), "/api/v1/audit/{id}");
        assert_eq!(
            route_template("/api/v1/people/nhs:9434765919"),
            "/api/v1/people/{id}"
        );
    }

    #[test]
    fn ordinary_segments_stay() {
        for path in [
            "/api/v1/people/{id}/referrals",
            "/api/v1/people",
            "/api/v1/audit/12345",
            "/metrics",
            "/",
            "/api/v2/deadbeef",
            "/api/v1/people/search",
        ] {
            assert_eq!(route_template(path), path);
            assert!(is_template(path), "{path}");
        }
    }

    #[test]
    fn query_and_fragment_are_dropped() {
        assert_eq!(
            route_template("/api/v1/people/search?name=Smith&postcode=LS1%201AA#top"),
            "/api/v1/people/search"
        );
        assert_eq!(route_template("?q=1"), "/");
        assert_eq!(route_template(""), "/");
        assert!(!is_template("/api/v1/people/search?name=Smith"));
        assert!(!is_template(""));
    }

    #[test]
    fn templating_is_idempotent() {
        let once = route_template("/a/9434765919/b/0190c5a4-1b2c-7d3e-8f40-123456789abc/");
        assert_eq!(once, "/a/{id}/b/{id}/");
        assert_eq!(route_template(&once), once);
        assert!(is_template(&once));
    }
}
