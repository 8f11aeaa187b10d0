//! The shared store suite (tests/suite) against every backend: the embedded
//! store, a real single-node Redis and a real 3-master Redis Cluster.

mod common;
#[macro_use]
mod suite;

mod memory {
    use callauth::store::memory::MemoryStore;

    async fn fresh() -> MemoryStore {
        MemoryStore::new(crate::common::policy())
    }

    crate::store_suite!(fresh());
}

mod redis_single {
    async fn fresh() -> callauth::store::redis::RedisStore {
        crate::common::redis::single_store(crate::common::policy()).await
    }

    crate::store_suite!(fresh());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_3_holds_are_still_served() {
        crate::suite::version_3_holds_are_still_served(fresh().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_4_holds_are_still_served() {
        crate::suite::version_4_holds_are_still_served(fresh().await).await;
    }
}

mod redis_cluster {
    async fn fresh() -> callauth::store::redis::RedisStore {
        crate::common::redis::cluster_store(crate::common::policy()).await
    }

    crate::store_suite!(fresh());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_3_holds_are_still_served() {
        crate::suite::version_3_holds_are_still_served(fresh().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_4_holds_are_still_served() {
        crate::suite::version_4_holds_are_still_served(fresh().await).await;
    }
}
