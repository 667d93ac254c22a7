//! Checks every request gets in the router, including later requests on a
//! kept-alive connection that `edge.rs` does not see: the request target
//! and head within the edge's limits (a JSON 414 or 431 otherwise), and
//! `Cache-Control: no-store` on every answer, since answers carry SRTP
//! keys, tokens and live meeting state that no cache may keep.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::edge::{EdgeError, MAX_HEAD, MAX_HEADER_FIELDS, MAX_URI};
use super::error::ErrorCode;

/// Refuses oversized targets and heads; marks every answer `no-store`.
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    let head: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let mut response = if target > MAX_URI {
        edge_response(&EdgeError::UriTooLong)
    } else if head > MAX_HEAD || request.headers().len() > MAX_HEADER_FIELDS {
        edge_response(&EdgeError::HeadersTooLarge)
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An edge error as a router response (counted by `error::finish`).
fn edge_response(error: &EdgeError) -> Response {
    let (status, _) = error.status();
    let body = json!({ "error": { "code": error.code(), "message": error.message() } });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(ErrorCode(error.code()));
    response
}
