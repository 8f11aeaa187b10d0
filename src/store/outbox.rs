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
//!
//! The ring keeps a `consent_recorded` event — one per Authorize — as a
//! [`ConsentEntry`]: the call's shared identifiers (`Arc`s the hold, the call
//! index and the catalogue already hold) and its scalars, not a dozen owned
//! strings. Appending one allocates nothing, and dropping the oldest frees
//! nothing but reference counts; it becomes an [`Event`] only when read
//! ([`Outbox::recent`]) and is written to the file from borrowed fields
//! ([`ConsentEventRef`]), the same JSON either way. Issue 13.2: the owned
//! event's strings, allocated per call and freed cold ~10 000 calls later,
//! were 7 % of the gateway's CPU at saturation.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::domain::catalog::{Service, Terms};
use crate::domain::decision::Funding;
use crate::domain::event::{ids, ConsentEventRef, ConsentRecorded, ConsentRecordedRef, EventBody};
use crate::domain::{CallId, CodeId, Event, E164};
use crate::metrics as m;

const FILE_QUEUE: usize = 65_536;

/// A `consent_recorded` event as the embedded store keeps it (see the
/// module documentation); [`ConsentEntry::to_event`] is the event.
#[derive(Clone, Debug)]
pub struct ConsentEntry {
    pub partition: u32,
    /// The Authorize's time: the event's `at_ms` and `authorized_at_ms`.
    pub at_ms: i64,
    pub call_id: CallId,
    /// The payer (postpaid) or the caller of a prepaid call (None when withheld).
    pub number: Option<E164>,
    pub number_withheld: bool,
    /// The prepaid payer; its presence makes the funding prepaid.
    pub code_id: Option<CodeId>,
    /// The service (its number and merchant).
    pub service: Arc<Service>,
    /// The terms the caller accepted (id, tariff, reminder fee).
    pub terms: Arc<Terms>,
    pub age_confirmed: bool,
    pub own_number_confirmed: bool,
    pub terms_accepted: bool,
    pub step1_at_ms: i64,
    pub step2_at_ms: i64,
    pub ivr_client: Arc<str>,
    pub ivr_id: Arc<str>,
    pub line_ref: Arc<str>,
}

impl ConsentEntry {
    fn funding(&self) -> Funding {
        if self.code_id.is_some() {
            Funding::Prepaid
        } else {
            Funding::Postpaid
        }
    }

    fn event_id(&self) -> String {
        ids::consent(self.call_id.as_str())
    }

    /// The owned event: what the store appended, as every reader sees it.
    pub fn to_event(&self) -> Event {
        let tariff = &self.terms.tariff;
        Event {
            event_id: self.event_id(),
            at_ms: self.at_ms,
            partition: self.partition,
            body: EventBody::ConsentRecorded(ConsentRecorded {
                call_id: self.call_id.to_string(),
                number: self
                    .number
                    .as_ref()
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                number_withheld: self.number_withheld,
                service_number: self.service.number.as_str().to_string(),
                merchant_id: self.service.merchant_id.to_string(),
                funding: self.funding(),
                code_id: self
                    .code_id
                    .as_ref()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                terms_id: self.terms.terms_id.to_string(),
                price_per_minute_ore: tariff.price_per_minute.ore(),
                minimum_minutes: tariff.minimum_minutes,
                billing_step_seconds: tariff.billing_step_seconds,
                reminder_fee_ore: self.terms.reminder_fee.ore(),
                age_confirmed: self.age_confirmed,
                own_number_confirmed: self.own_number_confirmed,
                step1_at_ms: self.step1_at_ms,
                terms_accepted: self.terms_accepted,
                step2_at_ms: self.step2_at_ms,
                ivr_client: self.ivr_client.to_string(),
                ivr_id: self.ivr_id.to_string(),
                line_ref: self.line_ref.to_string(),
                authorized_at_ms: self.at_ms,
            }),
        }
    }

