//! `GET /`: one self-contained page that shows how the board is doing, for a person with a
//! browser and no Grafana.
//!
//! The HTML, CSS and script are one file compiled into the binary (`include_str!`): no CDN, no
//! build step, nothing fetched but the daemon's own `/status` (polled once a second, relative
//! URL, so it works on the TCP listener and behind a proxy path). Charts are inline SVG drawn
//! by the script from the figures it has seen since the page opened (p50/p99 per stage, fps,
//! misses). Every figure shown is also in `/status`; the elements carry ids so a browser test
//! can compare the two.

use crate::status::http::Response;

/// The page's source.
pub const HTML: &str = include_str!("page.html");

/// The page as an answer.
pub fn answer() -> Response {
    Response::text(200, "text/html; charset=utf-8", HTML)
        .with_header("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for outside in ["http://", "https://", "//cdn", "@import"] {
            assert!(!HTML.contains(outside), "the page refers to {outside}");
        }
        assert!(
            HTML.contains("fetch(\"status\""),
            "it polls its own /status"
        );
    }
}
