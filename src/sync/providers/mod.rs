//! Provider clients, one module per provider, over a shared HTTP layer.

pub mod http;
pub mod plane;
