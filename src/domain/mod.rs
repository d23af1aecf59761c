//! Entity types, keys, validation and the state rules of the domain.
//! Nothing here talks to the database or the terminal.

mod entities;
mod enums;
mod keys;
pub mod text;

pub use entities::*;
pub use enums::*;
pub use keys::*;

/// A value a person typed (or a provider sent) that the domain refuses.
/// The message is one line that says what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl InvalidInput {
    pub fn new(message: impl Into<String>) -> Self {
        InvalidInput(message.into())
    }
}
