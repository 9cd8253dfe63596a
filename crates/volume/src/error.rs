//! Cinder's fault body: `{"itemNotFound": {"code": 404, "message": "..."}}`.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferro_common::Error;

#[derive(Debug, Clone)]
pub struct CinderError {
    pub code: u16,
    pub message: String,
}

pub type CResult<T> = Result<T, CinderError>;

impl CinderError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        CinderError {
            code,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 400 `InvalidVolume` and friends: "Invalid volume: <why>".
    pub fn invalid(what: &str, why: impl std::fmt::Display) -> Self {
        Self::new(400, format!("Invalid {what}: {why}"))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn volume_not_found(id: &str) -> Self {
        Self::not_found(format!("Volume {id} could not be found."))
    }
    pub fn snapshot_not_found(id: &str) -> Self {
        Self::not_found(format!("Snapshot {id} could not be found."))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn forbidden(action: &str) -> Self {
        Self::new(
            403,
            format!("Policy doesn't allow {action} to be performed."),
        )
    }
    pub fn over_quota(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "block storage request failed");
        Self::new(
            500,
            "The server has either erred or is incapable of performing the requested operation.",
        )
    }
}

impl From<Error> for CinderError {
    fn from(e: Error) -> Self {
        let code = e.status();
        if code >= 500 {
            return CinderError::internal(e.log_message());
        }
        CinderError {
            code,
            message: e.to_string(),
        }
    }
}

fn key(code: u16) -> &'static str {
    match code {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        406 => "notAcceptable",
        409 => "conflictingRequest",
        412 => "preconditionFailed",
        413 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

impl IntoResponse for CinderError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.code == 401 {
            let body = serde_json::json!({"error": {"code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}});
            let mut r = (status, axum::Json(body)).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
            return r;
        }
        let body =
            serde_json::json!({ key(self.code): {"code": self.code, "message": self.message} });
        (status, axum::Json(body)).into_response()
    }
}
