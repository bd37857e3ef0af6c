//! The one error type at the HTTP edge. Every failure, including malformed
//! JSON, wrong content types, oversized bodies and unknown routes, answers
//! `{"error": {"code": "snake_case", "message": "human sentence"}}`; validation
//! failures add `"fields": [{"field", "message"}]`. Internal errors answer a
//! fixed message and are logged once, here, with their cause chain.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::FieldError;
use crate::store::StoreError;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("a valid `Authorization: Bearer <admin token or tenant API key>` header is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// A body of another type than the route takes (the sentence names it).
    #[error("{0}")]
    MediaType(&'static str),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{}", validation_message(.0))]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("the service is busy; retry in a moment")]
    Busy,
    #[error("{0}")]
    Signature(&'static str),
    #[error("{0}")]
    BotMismatch(&'static str),
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("no NAVER WORKS token: {0}")]
    Token(crate::naverworks::token::TokenError),
    /// A user-account connection that waits for a person's authorisation
    /// (`not_authorized`, `needs_reauthorization`): 409.
    #[error("{1}")]
    Authorization(&'static str, String),
    /// Too many failed attempts from this client; retry after the seconds.
    #[error("too many failed attempts from this address; try again later")]
    Throttled(u64),
    /// The tenant is over a quota (429); the string names it.
    #[error("the tenant is over its quota of {0}; retry when its queues have drained, or ask the operator to raise it")]
    Quota(&'static str),
    /// A platform botgate had to ask could not answer (502).
    #[error("{0}")]
    Upstream(&'static str),
    #[error("an internal error occurred")]
    Internal(#[source] anyhow::Error),
}

fn validation_message(fields: &[FieldError]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect();
    format!("invalid request: {}", parts.join("; "))
}

impl ApiError {
    /// The stable, machine-readable code of each error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidJson(_) => "invalid_json",
            Self::UnsupportedMediaType | Self::MediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::Conflict(_) => "conflict",
            Self::Busy => "busy",
            Self::Token(e) => e.code(),
            Self::Signature(_) => "invalid_signature",
            Self::BotMismatch(_) => "bot_id_mismatch",
            Self::BadRequest(code, _) | Self::Authorization(code, _) => code,
            Self::Upstream(_) => "upstream_unavailable",
            Self::Throttled(_) => "too_many_failures",
            Self::Quota(_) => "quota_exceeded",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            writeln!(f, "Caused by:\n\t{cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType | Self::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) | Self::Authorization(..) => StatusCode::CONFLICT,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Token(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Token(_) => StatusCode::BAD_GATEWAY,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BotMismatch(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(..) => StatusCode::BAD_REQUEST,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Throttled(_) | Self::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!(error.cause_chain = ?e, error.message = %e, "request failed");
        }
        let body = ErrorBody {
            code: self.code(),
            message: self.to_string(),
            fields: match self {
                Self::Validation(fields) => Some(fields),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::Busy => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::Throttled(seconds) => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            Self::Quota(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::Token(e) if e.is_transient() => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        response.json(ErrorEnvelope { error: body })
    }
}

/// Every failure's body: `{"error": {"code", "message", "fields"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// A stable snake_case code, e.g. `validation_failed`, `not_found`.
    pub code: &'static str,
    /// A sentence a person can act on; never a secret.
    pub message: String,
    /// Validation failures: each field with its problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<&'a [FieldError]>,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::Busy => Self::Busy,
            StoreError::Other(e) => Self::Internal(e),
        }
    }
}

/// Maps actix's JSON extractor errors into the envelope.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match err {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => {
            ApiError::PayloadTooLarge(limit)
        }
        E::ContentType => ApiError::UnsupportedMediaType,
        E::Deserialize(e) if e.is_data() => ApiError::validation("body", e.to_string()),
        E::Deserialize(e) => ApiError::InvalidJson(e.to_string()),
        other => ApiError::InvalidJson(other.to_string()),
    };
    api.into()
}

/// Maps path-extractor errors (e.g. a non-UTF-8 segment) into the envelope.
pub fn path_error(_err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::NotFound("no such resource").into()
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound("no route matches this path").error_response()
}

pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}
