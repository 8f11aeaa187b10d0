//! The call index (`call_id` → the payer whose hold it is) and the
//! Authorize commands that claim it. Every Authorize that carries consent
//! claims the call id for its payer, allowed or not (the embedded store does
//! the same), and a claim by the same payer refreshes it, so that the index
//! outlives every hold it names. On a single node the claim is a fifth key
//! of the authorize Function, in the same step. On a cluster the entry lives
//! in the call id's slot, not the payer's: the gateway claims it first
//! (`claim_call`) and only then runs the Function — a second round trip for
//! an Authorize with consent, which buys exact idempotency: a call id that
//! collides with another caller's never makes a hold, so it never writes an
//! event under the other caller's event ids.

use super::*;

/// An Authorize, ready to send.
pub(super) struct AuthorizeCall {
    pub(super) claim: Option<IndexClaim>,
    pub(super) cmd: ::redis::Cmd,
}

/// A call-index entry to claim for an Authorize.
pub(super) struct IndexClaim {
    pub(super) key: String,
    pub(super) payer: String,
    pub(super) ttl_ms: i64,
    /// Claimed inside the Function (single node) rather than before it.
    pub(super) inline: bool,
}

/// Amounts passed to Lua stay far below 2^53 (doubles are exact there).
pub(super) const LUA_SAFE: i64 = 1 << 50;

/// The payer of a call as recorded in the call index: "n|<partition>|<number>"
/// or "c|<partition>|<code_id>".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Payer {
    Number(u32, String),
    Code(u32, String),
}

impl Payer {
    pub(super) fn encode(&self) -> String {
        match self {
            Payer::Number(p, n) => format!("n|{p}|{n}"),
            Payer::Code(p, c) => format!("c|{p}|{c}"),
        }
    }

    pub(super) fn decode(s: &str) -> Option<Payer> {
        let mut it = s.splitn(3, '|');
        let kind = it.next()?;
        let p: u32 = it.next()?.parse().ok()?;
        let id = it.next()?.to_string();
        match kind {
            "n" => Some(Payer::Number(p, id)),
            "c" => Some(Payer::Code(p, id)),
            _ => None,
        }
    }

    pub(super) fn partition(&self) -> u32 {
        match self {
            Payer::Number(p, _) | Payer::Code(p, _) => *p,
        }
    }
}

/// The names of a hold's text fields, in the order [`hold_fixed_fields`]
/// takes their values: the payer's kind ('n' number, 'c' code) and id, the
/// caller, service, merchant, terms and IVR client.
const HOLD_TEXT_FIELDS: [&str; 7] = ["pk", "pid", "num", "svc", "mer", "tid", "cl"];

/// A new hold's text fields as MessagePack map entries (key, value, …),
/// which the authorize Functions store after the map's header and before
/// the fields they compute (callauth.lua `create_hold`): the Function then
/// neither builds the hold as a Lua table nor packs these (issue 13.1).
pub(super) fn hold_fixed_fields(values: [&str; 7]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + values.iter().map(|v| v.len()).sum::<usize>());
    for (name, value) in HOLD_TEXT_FIELDS.iter().zip(values) {
        msgpack_str(&mut out, name);
        msgpack_str(&mut out, value);
    }
    out
}

