//! The error a command ends with, and the exit code scripts see.

use crate::store::StoreError;

/// Exit codes are part of the CLI contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFLICT: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    /// `dispatch next` ran fine but claimed nothing (nothing ready, at capacity, agent away or offline).
    pub const NOTHING_CLAIMED: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The config file is unreadable or invalid.
    #[error("{0}")]
    Config(String),

    /// The embedded cluster or the database URL could not be used.
    #[error("{0}")]
    Database(String),

    /// The command line asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),

    #[error("{0}")]
    Io(String),

    /// The command ran but did not succeed (a sync pass with failed keys, a provider that refused).
    #[error("{0}")]
    Failed(String),

    /// `dispatch next` claimed nothing; the command already said why on stdout.
    #[error("nothing was claimed")]
    NothingClaimed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Store(StoreError::NotFound { .. }) => exit::NOT_FOUND,
            Error::Store(StoreError::Conflict { .. } | StoreError::AlreadyExists(_) | StoreError::WrongState(_)) => {
                exit::CONFLICT
            }
            Error::Store(StoreError::Invalid(_)) | Error::Usage(_) => exit::USAGE,
            Error::NothingClaimed => exit::NOTHING_CLAIMED,
            _ => exit::FAILURE,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }
}

impl From<crate::domain::InvalidInput> for Error {
    fn from(err: crate::domain::InvalidInput) -> Self {
        Error::Usage(err.0)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Io(err.to_string())
    }
}