    /// The event's JSON, written from borrowed fields (the same text as
    /// `self.to_event().to_json()`).
    pub fn to_json(&self) -> String {
        let event_id = self.event_id();
        let tariff = &self.terms.tariff;
        ConsentEventRef {
            event_id: &event_id,
            at_ms: self.at_ms,
            partition: self.partition,
            consent_recorded: ConsentRecordedRef {
                call_id: self.call_id.as_str(),
                number: self.number.as_ref().map_or("", |n| n.as_str()),
                number_withheld: self.number_withheld,
                service_number: self.service.number.as_str(),
                merchant_id: self.service.merchant_id.as_str(),
                funding: self.funding(),
                code_id: self.code_id.as_ref().map_or("", |c| c.as_str()),
                terms_id: self.terms.terms_id.as_str(),
                price_per_minute_ore: tariff.price_per_minute.ore(),
                minimum_minutes: tariff.minimum_minutes,
                billing_step_seconds: tariff.billing_step_seconds,
                reminder_fee_ore: self.terms.reminder_fee.ore(),
                age_confirmed: self.age_confirmed,
                own_number_confirmed: self.own_number_confirmed,
                step1_at_ms: self.step1_at_ms,
                terms_accepted: self.terms_accepted,
                step2_at_ms: self.step2_at_ms,
                ivr_client: &self.ivr_client,
                ivr_id: &self.ivr_id,
                line_ref: &self.line_ref,
                authorized_at_ms: self.at_ms,
            },
        }
        .to_json()
    }
}

/// What the ring holds: a consent as a [`ConsentEntry`], any other event
/// (at most a few per call, and none on most Authorize answers) as itself.
#[derive(Clone, Debug)]
enum Entry {
    Consent(ConsentEntry),
    Event(Box<Event>),
}

impl Entry {
    fn at_ms(&self) -> i64 {
        match self {
            Entry::Consent(c) => c.at_ms,
            Entry::Event(e) => e.at_ms,
        }
    }

    fn to_event(&self) -> Event {
        match self {
            Entry::Consent(c) => c.to_event(),
            Entry::Event(e) => (**e).clone(),
        }
    }
}

