//! Extractors that reject with [`ApiError`] instead of axum's plain text.
//!
//! axum's `Json` already deserializes through `serde_path_to_error`, so a
//! data error's source reads `owner.verified: invalid type: ...`: the
//! message names the field, and we pass it on.

use std::error::Error as _;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body; every rejection is a JSON `invalid_request`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let detail = rejection
        .source()
        .map_or_else(|| rejection.body_text(), ToString::to_string);
    match rejection {
        JsonRejection::JsonDataError(_) => {
            ApiError::InvalidRequest(format!("invalid request body: {detail}"))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::InvalidRequest(format!("the request body is not valid JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::InvalidRequest(
            "send the request body as JSON with \"Content-Type: application/json\"".to_owned(),
        ),
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        _ => ApiError::InvalidRequest(format!("the request body cannot be read: {detail}")),
    }
}

/// Path parameters; a rejection is a JSON `invalid_request`.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    ApiError::InvalidRequest(format!("invalid path: {}", rejection.body_text()))
}
