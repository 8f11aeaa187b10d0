//! The `mix` scenario: whole calls as an IVR and a merchant make them.
//!
//! A call picks a caller — a population number by a Zipf-like popularity
//! (most numbers call rarely, a few often), sometimes a withheld or a foreign
//! number — and a service, then:
//!
//! 1. Authorize without consent → CONSENT_REQUIRED with the terms (or a
//!    refusal, or PREPAID_CODE_REQUIRED: the caller types a prepaid code if
//!    they have one — sometimes a wrong one first — and is asked for consent);
//! 2. Authorize with both consent steps for the announced terms → ALLOWED;
//! 3. sometimes Release (the caller hung up before the service started);
//!    otherwise Extend while the call's length exceeds its grant (the IVR
//!    cuts the call when the grant cannot grow — except in a few calls that
//!    run past it, which are charged in full and bring the credit block);
//! 4. the merchant reports the usage on its `Usage.Report` stream.
//!
//! Time is compressed: the caller's think time and the call's length in
//! wall-clock time are short (`--think-ms`, `--call-hold-ms`), while the
//! reported duration is realistic (log-normal, median `--median-call-seconds`).
//!
//! Latency: a call's first RPC is measured from the call's scheduled start;
//! each later RPC from when the IVR sends it (after the caller's think time),
//! because the IVR only sends it after the previous answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callauth::gateway::api::convert::ms_to_timestamp;
use callauth::pb;
use rand::RngExt;

use crate::retry::{self, Retry};
use crate::setup::{Class, Population, ServiceRef};
use crate::stats::Recorder;
use crate::target::{Clients, Token};
use crate::usage::UsageStream;

/// Resends of a usage record whose acknowledgement was lost.
const USAGE_ATTEMPTS: u32 = 3;
/// Extensions an IVR asks for per call at most.
const MAX_EXTENDS: u32 = 8;
/// The longest call the generator reports (the gateway's default maximum is 4 h).
const MAX_CALL_SECONDS: f64 = 3.0 * 3600.0;

/// The scenario's knobs (see `run::RunArgs` for their meaning).
#[derive(Clone, Debug)]
pub struct Knobs {
    pub withheld_pct: f64,
    pub foreign_pct: f64,
    pub have_code_pct: f64,
    pub wrong_code_pct: f64,
    pub release_pct: f64,
    pub overrun_pct: f64,
    pub zero_length_pct: f64,
    pub median_call_seconds: f64,
    pub think: Duration,
    pub hold: Duration,
    pub lines: u32,
}

/// Zipf-like popularity: rank k (0-based) is drawn with weight 1/(k+1)^s.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 0..n {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// The rank for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.cdf.len().saturating_sub(1))
    }

    /// Share of all calls made by the `top` most popular numbers.
    pub fn top_share(&self, top: usize) -> f64 {
        match top {
            0 => 0.0,
            t => self.cdf[t.min(self.cdf.len()) - 1],
        }
    }
}

pub struct Mix {
    pub rec: Arc<Recorder>,
    pub conns: Vec<Clients>,
    pub ivr: Token,
    /// Per connection: merchant id → that merchant's usage stream.
    pub usage: Vec<HashMap<String, Arc<UsageStream>>>,
    pub services: Vec<ServiceRef>,
    pub pop: Population,
    pub zipf: Zipf,
    pub codes: Vec<String>,
    pub knobs: Knobs,
    pub call_prefix: String,
    /// How long a transiently failed RPC is resent (`--retry-seconds`; zero: not).
    pub retry: Duration,
}

#[derive(Clone, Debug)]
enum Caller {
    Number(usize),
    Withheld,
    Foreign(String),
}

