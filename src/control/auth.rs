//! Bearer-token authentication (RFC 6750 §2.1) for every path but
//! `/healthz`, which load balancers and systemd probes call without one,
//! and the meeting page (`/meet`), which carries no secret.
//!
//! With no token configured the middleware lets everything through; the
//! config refuses to start such an API anywhere but on loopback.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ControlState};
use crate::policy::secrets_equal;

/// Paths served without a token.
pub(crate) const OPEN_PATHS: [&str; 1] = ["/healthz"];

/// Refuses requests without the configured token (compared in constant time).
pub(crate) async fn require_token(
    State(state): State<ControlState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.token() else {
        return next.run(request).await;
    };
    // WHIP/WHEP: the participant's own token is checked by the endpoint.
    // The meeting page carries no secret.
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path)
        || super::webrtc::is_browser_path(path)
        || super::meet_page::is_page_path(path)
    {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    match given {
        Some(token) if secrets_equal(token, &expected) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme
/// case-insensitive, RFC 9110 §11.1).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_values_are_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