pub struct Outbox {
    partitions: Vec<Mutex<VecDeque<Entry>>>,
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
            self.to_file(tx, event.to_json());
        }
        let p = event.partition;
        self.push(p, Entry::Event(Box::new(event)));
    }

    /// Appends a `consent_recorded` event (see [`ConsentEntry`]).
    pub fn append_consent(&self, consent: ConsentEntry) {
        const CONSENT: usize = 5;
        debug_assert_eq!(EventBody::LABELS[CONSENT], "consent_recorded");
        m::outbox_event(CONSENT, EventBody::LABELS[CONSENT]).increment(1);
        if let Some(tx) = &self.file {
            self.to_file(tx, consent.to_json());
        }
        let p = consent.partition;
        self.push(p, Entry::Consent(consent));
    }

    fn to_file(&self, tx: &SyncSender<String>, line: String) {
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                crate::cached_counter!(m::OUTBOX_DROPPED_TOTAL, "sink" => "file").increment(1);
            }
        }
    }

    fn push(&self, partition: u32, entry: Entry) {
        let p = partition as usize % self.partitions.len();
        // The oldest entry is dropped after the lock is released.
        let oldest = {
            let mut ring = self.partitions[p].lock().expect("outbox lock");
            let oldest = if ring.len() == self.capacity {
                ring.pop_front()
            } else {
                None
            };
            ring.push_back(entry);
            oldest
        };
        if oldest.is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            crate::cached_counter!(m::OUTBOX_DROPPED_TOTAL, "sink" => "memory").increment(1);
        }
    }

    /// Up to `max` newest events over all partitions, oldest first.
    pub fn recent(&self, max: usize) -> Vec<Event> {
        let mut all: Vec<Entry> = self
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
        all.sort_by_key(Entry::at_ms);
        let skip = all.len().saturating_sub(max);
        all[skip..].iter().map(Entry::to_event).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MerchantId, Money, Tariff, VatRate};

    fn entry(code: Option<&str>, number: Option<&str>) -> ConsentEntry {
        let svc = E164::parse("0900-100 10 10").unwrap();
        let terms = Arc::new(Terms {
            terms_id: Terms::make_id(&svc, 3),
            service_number: svc.clone(),
            service_name: "Tarotlinjen".into(),
            version: 3,
            tariff: Tariff::new(Money::ore_unchecked(2990), 60, 2).unwrap(),
            reminder_fee: Money::sek(60),
            vat: VatRate::STANDARD,
            created_at_ms: 0,
            announcements: Default::default(),
        });
        ConsentEntry {
            partition: 7,
            at_ms: 1_700_000_000_123,
            call_id: CallId::parse("ivr1:c-1").unwrap(),
            number: number.map(|n| E164::parse(n).unwrap()),
            number_withheld: number.is_none(),
            code_id: code.map(|c| serde_json::from_str(&format!("\"{c}\"")).unwrap()),
            service: Arc::new(Service {
                number: svc,
                merchant_id: MerchantId::parse("stjarnlinjen").unwrap(),
                name: "Tarotlinjen".into(),
                category: String::new(),
                active: true,
                terms: terms.clone(),
            }),
            terms,
            age_confirmed: true,
            own_number_confirmed: number.is_some(),
            terms_accepted: true,
            step1_at_ms: 1_700_000_000_001,
            step2_at_ms: 1_700_000_000_002,
            ivr_client: Arc::from("ivr-a"),
            ivr_id: Arc::from("nod \"é\""),
            line_ref: Arc::from(""),
        }
    }

    /// A kept consent is the event the store used to build, and its file
    /// line is that event's JSON.
    #[test]
    fn a_consent_entry_is_its_event() {
        let e = entry(None, Some("070-123 45 67"));
        let event = e.to_event();
        assert_eq!(event.event_id, "consent:ivr1:c-1");
        assert_eq!((event.at_ms, event.partition), (1_700_000_000_123, 7));
        let EventBody::ConsentRecorded(c) = &event.body else {
            panic!("not a consent: {event:?}")
        };
        assert_eq!(
            c,
            &ConsentRecorded {
                call_id: "ivr1:c-1".into(),
                number: "+46701234567".into(),
                number_withheld: false,
                service_number: "+469001001010".into(),
                merchant_id: "stjarnlinjen".into(),
                funding: Funding::Postpaid,
                code_id: String::new(),
                terms_id: "t-469001001010-3".into(),
                price_per_minute_ore: 2990,
                minimum_minutes: 2,
                billing_step_seconds: 60,
                reminder_fee_ore: 6000,
                age_confirmed: true,
                own_number_confirmed: true,
                step1_at_ms: 1_700_000_000_001,
                terms_accepted: true,
                step2_at_ms: 1_700_000_000_002,
                ivr_client: "ivr-a".into(),
                ivr_id: "nod \"é\"".into(),
                line_ref: String::new(),
                authorized_at_ms: 1_700_000_000_123,
            }
        );
        assert_eq!(e.to_json(), event.to_json());
        let prepaid = entry(Some("ab12"), None);
        let event = prepaid.to_event();
        assert_eq!(prepaid.to_json(), event.to_json());
        assert_eq!(Event::from_json(&prepaid.to_json()).unwrap(), event);
        let EventBody::ConsentRecorded(c) = &event.body else {
            panic!("not a consent: {event:?}")
        };
        assert_eq!(
            (c.funding, c.code_id.as_str(), c.number.as_str()),
            (Funding::Prepaid, "ab12", "")
        );
    }

    /// The ring drops its oldest entries, consents and other events alike,
    /// and reads back oldest first.
    #[test]
    fn the_ring_keeps_the_newest_of_both_kinds() {
        let outbox = Outbox::new(1, 2);
        let mut first = entry(None, Some("070-123 45 67"));
        first.at_ms = 1;
        outbox.append_consent(first);
        outbox.append(Event {
            event_id: "voided:x".into(),
            at_ms: 2,
            partition: 0,
            body: EventBody::HoldVoided(Default::default()),
        });
        let mut third = entry(None, Some("070-123 45 67"));
        third.at_ms = 3;
        third.partition = 0;
        outbox.append_consent(third);
        let recent = outbox.recent(10);
        assert_eq!(
            recent.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(outbox.lengths(), vec![2]);
    }
}
