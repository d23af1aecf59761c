//! The one error type of the repository layer, and how PostgreSQL errors map onto it.

use tokio_postgres::error::SqlState;

use crate::domain::InvalidInput;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {key} not found")]
    NotFound { kind: &'static str, key: String },

    /// A write against a stale version. Nothing was changed.
    #[error(
        "{kind} {key} was changed by someone else (you had version {expected}, it is now {actual}): reload it and try again"
    )]
    Conflict { kind: &'static str, key: String, expected: i32, actual: i32 },

    #[error("{0}")]
    AlreadyExists(String),

    #[error("{0}")]
    Invalid(String),

    /// The change is well formed but the object's state does not allow it
    /// now (a resolved handoff cannot be accepted). Nothing was changed.
    #[error("{0}")]
    WrongState(String),

    #[error("this session is read-only: the change was not made")]
    ReadOnly,

    #[error("the database cannot be reached: {0}")]
    Unavailable(String),

    /// The schema in the database is newer than this binary.
    #[error(
        "the database schema is at version {found} but this mctl only knows up to {known}: upgrade mctl before using this database"
    )]
    SchemaTooNew { found: i64, known: i64 },

    /// A lock could not be taken in time; nothing was changed.
    #[error("{0}")]
    Busy(String),

    /// Deadlock or serialization failure: safe to retry the whole transaction.
    #[error("the database asked to retry the transaction: {0}")]
    Retry(String),

    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub fn not_found(kind: &'static str, key: impl std::fmt::Display) -> Self {
        StoreError::NotFound { kind, key: crate::domain::text::clip(&key.to_string(), 80).into_owned() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid(message.into())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retry(_))
    }
}

impl From<InvalidInput> for StoreError {
    fn from(err: InvalidInput) -> Self {
        StoreError::Invalid(err.0)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            // No server response: the connection is gone or never came up.
            let text =
                std::error::Error::source(&err).map(|s| format!("{err}: {s}")).unwrap_or_else(|| err.to_string());
            return if err.is_closed() || text.contains("connect") || text.contains("I/O") {
                StoreError::Unavailable(text)
            } else {
                StoreError::Database(text)
            };
        };
        let code = db.code();
        let constraint = db.constraint().unwrap_or("");
        if *code == SqlState::UNIQUE_VIOLATION {
            StoreError::AlreadyExists(unique_message(constraint, db.detail()))
        } else if *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::FOREIGN_KEY_VIOLATION
            || *code == SqlState::NOT_NULL_VIOLATION
            || *code == SqlState::STRING_DATA_RIGHT_TRUNCATION
            || *code == SqlState::INVALID_TEXT_REPRESENTATION
            || *code == SqlState::INVALID_DATETIME_FORMAT
            || *code == SqlState::DATETIME_FIELD_OVERFLOW
            || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
            || *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        {
            let what = if constraint.is_empty() { db.message().to_string() } else { constraint.replace('_', " ") };
            StoreError::Invalid(format!("the database refused the value ({what})"))
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StoreError::ReadOnly
        } else if *code == SqlState::LOCK_NOT_AVAILABLE {
            StoreError::Busy(
                "the project is busy: another change held a lock too long; nothing was changed, try again".into(),
            )
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
            StoreError::Retry(db.message().to_string())
        } else if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || code.code().starts_with("08")
        {
            StoreError::Unavailable(db.message().to_string())
        } else {
            StoreError::Database(db.message().to_string())
        }
    }
}

/// Turns a unique-constraint name into a sentence an operator understands.
fn unique_message(constraint: &str, detail: Option<&str>) -> String {
    let what = match constraint {
        "project_key_key" => "a project with that key already exists",
        "agent_handle_key" => "an agent with that handle already exists",
        "lane_name_unique" => "a lane with that name already exists in this project",
        "cycle_name_unique" => "a cycle with that name already exists in this project",
        "module_name_unique" => "a module with that name already exists in this project",
        "page_project_id_slug_key" => "a page with that slug already exists in this project",
        "environment_name_unique" => "an environment with that name already exists in this project",
        "release_name_unique" => "a release with that name already exists in this project",
        "integration_connection_connection_key_key" => "a connection with that key already exists",
        "external_mapping_connection_id_local_kind_local_id_key" => "that object is already mapped on this connection",
        "external_mapping_connection_id_local_kind_external_id_key" => {
            "that external object is already mapped to another local object"
        }
        _ => "",
    };
    if what.is_empty() { format!("that already exists ({})", detail.unwrap_or(constraint)) } else { what.to_string() }
}
