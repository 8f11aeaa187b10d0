//! Consumes the partitions' event streams into the ledger (DESIGN invariant 6).
//!
//! One consumer group (`settlement`) per stream; each worker replica is one
//! consumer and owns the partitions `p` with `p % replica_count ==
//! replica_index`, so a number's events are committed in order. A batch is
//! committed to PostgreSQL **before** it is acknowledged (`XACK`): a crash
//! between the two redelivers the batch, and `ingest::commit_batch` finds the
//! event ids already committed — a harmless redelivery, never a duplicate.
//!
//! At start, and whenever it has some, a consumer reads its own pending
//! entries first (`XREADGROUP … 0`). Entries a dead consumer left pending are
//! taken over with `XAUTOCLAIM` after `claim_idle`. An event that cannot be
//! committed (it does not parse, or the database refuses it) is retried up to
//! `max_deliveries` times and then moved to the partition's dead-letter
//! stream (`…:events:dead`) and the `dead_letters` table, and counted.
//! Failures that are the database being unreachable are not counted against
//! an event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::domain::Event;
use crate::metrics as m;
use crate::settlement::context::{Settlement, SettlementError, SettlementResult};
use crate::settlement::ingest::{commit_batch, BatchOutcome, Delivered};
use crate::store::redis::streams::{ReadFrom, StreamEntry, SETTLEMENT_GROUP};
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};

/// The consumer group: the stream protocol's (`store::redis::streams`).
pub const GROUP: &str = SETTLEMENT_GROUP;

/// Consumers that have not read for this long and hold nothing are removed
/// from the group (`prune_consumers`).
pub const PRUNE_IDLE: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub consumer: String,
    pub partitions: Vec<u32>,
    pub batch: usize,
    pub max_deliveries: u32,
    pub claim_idle: Duration,
    pub poll_interval: Duration,
    /// Partitions committed at the same time, each on its own database
    /// connection (a partition is never polled twice at once, so a number's
    /// events stay in order).
    pub concurrency: usize,
}

impl ConsumerConfig {
    /// The partitions replica `index` of `count` owns.
    pub fn owned(partitions: u32, index: u32, count: u32) -> Vec<u32> {
        (0..partitions)
            .filter(|p| p % count.max(1) == index)
            .collect()
    }
}

pub struct StreamConsumer<S: Store> {
    settlement: Arc<Settlement<S>>,
    redis: RedisStore,
    cfg: ConsumerConfig,
    /// Failures per stream entry (by "partition/id"), for dead-lettering.
    failures: Mutex<HashMap<String, u32>>,
    /// Test hook: when set, the consumer stops right after a commit, before
    /// acknowledging (a simulated crash).
    pub crash_after_commit: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Settlement(#[from] SettlementError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("simulated crash between commit and acknowledgement")]
    SimulatedCrash,
    #[error(
        "the running settlement workers ({workers}) have not caught up within {waited_s} s; \
         run this again when callauth_settlement_consumer_lag is near zero"
    )]
    WorkersBehind { workers: String, waited_s: u64 },
}

fn is_connectivity(e: &SettlementError) -> bool {
    match e {
        SettlementError::Db(db) => matches!(
            db,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
        ),
        SettlementError::Ledger(crate::settlement::ledger::LedgerError::Db(db)) => {
            matches!(
                db,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            )
        }
        SettlementError::Store(s) => s.is_transient(),
        _ => false,
    }
}

