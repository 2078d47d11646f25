//! The one error type of the API, and its JSON form
//! `{code, message, details}`.
//!
//! Store errors keep their meaning ([`ErrorKind`]): a missing record is
//! 404, a lost race or a taken id 409, a request the store finds malformed
//! 422, a store that does not answer 503. Bad input never becomes a 500:
//! only a fault on the server's side (a file that cannot be written) does,
//! and its cause goes to the log, not to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchboard_storage::{ErrorKind, StoreError};
use utoipa::ToSchema;

/// One problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// Where in the request: a JSON path such as `config.ring_timeout_secs`
    /// or `nodes.menu.options`, or a query parameter's name.
    pub field: String,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code: `bad_request`, `validation`,
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The fields at fault, for validation errors; else empty.
    pub details: Vec<FieldProblem>,
}

/// An error answer of the API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
#[non_exhaustive]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldProblem>,
    /// Seconds to wait before trying again (`Retry-After`, with 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// 429, to be tried again in `retry_after`.
    pub fn too_many(message: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message);
        e.retry_after = Some(retry_after.as_secs().max(1));
        e
    }

    /// 422 for one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = message.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation",
            message: format!("{field}: {message}"),
            details: vec![FieldProblem { field, message }],
            retry_after: None,
        }
    }

    /// 422 for several fields.
    pub fn fields(message: impl Into<String>, details: Vec<FieldProblem>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation",
            message: message.into(),
            details,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A fault on the server's side; `cause` is logged, not sent.
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}; the server's log says why"),
        )
    }

    /// Names the field a store's `Invalid` error is about (the store
    /// itself does not know the request's field names).
    pub fn in_field(mut self, field: &str) -> ApiError {
        if self.code == "validation" && self.details.is_empty() {
            self.details.push(FieldProblem {
                field: field.to_owned(),
                message: self.message.clone(),
            });
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let message = e.message().to_owned();
        match e.kind() {
            ErrorKind::NotFound => ApiError::not_found(message),
            ErrorKind::Conflict => ApiError::conflict(message),
            ErrorKind::Invalid => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
            }
            ErrorKind::Timeout | ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is not answering; try again shortly",
                )
            }
            _ => ApiError::internal("store error", &e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            details: self.details,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
