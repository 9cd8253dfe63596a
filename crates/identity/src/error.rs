//! Keystone's error body: `{"error": {"code", "title", "message"}}`, with
//! `WWW-Authenticate` on 401.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferro_common::Error;

pub struct KsError(pub Error);

impl From<Error> for KsError {
    fn from(e: Error) -> Self {
        KsError(e)
    }
}

pub type KsResult<T> = Result<T, KsError>;

pub fn title(code: u16) -> &'static str {
    ferro_common::error::reason_phrase(code)
}

/// Where a 401's `WWW-Authenticate` points; set once at start-up.
pub static AUTH_URI: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl IntoResponse for KsError {
    fn into_response(self) -> Response {
        let code = self.0.status();
        if code >= 500 {
            tracing::error!(error = %self.0.log_message(), "request failed");
        }
        let body = serde_json::json!({"error": {"code": code, "title": title(code), "message": self.0.to_string()}});
        let mut resp = (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response();
        if code == 401 {
            let uri = AUTH_URI.get().map(String::as_str).unwrap_or("");
            if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{uri}\"")) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}
