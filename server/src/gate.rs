//! Concurrency bounds for expensive endpoints: a request beyond the bound is answered 503 with a
//! body and Retry-After at once, never queued without limit.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `max` requests of one endpoint at once.
#[derive(Debug, Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
    what: &'static str,
}

impl Gate {
    /// A bound of `max` concurrent requests for the endpoint named `what` (as errors name it).
    pub fn new(what: &'static str, max: usize) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(max)),
            max,
            what,
        }
    }

    /// A slot, held until the permit is dropped (keep it in the response body's stream), or the
    /// 503 to answer.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Response> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            crate::limit::STATS.busy.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, "1"),
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                ],
                format!(
                    "{} is busy: {} requests are being answered (the limit); retry in a second\n",
                    self.what, self.max
                ),
            )
                .into_response()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_bound_is_503_with_retry_after_until_a_slot_frees() {
        let gate = Gate::new("/federate", 2);
        let a = gate.enter().unwrap();
        let _b = gate.enter().unwrap();
        let refused = gate.enter().unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        drop(a);
        assert!(gate.enter().is_ok());
    }
}
