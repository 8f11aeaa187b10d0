//! Reading Redis replies: the error mapping and the decoding of Function
//! answers and stored hashes into the store's types.

use super::*;

/// A Redis error as a store error. A timeout is reported with the
/// per-command timeout that expired (`timeout_ms`), which the error itself
/// does not carry.
pub(super) fn redis_error(e: ::redis::RedisError, timeout_ms: u64) -> StoreError {
    let text = e.to_string();
    if e.is_timeout() {
        StoreError::Timeout(timeout_ms)
    } else if text.contains("@user_function") || text.contains("script:") {
        // A Function failed at run time: a bug, not an outage. Not transient.
        StoreError::Corrupt(format!("redis function error: {text}"))
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
    {
        StoreError::Unavailable(text)
    } else {
        StoreError::Unavailable(format!("redis: {text}"))
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// An integer in a reply: never a default. Anything else is a bug or a
/// foreign writer.
pub(super) fn int(v: &Value) -> StoreResult<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(format!("expected an integer from redis, got {v:?}"))),
        Value::SimpleString(s) => s
            .parse()
            .map_err(|_| corrupt(format!("expected an integer from redis, got {s:?}"))),
        other => Err(corrupt(format!(
            "expected an integer from redis, got {other:?}"
        ))),
    }
}

/// A text in a reply.
pub(super) fn text(v: &Value) -> StoreResult<String> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b.clone()).map_err(|_| corrupt("a reply from redis is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        other => Err(corrupt(format!(
            "expected a text from redis, got {other:?}"
        ))),
    }
}

/// The `i`-th element of a Function's answer, which must be there.
pub(super) fn at(v: &[Value], i: usize) -> StoreResult<&Value> {
    v.get(i).ok_or_else(|| {
        corrupt(format!(
            "a redis answer has {} elements, not {}",
            v.len(),
            i + 1
        ))
    })
}

/// The `i`-th element as an integer.
pub(super) fn int_at(v: &[Value], i: usize) -> StoreResult<i64> {
    int(at(v, i)?)
}

/// The `i`-th element as an amount of öre.
pub(super) fn money_at(v: &[Value], i: usize) -> StoreResult<Money> {
    int_at(v, i).map(Money::ore_unchecked)
}

/// The `i`-th element as a u32 (seconds).
pub(super) fn u32_at(v: &[Value], i: usize) -> StoreResult<u32> {
    let n = int_at(v, i)?;
    u32::try_from(n).map_err(|_| corrupt(format!("{n} is out of range for seconds")))
}

/// The `i`-th element as a 0/1 flag.
pub(super) fn flag_at(v: &[Value], i: usize) -> StoreResult<bool> {
    match int_at(v, i)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(corrupt(format!("expected a 0/1 flag from redis, got {n}"))),
    }
}

/// A counter field of a stored hash (written by `HINCRBY`, so a field that
/// was never incremented is absent and is 0 by construction); a field that
/// is there but not a number is corruption, never 0.
pub(super) fn counter(h: &HashMap<String, String>, field: &str) -> StoreResult<i64> {
    match h.get(field) {
        None => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| corrupt(format!("stored field {field} is not a number"))),
    }
}

pub(super) fn array(v: Value) -> StoreResult<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Set(a) => Ok(a),
        other => Err(StoreError::Corrupt(format!(
            "expected an array from redis, got {other:?}"
        ))),
    }
}

/// A value of a stored hash or an `XINFO` map as text (integers included).
pub(super) fn field_text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        _ => String::new(),
    }
}

/// A hash (`HGETALL`) or an `XINFO` reply as a map of texts.
pub(super) fn flat_map(v: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            for pair in items.chunks(2) {
                if let [k, val] = pair {
                    out.insert(field_text(k), field_text(val));
                }
            }
        }
        Value::Map(items) => {
            for (k, val) in items {
                out.insert(field_text(k), field_text(val));
            }
        }
        _ => {}
    }
    out
}

pub(super) fn parse_hold_answer(v: Vec<Value>) -> StoreResult<AuthorizeResult> {
    let kind = int_at(&v, 0)?;
    match kind {
        -1 => Err(StoreError::Rejected(text(at(&v, 1)?)?)),
        0 => {
            let code = int_at(&v, 1)?;
            let decision = u8::try_from(code)
                .ok()
                .and_then(Decision::refusal_from_code)
                .ok_or_else(|| corrupt(format!("unknown reason code {code} from redis")))?;
            Ok(AuthorizeResult::refused(decision))
        }
        1 | 2 => {
            let g = Grant {
                granted_seconds: u32_at(&v, 1)?,
                hold: money_at(&v, 2)?,
            };
            let terms_id = TermsId::parse(&text(at(&v, 4)?)?)
                .map_err(|_| corrupt("a hold with a bad terms id"))?;
            Ok(AuthorizeResult {
                decision: Decision::Allowed(g),
                replayed: kind == 2,
                terms_id: Some(terms_id),
                hold_expires_at_ms: int_at(&v, 3)?,
                lockout_started: false,
            })
        }
        // A retry of a call that has ended (hold.rs Hold::replay).
        3 => Ok(AuthorizeResult {
            replayed: true,
            ..AuthorizeResult::refused(Decision::Denied(DenyReason::CallEnded))
        }),
        other => Err(corrupt(format!("unexpected authorize answer {other}"))),
    }
}

