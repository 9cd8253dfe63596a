use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one error every service, store and workflow returns. `Display` is the
/// message shown to the API caller; `internal` detail is only logged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed or a field is invalid.
    #[error("{message}")]
    Validation { message: String },
    /// 401: missing, expired, garbled or revoked credentials.
    #[error("{message}")]
    Unauthorized { message: String },
    /// 403: authenticated but the policy forbids it.
    #[error("{message}")]
    Forbidden { message: String },
    /// 404
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    /// 404 with a free-form message.
    #[error("{message}")]
    NotFoundMsg { message: String },
    /// 405
    #[error("{message}")]
    MethodNotAllowed { message: String },
    /// 409: duplicate or state conflict.
    #[error("{message}")]
    Conflict { message: String },
    /// 413
    #[error("{message}")]
    TooLarge { message: String },
    /// 415
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 501
    #[error("{message}")]
    NotImplemented { message: String },
    /// 503
    #[error("Service unavailable.")]
    Unavailable { internal: String },
    /// 500: never the caller's fault; details are logged, not shown.
    #[error("An unexpected error prevented the server from fulfilling your request.")]
    Internal { internal: String },
}

impl Error {
    pub fn validation(message: impl Into<String>) -> Self {
        Error::Validation {
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::Unauthorized {
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden {
            message: message.into(),
        }
    }
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Error::NotFoundMsg {
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
        }
    }
    pub fn internal(internal: impl fmt::Display) -> Self {
        Error::Internal {
            internal: internal.to_string(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Validation { .. } => 400,
            Error::Unauthorized { .. } => 401,
            Error::Forbidden { .. } => 403,
            Error::NotFound { .. } | Error::NotFoundMsg { .. } => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::Conflict { .. } => 409,
            Error::TooLarge { .. } => 413,
            Error::UnsupportedMediaType { .. } => 415,
            Error::NotImplemented { .. } => 501,
            Error::Unavailable { .. } => 503,
            Error::Internal { .. } => 500,
        }
    }

    /// The message for logs: includes operator-only detail.
    pub fn log_message(&self) -> String {
        match self {
            Error::Internal { internal } | Error::Unavailable { internal } => {
                format!("{self} ({internal})")
            }
            _ => self.to_string(),
        }
    }
}

/// The HTTP reason phrase services put in their error bodies.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
