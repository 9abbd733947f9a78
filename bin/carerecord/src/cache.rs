//! A read-through cache of the feed-source list for the server: every record summary
//! names its sources with their freshness, and the list changes only when a feed
//! message arrives. Served for at most [`SOURCES_TTL`]: feed messages write their
//! sources' counters inside their unit of work, past this cache (writing through it
//! would leave the unit's transaction), so a summary's freshness may lag a feed by up to
//! the TTL, on this server as on others. A write through the cache itself (registering
//! a source) empties it at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use care_application::{RepoError, SourceInfo, SourceRegistry};
use care_kernel::{SourceId, Timestamp};

/// How long a listed set of sources is served from memory.
pub const SOURCES_TTL: Duration = Duration::from_secs(1);

struct Cached {
    inner: Arc<dyn SourceRegistry>,
    list: Mutex<Option<(Instant, Vec<SourceInfo>)>>,
}

/// Wraps a source registry with the cache.
pub fn cached_sources(inner: Arc<dyn SourceRegistry>) -> Arc<dyn SourceRegistry> {
    Arc::new(Cached {
        inner,
        list: Mutex::new(None),
    })
}

impl Cached {
    fn forget(&self) {
        *self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[async_trait]
impl SourceRegistry for Cached {
    async fn get(&self, id: &SourceId) -> Result<Option<SourceInfo>, RepoError> {
        self.inner.get(id).await
    }

    async fn list(&self) -> Result<Vec<SourceInfo>, RepoError> {
        {
            let cached = self
                .list
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, list)) = cached.as_ref()
                && at.elapsed() < SOURCES_TTL
            {
                return Ok(list.clone());
            }
        }
        let list = self.inner.list().await?;
        *self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), list.clone()));
        Ok(list)
    }

    async fn register(&self, info: &SourceInfo) -> Result<(), RepoError> {
        let done = self.inner.register(info).await;
        self.forget();
        done
    }

    async fn record_activity(
        &self,
        id: &SourceId,
        at: Timestamp,
        outcome: care_application::MessageOutcome,
    ) -> Result<(), RepoError> {
        let done = self.inner.record_activity(id, at, outcome).await;
        self.forget();
        done
    }
}
