//! Real PostgreSQL for the tests: each test gets its own database, created on
//! the server at CALLAUTH_TEST_PG_URL (default the local one, trust auth),
//! migrated, and dropped when the test ends. Databases left behind by a test
//! process that died are dropped by the next run.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn admin_url() -> String {
    std::env::var("CALLAUTH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    match admin.rfind('/') {
        Some(i) => format!("{}/{db}", &admin[..i]),
        None => format!("{admin}/{db}"),
    }
}

pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for the settlement tests ({}): {e}",
                    admin_url()
                )
            });
        // Drop what dead test processes left.
        let old: Vec<String> = sqlx::query_scalar(
            "select datname from pg_database where datname like 'callauth_test_%'",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        for db in old {
            let pid: Option<u32> = db.split('_').nth(2).and_then(|p| p.parse().ok());
            if let Some(pid) = pid {
                if pid != std::process::id()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = admin
                        .execute(AssertSqlSafe(format!(
                            "drop database if exists \"{db}\" with (force)"
                        )))
                        .await;
                }
            }
        }
        let name = format!(
            "callauth_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .execute(AssertSqlSafe(format!("create database \"{name}\"")))
            .await
            .unwrap();
        let url = url_for(&name);
        let pool = callauth::settlement::context::connect(&url, 8)
            .await
            .unwrap();
        callauth::settlement::context::migrate(&pool).await.unwrap();
        TestDb { pool, name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop runs outside async: use a small runtime on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                pool.close().await;
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ = admin
                        .execute(AssertSqlSafe(format!(
                            "drop database if exists \"{name}\" with (force)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}
