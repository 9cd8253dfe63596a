//! Nova's fault bodies: `{"itemNotFound": {"code": 404, "message": "..."}}`.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferro_common::Error;

#[derive(Debug)]
pub struct NovaError {
    pub code: u16,
    pub message: String,
}

pub type NResult<T> = Result<T, NovaError>;

impl NovaError {
    pub fn new(code: u16, message: impl Into<String>) -> NovaError {
        NovaError {
            code,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> NovaError {
        NovaError::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> NovaError {
        NovaError::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> NovaError {
        NovaError::new(409, message)
    }
    pub fn forbidden(message: impl Into<String>) -> NovaError {
        NovaError::new(403, message)
    }
    /// 409 for an action the instance's state does not allow (Nova's InstanceInvalidState).
    pub fn invalid_state(action: &str, attr: &str, state: &str, uuid: &str) -> NovaError {
        NovaError::conflict(format!(
            "Cannot '{action}' instance {uuid} while it is in {attr} {state}"
        ))
    }
}

impl From<Error> for NovaError {
    fn from(e: Error) -> Self {
        let code = e.status();
        if code >= 500 {
            tracing::error!(error = %e.log_message(), "compute request failed");
        }
        NovaError {
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
        413 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

impl IntoResponse for NovaError {
    fn into_response(self) -> Response {
        let code = self.code;
        if code == 401 {
            // What keystonemiddleware answers in front of Nova.
            let body = serde_json::json!({"error": {"code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}});
            let mut r = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"\""),
            );
            return r;
        }
        let body = serde_json::json!({ key(code): {"code": code, "message": self.message} });
        (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response()
    }
}

impl NovaError {
    /// For closures that must return the shared error type.
    pub fn into_error(self) -> Error {
        match self.code {
            400 => Error::validation(self.message),
            403 => Error::forbidden(self.message),
            404 => Error::not_found_msg(self.message),
            409 => Error::conflict(self.message),
            _ => Error::internal(self.message),
        }
    }
    pub fn from_error(e: Error) -> NovaError {
        NovaError::from(e)
    }
}