/// Every random choice of one call, drawn before its first await.
struct Plan {
    caller: Caller,
    service: usize,
    code: Option<usize>,
    wrong_code_first: bool,
    release: bool,
    /// Seconds the call runs past its grant (the IVR did not cut it), or 0.
    overrun_seconds: u32,
    duration_seconds: u32,
    line_ref: String,
    think: [Duration; 4],
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

/// "ALLOWED GRANTED (POSTPAID)", "DENIED BLOCKED_BY_HOLDER", …; funding 0: none shown.
fn decision_label(decision: i32, reason: i32, funding: i32) -> String {
    let d = pb::Decision::try_from(decision).map_or("?", |d| d.as_str_name());
    let r = pb::Reason::try_from(reason).map_or("?", |r| r.as_str_name());
    let mut label = format!("{} {}", short(d, "DECISION_"), short(r, "REASON_"));
    if decision == pb::Decision::Allowed as i32 && funding != 0 {
        let f = pb::Funding::try_from(funding).map_or("?", |f| f.as_str_name());
        label.push_str(&format!(" ({})", short(f, "FUNDING_")));
    }
    label
}

/// The label an Authorize answer is counted under.
pub fn authorize_label(r: &pb::AuthorizeResponse) -> String {
    decision_label(r.decision, r.reason, r.funding)
}

fn is(r: &pb::AuthorizeResponse, d: pb::Decision) -> bool {
    r.decision == d as i32
}

impl Mix {
    fn plan(&self) -> Plan {
        let mut rng = rand::rng();
        let k = &self.knobs;
        let pct = |rng: &mut rand::rngs::ThreadRng, p: f64| rng.random::<f64>() * 100.0 < p;
        let roll: f64 = rng.random::<f64>() * 100.0;
        let caller = if roll < k.withheld_pct {
            Caller::Withheld
        } else if roll < k.withheld_pct + k.foreign_pct {
            Caller::Foreign(format!("+447700{:06}", rng.random_range(0..1_000_000u32)))
        } else {
            Caller::Number(self.zipf.rank(rng.random::<f64>()))
        };
        let code = (!self.codes.is_empty() && pct(&mut rng, k.have_code_pct))
            .then(|| rng.random_range(0..self.codes.len()));
        let duration_seconds = if pct(&mut rng, k.zero_length_pct) {
            0
        } else {
            // Log-normal (Box–Muller), sigma 1: many short calls, a long tail.
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            (k.median_call_seconds * z.exp()).clamp(1.0, MAX_CALL_SECONDS) as u32
        };
        let mut think = [Duration::ZERO; 4];
        for t in &mut think {
            *t = k.think.mul_f64(rng.random_range(0.5..1.5));
        }
        Plan {
            caller,
            service: rng.random_range(0..self.services.len()),
            code,
            wrong_code_first: pct(&mut rng, k.wrong_code_pct),
            release: pct(&mut rng, k.release_pct),
            overrun_seconds: if pct(&mut rng, k.overrun_pct) {
                rng.random_range(30..=180)
            } else {
                0
            },
            duration_seconds,
            line_ref: format!("line-{}", rng.random_range(0..k.lines.max(1))),
            think,
        }
    }

    /// The retry policy of one RPC (`usage`: a usage record, resent up to
    /// three times at once even without `--retry-seconds`).
    fn retry_policy(&self, usage: bool) -> Retry {
        Retry {
            window: self.retry,
            min_attempts: if usage { USAGE_ATTEMPTS } else { 1 },
            conns: self.conns.len(),
        }
    }

    /// One Authorize (resent unchanged while it fails transiently, see
    /// `retry`); None when it failed (the errors are recorded).
    async fn authorize(
        &self,
        seq: u64,
        measured: bool,
        started: Instant,
        conn: usize,
        req: pb::AuthorizeRequest,
    ) -> Option<pb::AuthorizeResponse> {
        let policy = self.retry_policy(false);
        let r = retry::send(
            &self.rec,
            seq,
            "Authorize",
            measured,
            started,
            conn,
            policy,
            |c| {
                let mut client = self.conns[c].authorization.clone();
                let req = self.ivr.request(req.clone());
                async move { client.authorize(req).await }
            },
        )
        .await?;
        let resp = r.value.into_inner();
        self.rec.count(seq, "authorize", authorize_label(&resp));
        Some(resp)
    }

    /// One call scheduled at `due`.
    pub async fn call(self: Arc<Self>, seq: u64, due: Instant) {
        let measured = self.rec.measured(due);
        self.call_inner(seq, due, measured).await;
        self.rec.call_done(seq, measured);
    }

