//! The professionals' web portal: plain HTML, CSS and JavaScript modules with no build
//! step, embedded in the binary (`rust-embed`, also in debug builds, so what is tested is
//! what ships) and served at `/` (the page) and `/ui/…` (its modules, styles and images).
//!
//! The portal is a client of the public `/api/v1` API like any other: it has no back
//! door, and this crate knows nothing of the application. What it adds is the page's
//! own protection: a strict Content-Security-Policy (scripts, styles and connections
//! from this origin only, no inline script or style, no framing), sent with every file.

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, Request, Response, Result};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Where the portal's files are served from (the page itself is `/`).
pub const ASSET_PREFIX: &str = "/ui/";

/// The page's Content-Security-Policy: everything from this origin only, nothing
/// inline, no plugins, no framing, forms post nowhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Serves the portal: `GET /` is the page, `GET /ui/<file>` its files; anything else
/// under them is 404.
#[derive(Debug, Default, Clone, Copy)]
pub struct Portal;

impl Portal {
    /// The route template of a path the portal serves (for metrics: never a file name),
    /// or `None` for a path that is not the portal's.
    pub fn route(path: &str) -> Option<&'static str> {
        if path == "/" || path == "/index.html" {
            Some("/")
        } else if path.starts_with(ASSET_PREFIX) {
            Some("/ui/{file}")
        } else {
            None
        }
    }

    fn file(path: &str) -> Option<(&'static str, rust_embed::EmbeddedFile)> {
        let name = if path == "/" || path == "/index.html" {
            "index.html"
        } else {
            path.strip_prefix(ASSET_PREFIX)?
        };
        // Only names made of safe characters: no `..`, no hidden files, no escapes.
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !safe {
            return None;
        }
        let file = Assets::get(name)?;
        Some((content_type(name)?, file))
    }
}

/// The media type of a portal file, by its extension; a file of another kind is not
/// served.
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

impl Endpoint for Portal {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        let Some((mime, file)) = Self::file(req.uri().path()) else {
            return Err(poem::Error::from_status(StatusCode::NOT_FOUND));
        };
        let body = if req.method() == Method::HEAD {
            Vec::new()
        } else {
            file.data.into_owned()
        };
        Ok(Response::builder()
            .content_type(mime)
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .header(header::X_FRAME_OPTIONS, "DENY")
            .header("Cross-Origin-Opener-Policy", "same-origin")
            .header("Cross-Origin-Resource-Policy", "same-origin")
            .header(
                "Permissions-Policy",
                "camera=(), microphone=(), geolocation=(), payment=()",
            )
            .body(body))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use poem::test::TestClient;

    #[tokio::test]
    async fn the_page_is_served_with_a_strict_content_security_policy() {
        let cli = TestClient::new(Portal);
        let resp = cli.get("/").send().await;
        resp.assert_status_is_ok();
        resp.assert_header("content-type", "text/html; charset=utf-8");
        resp.assert_header("content-security-policy", CONTENT_SECURITY_POLICY);
        let html = resp.0.into_body().into_string().await.unwrap();
        assert!(html.contains("<script type=\"module\" src=\"/ui/app.js\">"));
    }

    #[test]
    fn no_script_or_style_is_inline_anywhere_in_the_portal() {
        for name in Assets::iter() {
            let file = Assets::get(&name).unwrap();
            if !name.ends_with(".html") {
                continue;
            }
            let text = String::from_utf8_lossy(&file.data);
            for line in text.lines() {
                let l = line.to_ascii_lowercase();
                assert!(
                    !l.contains("<script") || l.contains(" src="),
                    "{name}: inline script: {line}"
                );
                assert!(!l.contains("<style"), "{name}: inline style: {line}");
                assert!(!l.contains(" style="), "{name}: style attribute: {line}");
                let handler = l.match_indices(" on").any(|(at, _)| {
                    let rest = &l[at + 3..];
                    let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
                    name_len > 0 && rest[name_len..].trim_start().starts_with('=')
                });
                assert!(!handler, "{name}: inline event handler: {line}");
            }
        }
    }

    #[tokio::test]
    async fn files_outside_the_portal_and_odd_names_are_not_found() {
        let cli = TestClient::new(Portal);
        for path in [
            "/ui/",
            "/ui/../Cargo.toml",
            "/ui/.hidden",
            "/ui/nothing.js",
            "/x",
        ] {
            cli.get(path)
                .send()
                .await
                .assert_status(StatusCode::NOT_FOUND);
        }
        cli.post("/")
            .send()
            .await
            .assert_status(StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_media_type() {
        let cli = TestClient::new(Portal);
        for name in Assets::iter() {
            let resp = cli.get(format!("/ui/{name}")).send().await;
            resp.assert_status_is_ok();
            assert!(content_type(&name).is_some(), "{name} has a known type");
        }
    }
}