/// A MessagePack str (fixstr, str 8, str 16 or str 32 by length).
fn msgpack_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= usize::from(u8::MAX) {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn consent_verdict(call: &CallSpec, funding: Funding) -> u8 {
    match check_consent(call.consent.as_ref(), &call.terms, funding) {
        Ok(()) => 0,
        Err(reason) => Decision::ConsentRequired(reason).reason_code(),
    }
}

impl RedisStore {
    /// The `FCALL` of the postpaid authorize Function for one call. With
    /// `index`, the call index is the fifth key and is claimed inside the
    /// Function (single node).
    fn postpaid_cmd(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
        index: Option<&IndexClaim>,
    ) -> StoreResult<::redis::Cmd> {
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        let t = &call.terms.tariff;
        let pol = &self.inner.policy;
        let c = self.credit();
        let keys = [
            k.account(p, number.as_str()),
            k.hold(p, call.call_id.as_str()),
            k.expiry(p),
            k.events(p),
        ];
        let mut cmd = fcall_cmd("authorize", &keys, index);
        cmd.arg(now_ms)
            .arg(call.call_id.as_str())
            .arg(number.as_str())
            .arg(call.service.number.as_str())
            .arg(call.service.merchant_id.as_str())
            .arg(call.terms.terms_id.as_str())
            .arg(lua_safe(t.price_per_minute, "price")?)
            .arg(t.billing_step_seconds)
            .arg(t.minimum_minutes)
            .arg(pol.grant.quota_seconds)
            .arg(pol.grant.max_call_seconds)
            .arg(pol.hold_grace_ms)
            .arg(pol.hold_retention_ms)
            .arg(lua_safe(c.first_time_limit, "first-time limit")?)
            .arg(lua_safe(c.established_limit, "established limit")?)
            .arg(consent_verdict(call, Funding::Postpaid))
            .arg(p)
            .arg(&call.evidence.ivr_client)
            .arg(u8::from(call.consent.is_some()))
            .arg(self.consent_json(call, Some(number), None, p, now_ms))
            .arg(call.terms.vat.percent())
            .arg(hold_fixed_fields([
                "n",
                number.as_str(),
                number.as_str(),
                call.service.number.as_str(),
                call.service.merchant_id.as_str(),
                call.terms.terms_id.as_str(),
                &call.evidence.ivr_client,
            ]));
        if let Some(i) = index {
            // `claimed` is the Function's own claim here; then the index.
            cmd.arg("").arg(&i.payer).arg(i.ttl_ms);
        }
        Ok(cmd)
    }

    /// The exact `FCALL` a postpaid Authorize sends (on a single node with
    /// the call-index claim inside it; on a cluster without the claim, which
    /// goes first to another slot), for measuring the Redis floor: a server
    /// that does only this per request is the ceiling callauth on Redis is
    /// compared against.
    pub fn authorize_command(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<::redis::Cmd> {
        Ok(self.postpaid_authorize(number, call, now_ms)?.cmd)
    }

    /// Everything a postpaid Authorize sends: its call-index claim (inside
    /// the `FCALL` on a single node) and the command.
    pub(super) fn postpaid_authorize(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<AuthorizeCall> {
        let payer = Payer::Number(self.partition(number.as_str()), number.as_str().to_string());
        let claim = self.index_claim(call, &payer);
        let inline = claim.as_ref().filter(|c| c.inline);
        let cmd = self.postpaid_cmd(number, call, now_ms, inline)?;
        Ok(AuthorizeCall { claim, cmd })
    }

    /// The code's part of a prepaid Authorize, with its call-index claim.
    pub(super) fn prepaid_authorize(
        &self,
        number: Option<&E164>,
        code: &CodeId,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<AuthorizeCall> {
        let k = &self.inner.keys;
        let q = self.partition(code.as_str());
        let t = &call.terms.tariff;
        let pol = &self.inner.policy;
        let keys = [
            k.code(q, code.as_str()),
            k.hold(q, call.call_id.as_str()),
            k.expiry(q),
            k.events(q),
        ];
        let claim = self.index_claim(call, &Payer::Code(q, code.to_string()));
        let inline = claim.as_ref().filter(|c| c.inline);
        let mut cmd = fcall_cmd("authorize_code", &keys, inline);
        cmd.arg(now_ms)
            .arg(call.call_id.as_str())
            .arg(code.as_str())
            .arg(number.map_or("", |n| n.as_str()))
            .arg(call.service.number.as_str())
            .arg(call.service.merchant_id.as_str())
            .arg(call.terms.terms_id.as_str())
            .arg(lua_safe(t.price_per_minute, "price")?)
            .arg(t.billing_step_seconds)
            .arg(t.minimum_minutes)
            .arg(pol.grant.quota_seconds)
            .arg(pol.grant.max_call_seconds)
            .arg(pol.hold_grace_ms)
            .arg(pol.hold_retention_ms)
            .arg(consent_verdict(call, Funding::Prepaid))
            .arg(q)
            .arg(&call.evidence.ivr_client)
            .arg(u8::from(call.consent.is_some()))
            .arg(self.consent_json(call, number, Some(code), q, now_ms))
            .arg(call.terms.vat.percent())
            .arg(hold_fixed_fields([
                "c",
                code.as_str(),
                number.map_or("", |n| n.as_str()),
                call.service.number.as_str(),
                call.service.merchant_id.as_str(),
                call.terms.terms_id.as_str(),
                &call.evidence.ivr_client,
            ]));
        if let Some(i) = inline {
            cmd.arg("").arg(&i.payer).arg(i.ttl_ms);
        }
        Ok(AuthorizeCall { claim, cmd })
    }

    /// The call-index claim of an Authorize that carries consent: inside the
    /// Function on a single node, before it on a cluster (another slot).
    pub(super) fn index_claim(&self, call: &CallSpec, payer: &Payer) -> Option<IndexClaim> {
        call.consent.as_ref()?;
        let p = self.partition(call.call_id.as_str());
        Some(IndexClaim {
            key: self.inner.keys.call(p, call.call_id.as_str()),
            payer: payer.encode(),
            ttl_ms: self.inner.policy.call_index_ttl_ms(),
            inline: !self.inner.conn.is_cluster(),
        })
    }

    pub(super) fn consent_json(
        &self,
        call: &CallSpec,
        number: Option<&E164>,
        code: Option<&CodeId>,
        partition: u32,
        now_ms: i64,
    ) -> String {
        let c = call.consent.as_ref();
        event::ConsentEventRef {
            event_id: &ids::consent(call.call_id.as_str()),
            at_ms: now_ms,
            partition,
            consent_recorded: event::ConsentRecordedRef {
                call_id: call.call_id.as_str(),
                number: number.map_or("", |n| n.as_str()),
                number_withheld: call.evidence.number_withheld,
                service_number: call.service.number.as_str(),
                merchant_id: call.service.merchant_id.as_str(),
                funding: if code.is_some() {
                    Funding::Prepaid
                } else {
                    Funding::Postpaid
                },
                code_id: code.map_or("", |c| c.as_str()),
                terms_id: call.terms.terms_id.as_str(),
                price_per_minute_ore: call.terms.tariff.price_per_minute.ore(),
                minimum_minutes: call.terms.tariff.minimum_minutes,
                billing_step_seconds: call.terms.tariff.billing_step_seconds,
                reminder_fee_ore: call.terms.reminder_fee.ore(),
                age_confirmed: c.is_some_and(|c| c.age_confirmed),
                own_number_confirmed: c.is_some_and(|c| c.own_number_confirmed),
                step1_at_ms: c.map_or(0, |c| c.step1_at_ms),
                terms_accepted: c.is_some_and(|c| c.terms_accepted),
                step2_at_ms: c.map_or(0, |c| c.step2_at_ms),
                ivr_client: &call.evidence.ivr_client,
                ivr_id: &call.evidence.ivr_id,
                line_ref: &call.evidence.line_ref,
                authorized_at_ms: now_ms,
            },
        }
        .to_json()
    }

    pub(super) async fn payer_of(&self, call_id: &CallId) -> StoreResult<Option<Payer>> {
        let p = self.partition(call_id.as_str());
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.inner.keys.call(p, call_id.as_str()));
        let v: Option<String> = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        v.map(|s| {
            Payer::decode(&s)
                .ok_or_else(|| StoreError::Corrupt(format!("call index entry of {call_id}")))
        })
        .transpose()
    }

    pub(super) fn payer_key(&self, payer: &Payer) -> String {
        match payer {
            Payer::Number(p, n) => self.inner.keys.account(*p, n),
            Payer::Code(p, c) => self.inner.keys.code(*p, c),
        }
    }

    /// Runs an Authorize: on a cluster, claims the call index first (a call
    /// id another payer holds is refused before any hold is made) and tells
    /// the Function whether the claim was fresh (then no hold of the call id
    /// can exist and it need not look); on a single node the claim is inside
    /// the Function.
    pub(super) async fn run_authorize(
        &self,
        call: &CallSpec,
        mut a: AuthorizeCall,
    ) -> StoreResult<AuthorizeResult> {
        if let Some(c) = a.claim.as_ref().filter(|c| !c.inline) {
            let claimed = self
                .fcall(
                    "claim_call",
                    std::slice::from_ref(&c.key),
                    vec![c.payer.clone(), c.ttl_ms.to_string()],
                )
                .await?;
            match int(&claimed)? {
                1 => {
                    a.cmd.arg("fresh");
                }
                2 => {}
                _ => {
                    return Err(StoreError::Rejected(format!(
                    "call_id {} is already used for another caller, code, service or IVR client",
                    call.call_id
                )))
                }
            }
        }
        // Issue 10: the last moment to refuse without leaving a hold.
        crate::store::budget::check_write()?;
        let wait = crate::store::budget::write_wait(self.inner.conn.timeout());
        let answer = self
            .inner
            .conn
            .query_write::<Value>(&a.cmd, wait)
            .await
            .map_err(|e| self.unavailable(e))?;
        parse_hold_answer(array(answer)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payer_encoding_round_trips() {
        for p in [
            Payer::Number(3, "+46701234567".into()),
            Payer::Code(0, "ab".repeat(16)),
        ] {
            assert_eq!(Payer::decode(&p.encode()), Some(p));
        }
        assert_eq!(Payer::decode("x|1|y"), None);
        assert_eq!(Payer::decode("n|q|y"), None);
    }
}

#[cfg(test)]
mod hold_encoding {
    use super::*;

    #[test]
    fn text_fields_are_messagepack_strings_of_every_length_class() {
        let mut out = Vec::new();
        msgpack_str(&mut out, "");
        msgpack_str(&mut out, "n");
        assert_eq!(out, [0xa0, 0xa1, b'n']);
        for (len, header) in [
            (31, vec![0xbf]),
            (32, vec![0xd9, 32]),
            (255, vec![0xd9, 255]),
            (256, vec![0xda, 1, 0]),
            (65_536, vec![0xdb, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            msgpack_str(&mut out, &"x".repeat(len));
            assert_eq!(&out[..header.len()], &header[..], "length {len}");
            assert_eq!(out.len(), header.len() + len, "length {len}");
        }
    }

    #[test]
    fn the_fixed_fields_are_seven_named_pairs_in_order() {
        let out = hold_fixed_fields(["n", "+46701234567", "+46701234567", "s", "m", "t", "ivr"]);
        let mut expected = Vec::new();
        for (k, v) in [
            ("pk", "n"),
            ("pid", "+46701234567"),
            ("num", "+46701234567"),
            ("svc", "s"),
            ("mer", "m"),
            ("tid", "t"),
            ("cl", "ivr"),
        ] {
            expected.push(0xa0 | k.len() as u8);
            expected.extend_from_slice(k.as_bytes());
            expected.push(0xa0 | v.len() as u8);
            expected.extend_from_slice(v.as_bytes());
        }
        assert_eq!(out, expected);
    }
}