    async fn call_inner(&self, seq: u64, due: Instant, measured: bool) {
        let plan = self.plan();
        let conn = (seq as usize) % self.conns.len();
        let service = &self.services[plan.service];
        let call_id = format!("{}-{seq}", self.call_prefix);
        let (a_number, withheld, class) = match &plan.caller {
            Caller::Number(i) => (self.pop.numbers[*i].clone(), false, self.pop.classes[*i]),
            Caller::Withheld => (String::new(), true, Class::Unlisted),
            Caller::Foreign(n) => (n.clone(), false, Class::Unlisted),
        };
        self.rec.count(
            seq,
            "caller",
            match &plan.caller {
                Caller::Withheld => "withheld".to_string(),
                Caller::Foreign(_) => "foreign".to_string(),
                Caller::Number(_) => format!("{class:?}").to_lowercase(),
            },
        );
        let base = pb::AuthorizeRequest {
            call_id: call_id.clone(),
            a_number,
            number_withheld: withheld,
            service_number: service.number.clone(),
            prepaid_code: String::new(),
            consent: None,
            ivr_id: "callauth-loadtest-ivr".into(),
            line_ref: if withheld {
                plan.line_ref.clone()
            } else {
                String::new()
            },
        };

        // 1. The IVR asks; no consent yet.
        let Some(first) = self.authorize(seq, measured, due, conn, base.clone()).await else {
            return;
        };
        let mut req = base;
        let terms_id;
        let prepaid;
        if is(&first, pb::Decision::ConsentRequired) {
            terms_id = first.terms.map(|t| t.terms_id).unwrap_or_default();
            prepaid = false;
        } else if is(&first, pb::Decision::PrepaidCodeRequired) {
            // The caller may type a prepaid code.
            let Some(code) = plan.code else {
                return;
            };
            tokio::time::sleep(plan.think[0]).await;
            if plan.wrong_code_first {
                let mut wrong = req.clone();
                wrong.prepaid_code =
                    format!("{:016}", rand::rng().random_range(0..u64::MAX / 1000));
                let started = Instant::now();
                let Some(r) = self.authorize(seq, measured, started, conn, wrong).await else {
                    return;
                };
                if !is(&r, pb::Decision::Denied)
                    || r.reason != pb::Reason::PrepaidCodeInvalid as i32
                {
                    return;
                }
                tokio::time::sleep(plan.think[1]).await;
            }
            req.prepaid_code = self.codes[code].clone();
            let started = Instant::now();
            let Some(r) = self
                .authorize(seq, measured, started, conn, req.clone())
                .await
            else {
                return;
            };
            if !is(&r, pb::Decision::ConsentRequired) {
                return;
            }
            terms_id = r.terms.map(|t| t.terms_id).unwrap_or_default();
            prepaid = true;
        } else {
            return;
        }

        // 2. The caller hears the terms and confirms both steps.
        tokio::time::sleep(plan.think[2]).await;
        let ts = ms_to_timestamp(now_ms());
        req.consent = Some(pb::Consent {
            age_confirmed: true,
            own_number_confirmed: !prepaid,
            step1_at: Some(ts),
            terms_accepted: true,
            step2_at: Some(ts),
            terms_id,
        });
        let started = Instant::now();
        let Some(allowed) = self.authorize(seq, measured, started, conn, req).await else {
            return;
        };
        if !is(&allowed, pb::Decision::Allowed) {
            return;
        }
        let service_started_ms = now_ms();

        // 3. Hung up before the service started, or extend while needed.
        if plan.release {
            tokio::time::sleep(plan.think[3]).await;
            self.release(seq, measured, conn, &call_id).await;
            return;
        }
        let mut granted = allowed.granted_seconds;
        let mut sequence = 1;
        while plan.duration_seconds > granted && sequence <= MAX_EXTENDS {
            match self.extend(seq, measured, conn, &call_id, sequence).await {
                Some(total) => granted = total,
                None => break,
            }
            sequence += 1;
        }
        // The IVR ends the call when its grant runs out — unless it fails to,
        // and the call is charged in full past its grant (then the credit
        // block follows at the limit).
        let duration = if plan.overrun_seconds > 0 {
            plan.duration_seconds.max(granted + plan.overrun_seconds)
        } else {
            plan.duration_seconds.min(granted)
        };

        // 4. The call ends; the merchant reports it.
        tokio::time::sleep(self.knobs.hold).await;
        let record = pb::UsageRecord {
            record_id: format!("{call_id}-u"),
            call_id,
            service_number: service.number.clone(),
            started_at: Some(ms_to_timestamp(service_started_ms)),
            duration_seconds: duration as i32,
        };
        self.report(seq, measured, conn, &service.merchant_id, record, prepaid)
            .await;
    }

