//! How a sync failure is told apart: whose it is (the provider's or the
//! local store's), and what the queue should do about it — wait for the
//! provider's "not before", try again with backoff, or stop and tell an
//! operator. Every provider's reconcile returns these.

use time::OffsetDateTime;

use super::providers::http::ProviderError;
use crate::store::StoreError;

/// A sync failure: the provider's, or the local store's.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub type SyncResult<T> = Result<T, SyncError>;

/// What the queue does with a failed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The provider asked us to wait until then: not a failure.
    Wait(OffsetDateTime),
    /// Could heal by itself: try again with backoff, up to the retry horizon.
    Retry,
    /// Will not heal by retrying: a dead letter at once, for an operator.
    Final,
}

impl SyncError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Provider(e) => e.is_transient(),
            SyncError::Store(e) => store_error_is_transient(e),
        }
    }

    pub fn not_before(&self) -> Option<OffsetDateTime> {
        match self {
            SyncError::Provider(e) => e.not_before(),
            SyncError::Store(_) => None,
        }
    }

    pub fn disposition(&self) -> Disposition {
        match self.not_before() {
            Some(until) => Disposition::Wait(until),
            None if self.is_transient() => Disposition::Retry,
            None => Disposition::Final,
        }
    }

    /// The local database failed (not the provider, not the object).
    pub fn is_database_outage(&self) -> bool {
        matches!(self, SyncError::Store(e) if is_store_outage(e))
    }
}

/// The database went away or failed in a way no one object explains.
pub fn is_store_outage(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(_) | StoreError::Database(_))
}

/// A store failure that a later try can get past: the database was away or
/// busy, or someone else changed the object meanwhile.
pub fn store_error_is_transient(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Conflict { .. }
            | StoreError::Retry(_)
            | StoreError::Busy(_)
            | StoreError::Unavailable(_)
            | StoreError::Database(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_what_retrying_can_do() {
        let rejected = |status| {
            SyncError::from(ProviderError::Rejected {
                request: "PATCH /x/".into(),
                status,
                message: "no".into(),
                code: None,
            })
        };
        assert_eq!(rejected(400).disposition(), Disposition::Final);
        assert_eq!(rejected(422).disposition(), Disposition::Final);
        assert_eq!(rejected(408).disposition(), Disposition::Retry);
        let down = ProviderError::Unavailable { request: "GET /x/".into(), status: 503, message: String::new() };
        assert_eq!(SyncError::from(down).disposition(), Disposition::Retry);
        let refused = ProviderError::Network { request: "GET /x/".into(), detail: "could not connect".into() };
        assert_eq!(SyncError::from(refused).disposition(), Disposition::Retry);
        let denied = ProviderError::Unauthorized { request: "GET /x/".into(), status: 401 };
        assert_eq!(SyncError::from(denied).disposition(), Disposition::Final);
        let until = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(SyncError::from(ProviderError::RateLimited { until }).disposition(), Disposition::Wait(until));
        let gone = SyncError::from(StoreError::Unavailable("connection refused".into()));
        assert_eq!(gone.disposition(), Disposition::Retry);
        assert!(gone.is_database_outage());
        assert_eq!(SyncError::from(StoreError::invalid("bad name")).disposition(), Disposition::Final);
    }

    #[test]
    fn a_provider_error_names_its_request() {
        let error = ProviderError::NotFound { request: "GET /api/v1/x/work-items/".into(), status: 404 };
        assert_eq!(error.to_string(), "not found: HTTP 404 (GET /api/v1/x/work-items/)");
        let error = ProviderError::Rejected {
            request: "POST /api/v1/x/cycles/".into(),
            status: 400,
            message: "Project ID is required".into(),
            code: None,
        };
        assert_eq!(error.to_string(), "rejected with HTTP 400: Project ID is required (POST /api/v1/x/cycles/)");
    }
}
