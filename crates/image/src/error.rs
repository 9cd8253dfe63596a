//! Glance's error responses: `{"message", "code", "title"}` JSON, as webob
//! renders them for clients that accept JSON.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferro_common::Error;

pub struct GlanceError(pub Error);

impl From<Error> for GlanceError {
    fn from(e: Error) -> Self {
        GlanceError(e)
    }
}

pub type GResult<T> = Result<T, GlanceError>;

fn reason(code: u16) -> &'static str {
    ferro_common::error::reason_phrase(code)
}

impl IntoResponse for GlanceError {
    fn into_response(self) -> Response {
        let code = self.0.status();
        if code >= 500 {
            tracing::error!(error = %self.0.log_message(), "image request failed");
        }
        // What Glance (webob) sends to a client accepting JSON.
        let body = serde_json::json!({
            "message": self.0.to_string(),
            "code": format!("{code} {}", reason(code)),
            "title": reason(code),
        });
        let mut resp = (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response();
        if code == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"\""),
            );
        }
        resp
    }
}
