//! The one error type of the store: a kind that drives what the caller does
//! (retry, fail over, answer 404 or 409) and the source that explains it.

use std::fmt;
use thiserror::Error;

/// What went wrong, as far as the caller's next step is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The record does not exist.
    NotFound,
    /// The write lost a race: the record exists already, its revision
    /// moved on, or another node holds the lease. Re-read and decide.
    Conflict,
    /// The store did not answer in time; the write may or may not have
    /// happened. Retrying an idempotent write is safe.
    Timeout,
    /// The store cannot be reached or is shutting down.
    Unavailable,
    /// The request or the stored data is malformed.
    Invalid,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Invalid => "invalid",
        })
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of a [`Store`](crate::Store) operation.
#[derive(Debug, Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct StoreError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Source>,
}

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<Source>) -> StoreError {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn not_found(what: impl Into<String>) -> StoreError {
        StoreError::new(ErrorKind::NotFound, what)
    }

    pub fn conflict(what: impl Into<String>) -> StoreError {
        StoreError::new(ErrorKind::Conflict, what)
    }

    pub fn invalid(what: impl Into<String>) -> StoreError {
        StoreError::new(ErrorKind::Invalid, what)
    }

    pub fn unavailable(what: impl Into<String>) -> StoreError {
        StoreError::new(ErrorKind::Unavailable, what)
    }

    pub fn timeout(what: impl Into<String>) -> StoreError {
        StoreError::new(ErrorKind::Timeout, what)
    }

    /// A record that does not decode: stored by a newer version, or damaged.
    pub(crate) fn decode(what: &str, e: serde_json::Error) -> StoreError {
        StoreError::invalid(format!("stored {what} does not decode")).with_source(e)
    }

    pub(crate) fn encode(what: &str, e: serde_json::Error) -> StoreError {
        StoreError::invalid(format!("{what} does not encode")).with_source(e)
    }
}

/// The result of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