    /// One Extend; the new total grant when it grew.
    async fn extend(
        &self,
        seq: u64,
        measured: bool,
        conn: usize,
        call_id: &str,
        sequence: u32,
    ) -> Option<u32> {
        let policy = self.retry_policy(false);
        let req = pb::ExtendRequest {
            call_id: call_id.to_string(),
            sequence,
        };
        let r = retry::send(
            &self.rec,
            seq,
            "Extend",
            measured,
            Instant::now(),
            conn,
            policy,
            |c| {
                let mut client = self.conns[c].authorization.clone();
                let req = self.ivr.request(req.clone());
                async move { client.extend(req).await }
            },
        )
        .await?;
        let r = r.value.into_inner();
        self.rec
            .count(seq, "extend", decision_label(r.decision, r.reason, 0));
        (r.decision == pb::Decision::Allowed as i32).then_some(r.granted_seconds_total)
    }

    async fn release(&self, seq: u64, measured: bool, conn: usize, call_id: &str) {
        let policy = self.retry_policy(false);
        let req = pb::ReleaseRequest {
            call_id: call_id.to_string(),
        };
        let r = retry::send(
            &self.rec,
            seq,
            "Release",
            measured,
            Instant::now(),
            conn,
            policy,
            |c| {
                let mut client = self.conns[c].authorization.clone();
                let req = self.ivr.request(req.clone());
                async move { client.release(req).await }
            },
        )
        .await;
        if let Some(r) = r {
            let outcome = pb::ReleaseOutcome::try_from(r.value.into_inner().outcome)
                .map_or("?", |o| o.as_str_name())
                .to_string();
            self.rec
                .count(seq, "release", short(&outcome, "RELEASE_OUTCOME_"));
        }
    }

    /// Sends the usage record on the merchant's stream (resending it when
    /// the stream failed before its acknowledgement) and books the charge.
    async fn report(
        &self,
        seq: u64,
        measured: bool,
        conn: usize,
        merchant: &str,
        record: pb::UsageRecord,
        prepaid: bool,
    ) {
        if !self.usage[conn].contains_key(merchant) {
            self.rec
                .count(seq, "usage", format!("no token for merchant {merchant}"));
            return;
        }
        let policy = self.retry_policy(true);
        let answered = retry::send(
            &self.rec,
            seq,
            "Usage ack",
            measured,
            Instant::now(),
            conn,
            policy,
            |c| {
                let stream = self.usage[c].get(merchant).cloned();
                let record = record.clone();
                async move {
                    match stream {
                        Some(s) => s.send(record).await,
                        None => Err(tonic::Status::internal("no usage stream")),
                    }
                }
            },
        )
        .await;
        let Some(answered) = answered else {
            self.rec.count(
                seq,
                "usage",
                "NO ACK after retries (money check may differ)",
            );
            return;
        };
        let (ack, resent) = (answered.value, answered.attempts > 1);
        let result = pb::UsageResult::try_from(ack.result)
            .map_or("?", |r| r.as_str_name())
            .to_string();
        let mut label = short(&result, "USAGE_RESULT_");
        if ack.result == pb::UsageResult::Rejected as i32 {
            let reason = pb::UsageRejectReason::try_from(ack.reject_reason)
                .map_or("?", |r| r.as_str_name())
                .to_string();
            label = format!("{label} {}", short(&reason, "USAGE_REJECT_REASON_"));
        }
        if resent {
            label.push_str(" (resent)");
        }
        self.rec.count(seq, "usage", label);
        // Each record is sent by this call only, and only until its first
        // answer: a DUPLICATE therefore means an earlier attempt was applied
        // and its ack lost — by our resend, or by a retry inside the gateway
        // (its Redis client resends a command once after a dropped
        // connection) — and it carries the charge we never saw.
        let charged = ack.result == pb::UsageResult::Applied as i32
            || ack.result == pb::UsageResult::Duplicate as i32;
        if charged {
            self.rec.money(seq, prepaid, ack.charge_ore);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_covers_all_ranks() {
        let z = Zipf::new(10_000, 0.8);
        assert_eq!(z.rank(0.0), 0);
        assert_eq!(z.rank(0.999_999_999), 9_999);
        // The top 1 % of numbers make far more than 1 % of the calls.
        assert!(z.top_share(100) > 0.1);
        let u = Zipf::new(100, 0.0);
        assert!((u.top_share(50) - 0.5).abs() < 1e-9);
    }
}
