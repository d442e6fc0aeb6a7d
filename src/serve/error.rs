//! What can go wrong while serving, each with the HTTP status it is answered with: a bad
//! request is the client's to fix and never stops the server.

/// A serving error; its text names what was expected and what was got.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The task is not loaded (404).
    #[error("unknown task `{task}`; loaded tasks: {known}")]
    UnknownTask {
        /// The name asked for.
        task: String,
        /// The loaded tasks, comma separated.
        known: String,
    },
    /// Malformed or mismatched input (400).
    #[error("{0}")]
    BadRequest(String),
    /// No route (404).
    #[error("no such endpoint: {method} {path}; see GET /v1/tasks")]
    NoRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// Wrong method on a known path (405).
    #[error("{path} accepts {allowed}, not {method}")]
    Method {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The methods it accepts.
        allowed: &'static str,
    },
    /// The body is over `--max-body` (413).
    #[error("request body is over the limit of {limit} bytes (--max-body)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Missing or wrong bearer token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The queue is full or the server is shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// A task cannot be added (409): another W, another model, or its name is taken.
    #[error("{0}")]
    Conflict(String),
    /// Reading an export folder failed.
    #[error(transparent)]
    Gatekit(#[from] crate::error::Error),
    /// A forward pass failed (500).
    #[error("forward pass failed: {0}")]
    Forward(String),
}

impl ServeError {
    /// The HTTP status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ServeError::UnknownTask { .. } | ServeError::NoRoute { .. } => 404,
            ServeError::BadRequest(_) => 400,
            ServeError::Method { .. } => 405,
            ServeError::TooLarge { .. } => 413,
            ServeError::Unauthorized(_) => 401,
            ServeError::Unavailable(_) => 503,
            ServeError::Conflict(_) => 409,
            ServeError::Gatekit(_) => 400,
            ServeError::Forward(_) => 500,
        }
    }
}

impl From<candle_core::Error> for ServeError {
    fn from(e: candle_core::Error) -> Self {
        ServeError::Forward(e.to_string())
    }
}

/// Results of serving.
pub type Result<T> = std::result::Result<T, ServeError>;
