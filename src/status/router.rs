//! Request routing for the status socket's fixed set of endpoints.
//!
//! The routes are few and fixed by the user-facing contract, so they are an enum the handler
//! matches exhaustively rather than a registry of closures: adding an endpoint is a compile
//! error until it is handled. The router owns the HTTP etiquette (404 for unknown paths, 405
//! with `Allow` for a known path with the wrong method, 400 for an unusable model name) so the
//! handler only builds content.

use super::http::{Request, Response};

/// One endpoint of the status socket, with what was parsed out of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /status`: the JSON snapshot.
    Status,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /healthz`: 200 or 503.
    Healthz,
    /// `GET /models`: the watch folder.
    Models,
    /// `POST /models/NAME/activate`, `model` percent-decoded and checked by [`model_name`].
    Activate { model: String },
    /// `POST /governor/pin[?model=NAME]`: hold a rung (the serving one without a name).
    GovernorPin { model: Option<String> },
    /// `POST /governor/unpin`.
    GovernorUnpin,
    /// `GET /results`: every result from now on, streamed.
    Results,
    /// `GET /`: the page.
    Page,
}

const GET: &[&str] = &["GET", "HEAD"];
const POST: &[&str] = &["POST"];

/// Maps `req` to a [`Route`], or to the error response to send instead. HEAD is accepted
/// wherever GET is (the server strips the body).
pub fn route(req: &Request) -> Result<Route, Response> {
    let (route, allowed) = match req.path.as_str() {
        "/status" => (Route::Status, GET),
        "/metrics" => (Route::Metrics, GET),
        "/healthz" => (Route::Healthz, GET),
        "/models" => (Route::Models, GET),
        "/governor/pin" => (
            Route::GovernorPin {
                model: pin_target(req)?,
            },
            POST,
        ),
        "/governor/unpin" => (Route::GovernorUnpin, POST),
        "/results" => (Route::Results, GET),
        "/" | "/index.html" => (Route::Page, GET),
        path => match activate_target(path) {
            Some(model) => (Route::Activate { model: model? }, POST),
            None => return Err(Response::not_found(path)),
        },
    };
    allow(req, allowed)?;
    Ok(route)
}

/// `Ok` when `req.method` is one of `allowed`, else a 405 carrying `Allow`.
pub fn allow(req: &Request, allowed: &[&str]) -> Result<(), Response> {
    if allowed.contains(&req.method.as_str()) {
        Ok(())
    } else {
        Err(Response::method_not_allowed(
            &req.method,
            &req.path,
            allowed,
        ))
    }
}

/// The rung a pin names: `?model=NAME` or a JSON body `{"model": "NAME"}`, checked like a model
/// file name; `None` when neither is given (pin the serving rung).
pub fn pin_target(req: &Request) -> Result<Option<String>, Response> {
    if let Some(q) = req.query.as_deref()
        && let Some(raw) = q.split('&').find_map(|kv| kv.strip_prefix("model="))
    {
        return model_name(raw).map(Some);
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(&req.body)
        .map_err(|e| Response::error(400, &format!("pin: the body is not JSON: {e}")))?;
    match v.get("model") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(m)) => model_name(m).map(Some),
        Some(other) => Err(Response::error(
            400,
            &format!("pin: \"model\" must be a string, not {other}"),
        )),
    }
}

/// For a path of the form `/models/NAME/activate`, the decoded model name (or a 400 when the
/// name is unusable); `None` for any other path.
pub fn activate_target(path: &str) -> Option<Result<String, Response>> {
    let raw = path.strip_prefix("/models/")?.strip_suffix("/activate")?;
    Some(model_name(raw))
}

/// Percent-decodes one path segment and checks it can name a model file in the watch folder:
/// non-empty, UTF-8, at most 255 bytes, no `/`, no NUL, not `.` or `..`.
pub fn model_name(raw: &str) -> Result<String, Response> {
    let bad = |why: &str| Response::error(400, &format!("invalid model name {raw:?}: {why}"));
    let bytes = percent_decode(raw).ok_or_else(|| bad("bad percent-encoding"))?;
    let name = String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    if name.is_empty() || name == "." || name == ".." {
        return Err(bad("empty or a dot path"));
    }
    if name.contains(['/', '\0']) {
        return Err(bad("contains '/' or NUL"));
    }
    if name.len() > 255 {
        return Err(bad("longer than 255 bytes"));
    }
    Ok(name)
}

pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn governor_pins_name_a_rung_by_query_or_json_body() {
        assert_eq!(
            route(&req("POST", "/governor/pin")),
            Ok(Route::GovernorPin { model: None })
        );
        let mut r = req("POST", "/governor/pin");
        r.query = Some("model=mnv2-1.0.onnx".into());
        assert_eq!(
            route(&r),
            Ok(Route::GovernorPin {
                model: Some("mnv2-1.0.onnx".into())
            })
        );
        let mut r = req("POST", "/governor/pin");
        r.body = br#"{"model": "mnv2-0.5"}"#.to_vec();
        assert_eq!(
            route(&r),
            Ok(Route::GovernorPin {
                model: Some("mnv2-0.5".into())
            })
        );
        for bad in [
            &br#"{"model": 3}"#[..],
            b"not json",
            br#"{"model": "../x"}"#,
        ] {
            let mut r = req("POST", "/governor/pin");
            r.body = bad.to_vec();
            assert_eq!(
                status_of(route(&r)),
                400,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            route(&req("POST", "/governor/unpin")),
            Ok(Route::GovernorUnpin)
        );
        assert_eq!(status_of(route(&req("GET", "/governor/pin"))), 405);
    }

    fn status_of(r: Result<Route, Response>) -> u16 {
        r.map_or_else(|resp| resp.status, |_| 200)
    }

    #[test]
    fn known_routes() {
        assert_eq!(route(&req("GET", "/status")), Ok(Route::Status));
        assert_eq!(route(&req("HEAD", "/metrics")), Ok(Route::Metrics));
        assert_eq!(route(&req("GET", "/healthz")), Ok(Route::Healthz));
        assert_eq!(route(&req("GET", "/models")), Ok(Route::Models));
        assert_eq!(
            route(&req("POST", "/models/resnet50.int8/activate")),
            Ok(Route::Activate {
                model: "resnet50.int8".into()
            })
        );
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405_with_allow() {
        assert_eq!(status_of(route(&req("GET", "/nope"))), 404);
        assert_eq!(status_of(route(&req("GET", "/status/"))), 404);
        let resp = route(&req("DELETE", "/status")).unwrap_err();
        assert_eq!(resp.status, 405);
        assert!(resp.headers.contains(&("Allow".into(), "GET, HEAD".into())));
        let resp = route(&req("GET", "/models/a/activate")).unwrap_err();
        assert_eq!(resp.status, 405);
        assert!(resp.headers.contains(&("Allow".into(), "POST".into())));
    }

    #[test]
    fn model_names_are_decoded_and_checked() {
        assert_eq!(model_name("my%20net"), Ok("my net".to_string()));
        for bad in ["", ".", "..", "%2e%2E", "a%2Fb", "a%00", "%zz", "%4", "%ff"] {
            assert_eq!(model_name(bad).map_err(|r| r.status), Err(400), "{bad:?}");
        }
        assert_eq!(activate_target("/models/x/other"), None);
        assert_eq!(status_of(route(&req("POST", "/models/a/b/activate"))), 400);
    }
}
