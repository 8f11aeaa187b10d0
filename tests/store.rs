//! The shared store suite (tests/suite) against every backend.

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
