//! End-to-end gRPC tests (tests/e2e_suite) against every store backend.

#[path = "common/mod.rs"]
mod common;
#[macro_use]
mod e2e_suite;

mod memory {
    use callauth::store::memory::MemoryStore;

    async fn fresh() -> MemoryStore {
        MemoryStore::new(callauth::store::StorePolicy::default())
    }

    crate::e2e_suite!(fresh());
}

mod redis_single {
    async fn fresh() -> callauth::store::redis::RedisStore {
        crate::common::redis::single_store(callauth::store::StorePolicy::default()).await
    }

    crate::e2e_suite!(fresh());
}

mod redis_cluster {
    async fn fresh() -> callauth::store::redis::RedisStore {
        crate::common::redis::cluster_store(callauth::store::StorePolicy::default()).await
    }

    crate::e2e_suite!(fresh());
}
