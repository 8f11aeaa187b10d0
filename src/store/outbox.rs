//! The embedded store's outbox: a bounded ring of recent events per
//! partition, and optionally a JSON-lines file with every event.
//!
//! Bounded-loss by design, like the Redis projection it stands in for: the
//! ring keeps the newest `capacity` events per partition (older ones are
//! dropped and counted), and the file writer runs on its own thread behind a
//! bounded channel so that disk latency never reaches a call; when the
//! channel is full the event is dropped from the file and counted. Each line
//! of the file is one event in its proto3 JSON form (see `domain::event`), so
//! `callauth-settlement` can ingest the file.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;

use crate::domain::Event;
use crate::metrics as m;

const FILE_QUEUE: usize = 65_536;

pub struct Outbox {
    partitions: Vec<Mutex<VecDeque<Event>>>,
    capacity: usize,
    dropped: AtomicU64,
    file: Option<SyncSender<String>>,
}

impl Outbox {
    /// `capacity` events are kept per partition.
    pub fn new(partitions: u32, capacity: usize) -> Outbox {
        Outbox {
            partitions: (0..partitions.max(1))
                .map(|_| Mutex::new(VecDeque::with_capacity(capacity.min(1024))))
                .collect(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            file: None,
        }
    }

    /// Also appends every event to `path` (created if missing, appended to otherwise).
    pub fn with_jsonl_file(mut self, path: &Path) -> std::io::Result<Outbox> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = sync_channel::<String>(FILE_QUEUE);
        let path_text = path.display().to_string();
        std::thread::Builder::new()
            .name("outbox-jsonl".into())
            .spawn(move || {
                let mut out = BufWriter::new(file);
                // Write what is queued, flush when the queue runs dry.
                while let Ok(first) = rx.recv() {
                    let mut line = first;
                    loop {
                        if let Err(e) = writeln!(out, "{line}") {
                            tracing::error!(path = %path_text, error = %e, "outbox file write failed");
                        }
                        match rx.try_recv() {
                            Ok(next) => line = next,
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = out.flush() {
                        tracing::error!(path = %path_text, error = %e, "outbox file flush failed");
                    }
                }
            })?;
        self.file = Some(tx);
        Ok(self)
    }

    pub fn append(&self, event: Event) {
        m::outbox_event(event.body.index(), event.body.label()).increment(1);
        if let Some(tx) = &self.file {
            match tx.try_send(event.to_json()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    crate::cached_counter!(m::OUTBOX_DROPPED_TOTAL, "sink" => "file").increment(1);
                }
            }
        }
        let p = event.partition as usize % self.partitions.len();
        let mut ring = self.partitions[p].lock().expect("outbox lock");
        if ring.len() == self.capacity {
            ring.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            crate::cached_counter!(m::OUTBOX_DROPPED_TOTAL, "sink" => "memory").increment(1);
        }
        ring.push_back(event);
    }

    /// Up to `max` newest events over all partitions, oldest first.
    pub fn recent(&self, max: usize) -> Vec<Event> {
        let mut all: Vec<Event> = self
            .partitions
            .iter()
            .flat_map(|p| {
                p.lock()
                    .expect("outbox lock")
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by_key(|e| e.at_ms);
        let skip = all.len().saturating_sub(max);
        all.split_off(skip)
    }

    pub fn lengths(&self) -> Vec<u64> {
        self.partitions
            .iter()
            .map(|p| p.lock().expect("outbox lock").len() as u64)
            .collect()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
