//! Provider clients, one module per provider, over a shared HTTP layer.

pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod plane;
pub mod repo;
