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

pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Value::SimpleString(s) => s.parse().unwrap_or(0),
        Value::Double(d) => *d as i64,
        _ => 0,
    }
}

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        _ => String::new(),
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

pub(super) fn flat_map(v: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            for pair in items.chunks(2) {
                if let [k, val] = pair {
                    out.insert(text(k), text(val));
                }
            }
        }
        Value::Map(items) => {
            for (k, val) in items {
                out.insert(text(k), text(val));
            }
        }
        _ => {}
    }
    out
}

pub(super) fn parse_hold_answer(v: Vec<Value>) -> StoreResult<AuthorizeResult> {
    let kind = v.first().map(int).unwrap_or(0);
    match kind {
        -1 => Err(StoreError::Rejected(v.get(1).map(text).unwrap_or_default())),
        0 => {
            let code = v.get(1).map(int).unwrap_or(0) as u8;
            let decision = Decision::refusal_from_code(code).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown reason code {code} from redis"))
            })?;
            Ok(AuthorizeResult::refused(decision))
        }
        1 | 2 => {
            let g = Grant {
                granted_seconds: v.get(1).map(int).unwrap_or(0) as u32,
                hold: Money::ore_unchecked(v.get(2).map(int).unwrap_or(0)),
            };
            let terms_id = v
                .get(4)
                .map(text)
                .and_then(|t| TermsId::parse(&t).ok())
                .ok_or_else(|| StoreError::Corrupt("hold without terms id".into()))?;
            Ok(AuthorizeResult {
                decision: Decision::Allowed(g),
                replayed: kind == 2,
                terms_id: Some(terms_id),
                hold_expires_at_ms: v.get(3).map(int).unwrap_or(0),
                lockout_started: false,
            })
        }
        other => Err(StoreError::Corrupt(format!(
            "unexpected authorize answer {other}"
        ))),
    }
}

impl RedisStore {
    pub(super) fn view_from(&self, number: &E164, a: &HashMap<String, String>) -> AccountView {
        let n = |k: &str| a.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let source = LimitSource::from_code(n("ls") as u8).unwrap_or(LimitSource::Default);
        let established = a.get("est").is_some_and(|v| v == "1");
        let mut merchants: Vec<String> = a
            .iter()
            .filter(|(k, v)| k.starts_with("bm:") && *v == "1")
            .map(|(k, _)| k[3..].to_string())
            .collect();
        merchants.sort();
        let mut services: Vec<String> = a
            .iter()
            .filter(|(k, v)| k.starts_with("bs:") && *v == "1")
            .map(|(k, _)| k[3..].to_string())
            .collect();
        services.sort();
        AccountView {
            number: number.clone(),
            in_directory: a.contains_key("dir"),
            holder_registered: a.get("dir").is_some_and(|v| v == "1"),
            limit: self.credit().effective_limit(
                source,
                Money::ore_unchecked(n("lf")),
                established,
            ),
            limit_source: source,
            unbilled: Money::ore_unchecked(n("ub")),
            invoiced_unpaid: Money::ore_unchecked(n("iu")),
            pending: Money::ore_unchecked(n("pd")),
            blocked_all_services: a.get("bo").is_some_and(|v| v == "1"),
            blocked_merchants: merchants,
            blocked_services: services,
            credit_blocked: a.get("bc").is_some_and(|v| v == "1"),
            overdue_blocked: a.get("bd").is_some_and(|v| v == "1"),
            threshold_reached: a.get("tf").is_some_and(|v| v == "1"),
            established,
            pending_calls: n("pc").max(0) as u32,
        }
    }
}

pub(super) fn applied_answer(v: Value, number: &E164) -> StoreResult<Applied> {
    match &v {
        Value::Int(1) => Ok(Applied::Applied),
        Value::Int(2) => Ok(Applied::AlreadyApplied),
        Value::Array(a) => match a.first().map(int) {
            Some(-2) => Err(StoreError::NotFound(format!("account {number}"))),
            Some(-1) => Err(StoreError::Rejected(a.get(1).map(text).unwrap_or_default())),
            _ => Err(StoreError::Corrupt(format!("unexpected answer {v:?}"))),
        },
        _ => Err(StoreError::Corrupt(format!("unexpected answer {v:?}"))),
    }
}
