//! The Secrets the metadata service hands out, read through a cache: a
//! guest's boot asks for its user data and keys in a handful of requests,
//! and a workload asking in a loop must not become a stream of reads at
//! the API server. Reads expire soon, so an edited Secret is served within
//! seconds; the cache is bounded by the bytes it holds; and callers asking
//! for the same Secret at once wait on one read.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::{Directory, SecretData};

/// How long a read is served from the cache, whatever it found.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// The most the cache holds, in bytes of Secret data and names.
const CAPACITY: u64 = 64 << 20;

type Read = Option<Arc<SecretData>>;

pub struct Secrets {
    directory: Arc<dyn Directory>,
    cache: Cache<(String, String), Read>,
}

impl Secrets {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        let cache = Cache::builder()
            .max_capacity(CAPACITY)
            .weigher(|(namespace, name): &(String, String), data: &Read| {
                let bytes: usize = (data.iter().flat_map(|d| d.iter()))
                    .map(|(key, value)| key.len() + value.len())
                    .sum();
                u32::try_from(namespace.len() + name.len() + bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(FRESH_FOR)
            .build();
        Self { directory, cache }
    }

    /// The Secret `name` in `namespace`: its data, `None` when there is no
    /// such Secret, or why it could not be read (a failed read is not kept).
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Read, Arc<String>> {
        let key = (namespace.to_string(), name.to_string());
        let read = async {
            let data = self.directory.secret(namespace, name).await?;
            Ok::<_, String>(data.map(Arc::new))
        };
        self.cache.try_get_with(key, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SecretRead;
    use neutrino_core::metadata::{Instance, Listener, Refusal};
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its reads, each a moment long.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Directory for Counting {
        fn caller(&self, _: &Listener, _: IpAddr) -> Result<Instance, Refusal> {
            unreachable!("the cache reads Secrets only")
        }
        fn secret<'a>(&'a self, _: &'a str, name: &'a str) -> SecretRead<'a> {
            Box::pin(async move {
                self.0.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok((name != "absent").then(|| [("userData".into(), b"#!".to_vec())].into()))
            })
        }
    }

    #[tokio::test]
    async fn callers_at_once_share_one_read_and_later_ones_the_cache() {
        let directory = Arc::new(Counting::default());
        let secrets = Secrets::new(directory.clone());
        let reads = (0..50).map(|_| secrets.get("tenant", "boot"));
        let got = futures::future::join_all(reads).await;
        assert!(got.iter().all(|r| r.as_ref().unwrap().is_some()));
        assert!(secrets.get("tenant", "absent").await.unwrap().is_none());
        assert!(secrets.get("tenant", "absent").await.unwrap().is_none());
        assert_eq!(directory.0.load(Ordering::SeqCst), 2);
    }
}
