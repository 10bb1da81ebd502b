//! The one HTTP error shape, `{"error_code": int, "message": str}`, and the one place that maps
//! domain errors onto it.
//!
//! `error_code` is the HTTP status followed by two digits that say which error of that status
//! it is (as Confluent's APIs do: 40401 is "topic not found"). The full list is in docs/API.md.

use http::StatusCode;
use serde::Serialize;
use sluice_log::LogError;

#[derive(Debug, Clone, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{message}")]
pub struct ApiError {
    #[serde(skip)]
    #[schema(ignore)]
    pub status: StatusCode,
    /// Seconds until a retry may succeed (`Retry-After`), for the conditions that pass.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u64>,
    pub error_code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            retry_after: None,
            error_code: code,
            message: message.into(),
        }
    }

    /// Tell the client when to try again (`Retry-After: seconds`).
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_json(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, 40001, message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, 40002, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, 40101, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, 40301, message)
    }
    pub fn topic_not_found(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("topic `{name}` does not exist"),
        )
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, 40400, message)
    }
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            40501,
            "method not allowed on this resource",
        )
    }
    pub fn conflict(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, 41301, message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, 41501, message)
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, 50301, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, message)
    }
}

/// Map a log error, naming topics as the tenant sees them (without the namespace).
pub fn from_log(e: LogError, shown_topic: &str) -> ApiError {
    match e {
        LogError::TopicExists(_) => {
            ApiError::conflict(40901, format!("topic `{shown_topic}` already exists"))
        }
        LogError::TopicNotFound(_) => ApiError::topic_not_found(shown_topic),
        LogError::InvalidTopicName(_) => ApiError::invalid(format!(
            "invalid topic name `{shown_topic}`: use 1-249 characters of [a-zA-Z0-9._-]"
        )),
        LogError::InvalidPartition {
            partition,
            partitions,
            ..
        } => ApiError::new(
            StatusCode::NOT_FOUND,
            40402,
            format!(
                "topic `{shown_topic}` has {partitions} partitions; partition {partition} does not exist"
            ),
        ),
        e @ LogError::InvalidPartitionCount { .. } => ApiError::invalid(e.to_string()),
        LogError::InvalidConfig(e) => ApiError::invalid(e.to_string()),
        e @ LogError::OffsetOutOfRange { .. } => {
            ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, 41601, e.to_string())
        }
        e @ LogError::Fenced { .. } => ApiError::unavailable(e.to_string()),
        LogError::Closed => ApiError::unavailable("the server is shutting down"),
        e @ LogError::Storage(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, 50302, e.to_string())
        }
        e @ LogError::Corrupt(_) => ApiError::internal(e.to_string()),
        // A sealed topic whose key is missing or wrong: the operator's configuration.
        e @ LogError::Sealed(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50003, e.to_string())
        }
    }
}