/// The answer of `extend`.
pub(super) fn parse_extend_answer(v: Vec<Value>, call_id: &CallId) -> StoreResult<ExtendResult> {
    let head = int_at(&v, 0)?;
    match head {
        -3 => return Err(StoreError::Forbidden(text(at(&v, 1)?)?)),
        -2 => return Err(StoreError::NotFound(format!("call {call_id}"))),
        -1 => return Err(StoreError::Rejected(text(at(&v, 1)?)?)),
        _ => {}
    }
    let outcome = if head == i64::from(crate::domain::decision::code::GRANTED) {
        ExtendOutcome::Extended
    } else {
        ExtendOutcome::Refused(
            u8::try_from(head)
                .ok()
                .and_then(DenyReason::from_code)
                .ok_or_else(|| corrupt(format!("unknown extend outcome {head}")))?,
        )
    };
    Ok(ExtendResult {
        outcome,
        granted_seconds_total: u32_at(&v, 1)?,
        added_seconds: u32_at(&v, 2)?,
        hold: money_at(&v, 3)?,
        hold_expires_at_ms: int_at(&v, 4)?,
        replayed: flag_at(&v, 5)?,
    })
}

/// The answer of `release`.
pub(super) fn parse_release_answer(v: Vec<Value>) -> StoreResult<ReleaseOutcome> {
    Ok(match int_at(&v, 0)? {
        -3 => return Err(StoreError::Forbidden(text(at(&v, 1)?)?)),
        1 => ReleaseOutcome::Voided(money_at(&v, 1)?),
        2 => ReleaseOutcome::AlreadyVoided,
        3 => ReleaseOutcome::AlreadyPosted,
        4 => ReleaseOutcome::AlreadyExpired,
        5 => ReleaseOutcome::UnknownCall,
        other => return Err(corrupt(format!("unexpected release answer {other}"))),
    })
}

/// The answer of `post_usage`.
pub(super) fn parse_usage_answer(v: Vec<Value>) -> StoreResult<UsageOutcome> {
    let head = int_at(&v, 0)?;
    if head == 0 {
        let code = int_at(&v, 1)?;
        let reject = u8::try_from(code)
            .ok()
            .and_then(UsageReject::from_code)
            .ok_or_else(|| corrupt(format!("unknown usage rejection {code}")))?;
        return Ok(UsageOutcome::Rejected(reject, text(at(&v, 2)?)?));
    }
    let applied = head == 1;
    let posting = Posting {
        charge: money_at(&v, 1)?,
        billed_seconds: u32_at(&v, 2)?,
        overrun_seconds: u32_at(&v, 3)?,
        late: flag_at(&v, 4)?,
        uncollected: money_at(&v, 5)?,
        threshold_reached: applied && flag_at(&v, 6)?,
        limit_reached: applied && flag_at(&v, 7)?,
    };
    match head {
        1 => Ok(UsageOutcome::Applied(posting)),
        2 => Ok(UsageOutcome::Duplicate(posting)),
        other => Err(corrupt(format!("unexpected usage answer {other}"))),
    }
}

impl RedisStore {
    pub(super) fn view_from(
        &self,
        number: &E164,
        a: &HashMap<String, String>,
    ) -> StoreResult<AccountView> {
        let flag = |k: &str| a.get(k).is_some_and(|v| v == "1");
        let source_code = counter(a, "ls")?;
        let source = if source_code == 0 {
            LimitSource::Default
        } else {
            u8::try_from(source_code)
                .ok()
                .and_then(LimitSource::from_code)
                .ok_or_else(|| corrupt(format!("unknown limit source {source_code}")))?
        };
        let established = flag("est");
        let blocked = |prefix: &str| {
            let mut v: Vec<String> = a
                .iter()
                .filter(|(k, v)| k.starts_with(prefix) && *v == "1")
                .map(|(k, _)| k[prefix.len()..].to_string())
                .collect();
            v.sort();
            v
        };
        let pending_calls = counter(a, "pc")?;
        Ok(AccountView {
            number: number.clone(),
            in_directory: a.contains_key("dir"),
            holder_registered: flag("dir"),
            limit: self.credit().effective_limit(
                source,
                Money::ore_unchecked(counter(a, "lf")?),
                established,
            ),
            limit_source: source,
            unbilled: Money::ore_unchecked(counter(a, "ub")?),
            invoiced_unpaid: Money::ore_unchecked(counter(a, "iu")?),
            pending: Money::ore_unchecked(counter(a, "pd")?),
            blocked_all_services: flag("bo"),
            blocked_merchants: blocked("bm:"),
            blocked_services: blocked("bs:"),
            credit_blocked: flag("bc"),
            overdue_blocked: flag("bd"),
            threshold_reached: flag("tf"),
            established,
            pending_calls: u32::try_from(pending_calls)
                .map_err(|_| corrupt(format!("{pending_calls} pending calls")))?,
        })
    }
}

pub(super) fn applied_answer(v: Value, number: &E164) -> StoreResult<Applied> {
    match &v {
        Value::Int(1) => Ok(Applied::Applied),
        Value::Int(2) => Ok(Applied::AlreadyApplied),
        Value::Array(a) => match int_at(a, 0)? {
            -2 => Err(StoreError::NotFound(format!("account {number}"))),
            -1 => Err(StoreError::Rejected(text(at(a, 1)?)?)),
            _ => Err(corrupt(format!("unexpected answer {v:?}"))),
        },
        _ => Err(corrupt(format!("unexpected answer {v:?}"))),
    }
}
