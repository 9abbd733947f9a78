//! Metrics wiring: the Prometheus registry (`care-telemetry`) seen by the HTTP layer as
//! its observer, and an audit log decorator that counts appended events.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use care_access_audit::{AuditEvent, ChainHead, ChainedEvent};
use care_application::{AuditError, AuditLog};
use care_kernel::{PersonId, Timestamp};
use care_telemetry::Metrics;

/// The HTTP observer over the Prometheus registry.
#[derive(Clone)]
pub struct PrometheusObserver(pub Metrics);

impl care_http::Observer for PrometheusObserver {
    fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.0.observe_request(method, route, status, elapsed);
    }
    fn refusal(&self, reason: &str) {
        self.0.refusal(reason);
    }
    fn sign_in(&self, outcome: &str) {
        self.0.sign_in(outcome);
    }
    fn render(&self) -> Option<String> {
        Some(self.0.render())
    }
}

/// Counts durable appends to the audit chain.
struct CountingAudit {
    inner: Arc<dyn AuditLog>,
    metrics: Metrics,
}

/// Wraps an audit log so that every appended event is counted.
pub fn counting_audit(inner: Arc<dyn AuditLog>, metrics: Metrics) -> Arc<dyn AuditLog> {
    Arc::new(CountingAudit { inner, metrics })
}

#[async_trait]
impl AuditLog for CountingAudit {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<ChainedEvent>, AuditError> {
        let chained = self.inner.append(events).await?;
        // One per durable append (a read and all the events it wrote), not per event: a
        // search writes an event for every candidate, hidden ones included, and a count
        // of those would tell anyone who can read the metrics that a hidden person exists.
        self.metrics.audit_appended(1);
        Ok(chained)
    }
    async fn head(&self) -> Result<ChainHead, AuditError> {
        self.inner.head().await
    }
    async fn read(&self, from: u64, limit: usize) -> Result<Vec<ChainedEvent>, AuditError> {
        self.inner.read(from, limit).await
    }
    async fn for_person(
        &self,
        person: PersonId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        self.inner.for_person(person, from, to).await
    }
}
