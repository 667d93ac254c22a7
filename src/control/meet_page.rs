//! The meeting page (`GET /meet` and `/meet/{asset}`): the browser client
//! in `web/`, built into the binary, served on the API's origin without the
//! API token. The participant's own token travels in the URL fragment,
//! which the browser never sends here; the page hands it only to the WHIP
//! and WHEP URLs as a bearer token. The E2EE meeting key rides in the same
//! fragment and never reaches the relay.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles
//! and workers from this origin only, no inline code, fetches to this
//! origin only (WHIP/WHEP), never framed.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The policy of every page answer (the worker inherits it from its own
/// response). `connect-src 'self'`: WHIP and WHEP are paths on this origin.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     worker-src 'self'; style-src 'self'; img-src 'self'; media-src 'self' blob: mediastream:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/meet/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page's files, as `web/` holds them.
const ASSETS: &[Asset] = &[
    Asset {
        name: "meet.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../web/meet.html"),
    },
    Asset {
        name: "meet.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/meet.css"),
    },
    Asset {
        name: "meet.js",
        content_type: JS,
        body: include_str!("../../web/meet.js"),
    },
    Asset {
        name: "whip.js",
        content_type: JS,
        body: include_str!("../../web/whip.js"),
    },
    Asset {
        name: "e2ee.js",
        content_type: JS,
        body: include_str!("../../web/e2ee.js"),
    },
    Asset {
        name: "e2ee-worker.js",
        content_type: JS,
        body: include_str!("../../web/e2ee-worker.js"),
    },
    Asset {
        name: "meetkeys.js",
        content_type: JS,
        body: include_str!("../../web/meetkeys.js"),
    },
    Asset {
        name: "sframe.js",
        content_type: JS,
        body: include_str!("../../web/sframe.js"),
    },
];

/// Whether `path` is the page or one of its files (served without the
/// API token).
pub(crate) fn is_page_path(path: &str) -> bool {
    path == "/meet" || path.starts_with("/meet/")
}

/// `GET /meet`: the page.
pub(crate) async fn page() -> Response {
    serve("meet.html").unwrap_or_else(IntoResponse::into_response)
}

/// `GET /meet/{asset}`: one of its files; anything else is a JSON 404.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    serve(&name).unwrap_or_else(IntoResponse::into_response)
}

fn serve(name: &str) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or(ApiError::NotFound)?;
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::super::{ControlOptions, ControlState, router};
    use super::*;
    use crate::metrics::MetricsHub;
    use crate::relay::empty_cell;

    fn app() -> axum::Router {
        let opts = ControlOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: Some("api-secret".to_owned()),
            media_address: "127.0.0.1:40000".parse().unwrap(),
            policy: Default::default(),
            limits: Default::default(),
            cluster: None,
            audio_level_extension: 1,
            background: crate::net::priority::Background::Normal,
        };
        router(ControlState::new(
            &opts,
            empty_cell(),
            Arc::new(MetricsHub::new("ring")),
        ))
    }

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_without_the_api_token() {
        let (status, headers, body) = get("/meet").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(body.contains(r#"<script type="module" src="/meet/meet.js">"#));
        for asset in ASSETS {
            let (status, headers, body) = get(&format!("/meet/{}", asset.name)).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", asset.name);
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body, asset.body);
        }
    }

    #[tokio::test]
    async fn everything_else_still_needs_the_token_and_unknown_files_are_json_404s() {
        let (status, _, body) = get("/v1/meetings").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        for path in ["/meet/nope.js", "/meet/../Cargo.toml", "/meet/", "/meeting"] {
            let (status, _, body) = get(path).await;
            let code = if path == "/meeting" {
                "unauthorized"
            } else {
                "not_found"
            };
            assert!(status.is_client_error(), "{path}: {status}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["error"]["code"], code, "{path}: {body}");
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_other_origin() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains('*'));
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
        for asset in ASSETS {
            // No inline script or style the policy would block.
            assert!(!asset.body.contains("<script>"), "{}", asset.name);
            assert!(!asset.body.contains("style=\""), "{}", asset.name);
            for handler in ["onclick=", "onload=", "onerror="] {
                assert!(!asset.body.contains(handler), "{}: {handler}", asset.name);
            }
        }
        assert!(!ASSETS.iter().any(|a| a.body.contains("://")), "no CDN");
    }
}
