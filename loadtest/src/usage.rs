//! Usage records over the bidirectional `Usage.Report` stream, as a merchant
//! sends them: one long-lived stream per connection per merchant token, many
//! calls' records in flight on it, each acknowledgement matched to its record
//! by `record_id`.
//!
//! When a stream ends (an error, or the server closing the connection after
//! its maximum age), every record still waiting is failed with the status and
//! the next record opens a new stream. The caller may resend a failed record:
//! the gateway applies a record once per call, so a resend answers DUPLICATE
//! with the original charge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use callauth::pb;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::Status;

use crate::target::Token;

/// Records queued per stream before `send` waits (a bound, like everything).
const STREAM_QUEUE: usize = 1024;

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Result<pb::UsageAck, Status>>>>>;

struct Live {
    tx: mpsc::Sender<pb::UsageRecord>,
    waiters: Waiters,
    alive: Arc<AtomicBool>,
}

/// One merchant's usage stream on one connection.
pub struct UsageStream {
    client: pb::usage_client::UsageClient<Channel>,
    token: Token,
    live: tokio::sync::Mutex<Option<Live>>,
}

fn fail_all(waiters: &Waiters, status: &Status) {
    let drained: Vec<_> = waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for (_, w) in drained {
        let _ = w.send(Err(status.clone()));
    }
}

impl UsageStream {
    pub fn new(channel: &Channel, token: Token) -> UsageStream {
        UsageStream {
            client: pb::usage_client::UsageClient::new(channel.clone()),
            token,
            live: tokio::sync::Mutex::new(None),
        }
    }

    async fn open(&self) -> Result<Live, Status> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut inbound = self
            .client
            .clone()
            .report(self.token.request(outbound))
            .await?
            .into_inner();
        let waiters: Waiters = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        {
            let (waiters, alive) = (waiters.clone(), alive.clone());
            tokio::spawn(async move {
                let end = loop {
                    match inbound.message().await {
                        Ok(Some(ack)) => {
                            let w = waiters
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&ack.record_id);
                            if let Some(w) = w {
                                let _ = w.send(Ok(ack));
                            }
                        }
                        Ok(None) => break Status::unavailable("usage stream ended by the server"),
                        Err(status) => break status,
                    }
                };
                alive.store(false, Ordering::Relaxed);
                fail_all(&waiters, &end);
            });
        }
        Ok(Live { tx, waiters, alive })
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send(&self, record: pb::UsageRecord) -> Result<pb::UsageAck, Status> {
        let (tx, waiters, ack) = {
            let mut live = self.live.lock().await;
            if !live
                .as_ref()
                .is_some_and(|l| l.alive.load(Ordering::Relaxed))
            {
                *live = Some(self.open().await?);
            }
            let l = live.as_ref().expect("opened above");
            let (ack_tx, ack_rx) = oneshot::channel();
            l.waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(record.record_id.clone(), ack_tx);
            // The reader marks the stream dead before failing its waiters: a
            // waiter added after that would never be answered.
            if !l.alive.load(Ordering::Relaxed) {
                l.waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&record.record_id);
                return Err(Status::unavailable("usage stream ended"));
            }
            (l.tx.clone(), l.waiters.clone(), ack_rx)
        };
        let record_id = record.record_id.clone();
        if tx.send(record).await.is_err() {
            waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&record_id);
            return Err(Status::unavailable("usage stream closed"));
        }
        ack.await
            .unwrap_or_else(|_| Err(Status::unavailable("usage stream dropped the record")))
    }
}
