//! Extractors whose rejections are [`ApiError`]s: a JSON body whose
//! errors name the field at fault, a query string likewise, and path
//! parameters.

use crate::error::{ApiError, FieldProblem};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// The largest JSON body taken (a flow with many nodes fits easily).
pub const JSON_LIMIT: usize = 1024 * 1024;

/// Turns a deserialisation error with its path into a field problem.
fn problem(path: &serde_path_to_error::Path, message: String) -> FieldProblem {
    let mut field = path.to_string();
    // A missing field is reported one level up: name it.
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(name) = rest.split('`').next() {
            field = if field == "." || field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
    }
    if field.is_empty() {
        field = ".".into();
    }
    // serde_json appends the position; people want the field.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    FieldProblem { field, message }
}

/// Reads a JSON body: 415 without a JSON content type, 400 for bytes
/// that are not JSON, 422 naming the field for JSON of the wrong shape.
pub fn json_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().clone();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let p = problem(&path, inner.to_string());
                    ApiError::fields(
                        format!("the request body is not valid: {}: {}", p.field, p.message),
                        vec![p],
                    )
                }
                _ => ApiError::bad_request(format!("the request body is not JSON: {inner}")),
            });
        }
    };
    de.end()
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
    Ok(value)
}

/// A JSON request body. See [`json_from_slice`].
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request body as JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        if bytes.len() > JSON_LIMIT {
            return Err(too_large(JSON_LIMIT));
        }
        json_from_slice(&bytes).map(ApiJson)
    }
}

/// A body that could not be read.
pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::bad_request(format!("cannot read the request body: {e}"))
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// A query string, 422 naming the parameter when a value does not parse.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let p = problem(e.path(), e.inner().to_string());
                ApiError::fields(
                    format!("query parameter {}: {}", p.field, p.message),
                    vec![p],
                )
            })
    }
}

/// Path parameters; a malformed one (bad percent-encoding) is a 400.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}