impl<S: Store> StreamConsumer<S> {
    pub fn new(
        settlement: Arc<Settlement<S>>,
        redis: RedisStore,
        cfg: ConsumerConfig,
    ) -> StreamConsumer<S> {
        StreamConsumer {
            settlement,
            redis,
            cfg,
            failures: Mutex::new(HashMap::new()),
            crash_after_commit: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Creates the consumer group on every owned stream (from the beginning
    /// of the stream, so nothing written before the first start is missed).
    pub async fn ensure_groups(&self) -> Result<(), ConsumeError> {
        for &p in &self.cfg.partitions {
            self.redis.create_group(p, GROUP).await?;
        }
        Ok(())
    }

    /// Reads and commits one batch of partition `p`: the consumer's own
    /// pending entries first, then new ones. Returns the entries handled.
    pub async fn poll_partition(&self, p: u32) -> Result<usize, ConsumeError> {
        let pending = self.read(p, ReadFrom::Pending).await?;
        let (entries, redelivery) = if pending.is_empty() {
            (self.read(p, ReadFrom::New).await?, false)
        } else {
            (pending, true)
        };
        if entries.is_empty() {
            return Ok(0);
        }
        if redelivery {
            metrics::counter!(m::SETTLEMENT_REDELIVERIES_TOTAL).increment(entries.len() as u64);
        }
        self.handle(p, entries).await
    }

    async fn read(&self, p: u32, from: ReadFrom) -> Result<Vec<StreamEntry>, ConsumeError> {
        Ok(self
            .redis
            .read_group(p, GROUP, &self.cfg.consumer, from, self.cfg.batch)
            .await?)
    }

    async fn handle(&self, p: u32, entries: Vec<StreamEntry>) -> Result<usize, ConsumeError> {
        let n = entries.len();
        let mut batch = Vec::with_capacity(n);
        let mut ack = Vec::with_capacity(n);
        for e in entries {
            match e.payload.as_deref().map(Event::from_json) {
                // Trimmed while pending: nothing left to commit.
                None => ack.push(e.id),
                Some(Ok(event)) => batch.push(Delivered {
                    partition: p,
                    stream_id: e.id,
                    event,
                }),
                Some(Err(err)) => {
                    self.dead_letter(
                        p,
                        &e.id,
                        e.payload.as_deref().unwrap_or(""),
                        &format!("unreadable event: {err}"),
                        1,
                    )
                    .await?;
                }
            }
        }
        if !batch.is_empty() {
            match self.commit(&batch).await {
                Ok(outcome) => {
                    self.count(&outcome);
                    if self.crash_after_commit.load(Ordering::SeqCst) {
                        return Err(ConsumeError::SimulatedCrash);
                    }
                    ack.extend(batch.iter().map(|d| d.stream_id.clone()));
                }
                Err(e) if is_connectivity(&e) => return Err(e.into()),
                Err(e) => {
                    // Find the poison event: commit one by one.
                    tracing::warn!(partition = p, error = %e, "batch failed; retrying its events one by one");
                    for d in &batch {
                        match self.commit(std::slice::from_ref(d)).await {
                            Ok(outcome) => {
                                self.count(&outcome);
                                ack.push(d.stream_id.clone());
                            }
                            Err(e) if is_connectivity(&e) => return Err(e.into()),
                            Err(e) => {
                                let key = format!("{p}/{}", d.stream_id);
                                let tries = {
                                    let mut f = self.failures.lock().expect("failures lock");
                                    let t = f.entry(key.clone()).or_insert(0);
                                    *t += 1;
                                    *t
                                };
                                if tries >= self.cfg.max_deliveries {
                                    self.dead_letter(
                                        p,
                                        &d.stream_id,
                                        &d.event.to_json(),
                                        &e.to_string(),
                                        tries,
                                    )
                                    .await?;
                                    self.failures.lock().expect("failures lock").remove(&key);
                                } else {
                                    tracing::warn!(partition = p, id = %d.stream_id, tries, error = %e, "event not committed; will retry");
                                }
                            }
                        }
                    }
                }
            }
        }
        self.redis.ack(p, GROUP, &ack).await?;
        Ok(n)
    }

    async fn commit(&self, batch: &[Delivered]) -> SettlementResult<BatchOutcome> {
        let start = Instant::now();
        let s = &self.settlement;
        let mut tx = s.pool.begin().await?;
        let outcome = commit_batch(&mut tx, &s.policy, batch, s.today(), s.now()).await?;
        tx.commit().await?;
        metrics::histogram!(m::SETTLEMENT_BATCH_DURATION_SECONDS)
            .record(start.elapsed().as_secs_f64());
        Ok(outcome)
    }

    fn count(&self, o: &BatchOutcome) {
        metrics::counter!(m::SETTLEMENT_EVENTS_COMMITTED_TOTAL).increment(o.committed as u64);
        metrics::counter!(m::SETTLEMENT_EVENTS_DUPLICATE_TOTAL).increment(o.duplicates as u64);
        if o.invoices_issued > 0 {
            metrics::counter!(m::SETTLEMENT_INVOICES_ISSUED_TOTAL, "kind" => "threshold")
                .increment(o.invoices_issued as u64);
        }
    }

    async fn dead_letter(
        &self,
        p: u32,
        id: &str,
        payload: &str,
        error: &str,
        deliveries: u32,
    ) -> Result<(), ConsumeError> {
        tracing::error!(
            partition = p,
            id,
            error,
            "event moved to the dead-letter stream"
        );
        // The ledger's record first (idempotent), then the stream's move
        // and acknowledgement in one transaction.
        sqlx::query(
            "insert into dead_letters (partition, stream_id, deliveries, payload, error) values ($1, $2, $3, $4, $5)
             on conflict (partition, stream_id) do nothing",
        )
        .bind(p as i32)
        .bind(id)
        .bind(deliveries as i32)
        .bind(payload)
        .bind(error)
        .execute(&self.settlement.pool)
        .await
        .map_err(SettlementError::from)?;
        self.redis.dead_letter(p, GROUP, id, payload, error).await?;
        metrics::counter!(m::SETTLEMENT_DEAD_LETTERS_TOTAL).increment(1);
        Ok(())
    }

    /// Takes over entries that another (dead) consumer left pending longer
    /// than `claim_idle`, and commits them.
    pub async fn reclaim(&self, p: u32) -> Result<usize, ConsumeError> {
        let entries = self
            .redis
            .claim_idle(
                p,
                GROUP,
                &self.cfg.consumer,
                self.cfg.claim_idle,
                self.cfg.batch,
            )
            .await?;
        if entries.is_empty() {
            return Ok(0);
        }
        tracing::info!(
            partition = p,
            entries = entries.len(),
            "claimed entries from an idle consumer"
        );
        self.handle(p, entries).await
    }

    /// Removes from the group the consumers of partition `p` that hold no
    /// pending entries and have not read for `idle` — the names of pods that
    /// are gone (their pending entries were claimed by `reclaim` long
    /// before). Returns the number removed.
    pub async fn prune_consumers(&self, p: u32, idle: Duration) -> Result<usize, ConsumeError> {
        let removed = self
            .redis
            .prune_consumers(p, GROUP, &self.cfg.consumer, idle)
            .await?;
        if removed > 0 {
            tracing::info!(
                partition = p,
                removed,
                "removed consumers that are gone from the group"
            );
        }
        Ok(removed)
    }

    /// Exports the group's lag per owned partition.
    pub async fn report_lag(&self) {
        for &p in &self.cfg.partitions {
            if let Ok(groups) = self.redis.stream_groups(p).await {
                for g in groups.iter().filter(|g| g.name == GROUP) {
                    let lag = g.lag.unwrap_or(0) + g.pending;
                    metrics::gauge!(m::SETTLEMENT_CONSUMER_LAG_EVENTS, "partition" => p.to_string()).set(lag as f64);
                }
            }
        }
    }

    /// True when every owned partition has nothing undelivered or pending.
    pub async fn caught_up(&self) -> Result<bool, ConsumeError> {
        for &p in &self.cfg.partitions {
            let groups = self
                .redis
                .stream_groups(p)
                .await
                .map_err(SettlementError::from)?;
            if groups
                .iter()
                .any(|g| g.name == GROUP && (g.pending > 0 || g.lag.unwrap_or(0) > 0))
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The other consumers of the owned partitions that read within
    /// `within`: a running worker polls at least every `poll_interval`, so a
    /// consumer idle for longer than a few intervals is not running.
    pub async fn live_consumers(&self, within: Duration) -> Result<Vec<String>, ConsumeError> {
        let mut live = std::collections::BTreeSet::new();
        for &p in &self.cfg.partitions {
            let consumers = self
                .redis
                .stream_consumers(p, GROUP)
                .await
                .map_err(SettlementError::from)?;
            live.extend(
                consumers
                    .into_iter()
                    .filter(|c| {
                        c.name != self.cfg.consumer && u128::from(c.idle_ms) < within.as_millis()
                    })
                    .map(|c| c.name),
            );
        }
        Ok(live.into_iter().collect())
    }

    /// What `reconcile`, `run-once` and the worker's daily run do before
    /// they compare with or book into the ledger. When no worker is
    /// consuming the partitions, they commit every pending event themselves
    /// (`drain`). When workers are running, they wait — up to `wait` — until
    /// the workers have committed every event that was in the streams when
    /// the wait began, instead of taking a partition's next events out of
    /// their hands, which could commit a number's events out of order.
    /// Waiting for those events only (not for empty streams) lets the wait
    /// end while calls keep coming in.
    pub async fn drain_or_wait(
        &self,
        live_within: Duration,
        wait: Duration,
    ) -> Result<usize, ConsumeError> {
        let workers = self.live_consumers(live_within).await?;
        if workers.is_empty() {
            return self.drain().await;
        }
        tracing::info!(workers = ?workers, "settlement workers are running; waiting for them to catch up");
        let marks = self.stream_marks().await?;
        let deadline = Instant::now() + wait;
        loop {
            if self.committed_through(&marks).await? {
                return Ok(0);
            }
            if Instant::now() >= deadline {
                return Err(ConsumeError::WorkersBehind {
                    workers: workers.join(", "),
                    waited_s: wait.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The id of the last entry of each owned partition's stream now (None
    /// for an empty or missing stream).
    async fn stream_marks(&self) -> Result<Vec<(u32, Option<(u64, u64)>)>, ConsumeError> {
        let mut marks = Vec::with_capacity(self.cfg.partitions.len());
        for &p in &self.cfg.partitions {
            marks.push((p, self.redis.last_entry_id(p).await?));
        }
        Ok(marks)
    }

    /// True when the group has delivered every owned partition's entries up
    /// to its mark and none of them is still pending (not yet committed).
    async fn committed_through(
        &self,
        marks: &[(u32, Option<(u64, u64)>)],
    ) -> Result<bool, ConsumeError> {
        for &(p, mark) in marks {
            let Some(mark) = mark else { continue };
            let groups = self
                .redis
                .stream_groups(p)
                .await
                .map_err(SettlementError::from)?;
            let Some(group) = groups.iter().find(|g| g.name == GROUP) else {
                return Ok(false);
            };
            let delivered = group.last_delivered >= mark;
            let nothing_old_pending = group.oldest_pending.is_none_or(|oldest| oldest > mark);
            if !(delivered && nothing_old_pending) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs until `shutdown` flips: polls every owned partition, backing off
    /// when idle, reclaims from dead consumers and reports lag every 10 s.
    pub async fn run(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ConsumeError> {
        self.ensure_groups().await?;
        let mut last_maintenance = Instant::now() - Duration::from_secs(3600);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let (handled, errors) = self.poll_all().await;
            for (p, e) in &errors {
                if matches!(e, ConsumeError::SimulatedCrash) {
                    return Err(ConsumeError::SimulatedCrash);
                }
                tracing::warn!(partition = p, error = %e, "consuming failed; will retry");
            }
            if !errors.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if last_maintenance.elapsed() >= Duration::from_secs(10) {
                for &p in &self.cfg.partitions {
                    if let Err(e) = self.reclaim(p).await {
                        tracing::warn!(partition = p, error = %e, "reclaiming failed");
                    }
                    if let Err(e) = self.prune_consumers(p, PRUNE_IDLE).await {
                        tracing::warn!(partition = p, error = %e, "pruning consumers failed");
                    }
                }
                self.report_lag().await;
                last_maintenance = Instant::now();
            }
            if handled == 0 {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                }
            }
        }
    }

    /// Polls every owned partition once, `concurrency` at a time. Returns the
    /// entries handled and the partitions that failed.
    async fn poll_all(&self) -> (usize, Vec<(u32, ConsumeError)>) {
        let results: Vec<(u32, Result<usize, ConsumeError>)> =
            stream::iter(self.cfg.partitions.iter().copied())
                .map(|p| async move { (p, self.poll_partition(p).await) })
                .buffer_unordered(self.cfg.concurrency.max(1))
                .collect()
                .await;
        let mut handled = 0;
        let mut errors = Vec::new();
        for (p, r) in results {
            match r {
                Ok(n) => handled += n,
                Err(e) => errors.push((p, e)),
            }
        }
        (handled, errors)
    }

    /// Consumes until every owned partition is caught up (tests, `run-once`).
    pub async fn drain(&self) -> Result<usize, ConsumeError> {
        self.ensure_groups().await?;
        let mut total = 0;
        loop {
            let (handled, errors) = self.poll_all().await;
            if let Some((_, e)) = errors.into_iter().next() {
                return Err(e);
            }
            total += handled;
            if handled == 0 {
                return Ok(total);
            }
        }
    }
}
