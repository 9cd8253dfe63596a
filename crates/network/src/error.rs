//! Neutron's fault body: `{"NeutronError": {"type", "message", "detail"}}`.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferro_common::Error;

#[derive(Debug, Clone)]
pub struct NeutronError {
    pub code: u16,
    /// Neutron's exception class name (`NetworkNotFound`, `IpAddressInUse`, ...).
    pub kind: String,
    pub message: String,
}

pub type NResult<T> = Result<T, NeutronError>;

impl NeutronError {
    pub fn new(code: u16, kind: impl Into<String>, message: impl Into<String>) -> Self {
        NeutronError {
            code,
            kind: kind.into(),
            message: message.into(),
        }
    }
    /// 400 `HTTPBadRequest` / `InvalidInput`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "HTTPBadRequest", message)
    }
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        Self::new(
            400,
            "InvalidInput",
            format!("Invalid input for operation: {message}."),
        )
    }
    /// 404 for `<Kind> <id> could not be found.` (`NetworkNotFound`, ...).
    pub fn not_found(what: &str, id: &str) -> Self {
        let class = what.replace(' ', "");
        Self::new(
            404,
            format!("{class}NotFound"),
            format!("{what} {id} could not be found."),
        )
    }
    pub fn conflict(kind: &str, message: impl Into<String>) -> Self {
        Self::new(409, kind, message)
    }
    pub fn forbidden(action: &str) -> Self {
        Self::new(
            403,
            "PolicyNotAuthorized",
            format!("({action}) is disallowed by policy"),
        )
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "network request failed");
        Self::new(
            500,
            "HTTPInternalServerError",
            "Request Failed: internal server error while processing your request.",
        )
    }
}

impl From<Error> for NeutronError {
    fn from(e: Error) -> Self {
        let code = e.status();
        if code >= 500 {
            return NeutronError::internal(e.log_message());
        }
        let kind = match code {
            400 => "HTTPBadRequest",
            401 => "HTTPUnauthorized",
            403 => "HTTPForbidden",
            404 => "HTTPNotFound",
            409 => "HTTPConflict",
            413 => "HTTPRequestEntityTooLarge",
            _ => "NeutronException",
        };
        NeutronError::new(code, kind, e.to_string())
    }
}

impl IntoResponse for NeutronError {
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
        let body = serde_json::json!({"NeutronError": {
            "type": self.kind, "message": self.message, "detail": ""}});
        (status, axum::Json(body)).into_response()
    }
}
