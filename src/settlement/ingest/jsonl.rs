//! Commits the events of an embedded gateway's JSON-lines outbox file
//! (`callauth-gateway --outbox-jsonl FILE`) to the ledger: settlement for a
//! laptop or a single-node trial without Redis. Each line is one event in its
//! proto3 JSON form; events are committed in batches, once per event id, so
//! the same file (or a file that grew) can be ingested again safely.

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::domain::Event;
use crate::settlement::context::{Settlement, SettlementError, SettlementResult};
use crate::settlement::ingest::{commit_batch, Delivered};
use crate::settlement::sync::projector;
use crate::store::Store;

#[derive(Clone, Debug, Default, Serialize)]
pub struct JsonlReport {
    pub lines: usize,
    pub committed: usize,
    pub duplicates: usize,
}

pub async fn ingest_file<S: Store>(
    s: &Settlement<S>,
    path: &Path,
    batch: usize,
) -> SettlementResult<JsonlReport> {
    let file = std::fs::File::open(path)
        .map_err(|e| SettlementError::Invalid(format!("cannot open {}: {e}", path.display())))?;
    let mut report = JsonlReport::default();
    let mut pending: Vec<Delivered> = Vec::with_capacity(batch);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| {
            SettlementError::Invalid(format!("{}: line {}: {e}", path.display(), i + 1))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let event = Event::from_json(&line).map_err(|e| {
            SettlementError::Invalid(format!("{}: line {}: {e}", path.display(), i + 1))
        })?;
        report.lines += 1;
        pending.push(Delivered {
            partition: event.partition,
            stream_id: format!("jsonl:{}", i + 1),
            event,
        });
        if pending.len() >= batch {
            commit(s, &mut pending, &mut report).await?;
        }
    }
    commit(s, &mut pending, &mut report).await?;
    projector::flush(s).await?;
    Ok(report)
}

async fn commit<S: Store>(
    s: &Settlement<S>,
    pending: &mut Vec<Delivered>,
    report: &mut JsonlReport,
) -> SettlementResult<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut tx = s.pool.begin().await?;
    let out = commit_batch(&mut tx, &s.policy, pending, s.today(), s.now()).await?;
    tx.commit().await?;
    report.committed += out.committed;
    report.duplicates += out.duplicates;
    pending.clear();
    Ok(())
}
