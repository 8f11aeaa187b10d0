//! The call index (`call_id` → the partition holding its hold) and the
//! Authorize commands that claim it: inside the Function on a single node
//! (one key more in the same slot), beside it on a cluster, where the index
//! entry lives in another slot and is written concurrently (one round trip
//! of latency either way).

use super::*;

/// A postpaid Authorize, ready to send (see `postpaid_authorize`).
pub(super) struct PostpaidAuthorize {
    pub(super) payer: Payer,
    pub(super) claim: Option<IndexClaim>,
    pub(super) cmd: ::redis::Cmd,
    pub(super) keys: [String; 4],
}

/// A call-index entry to claim for an Authorize (see `authorize_with_index`).
pub(super) struct IndexClaim {
    pub(super) key: String,
    pub(super) payer: String,
    pub(super) ttl_ms: i64,
    /// Claimed inside the Function (single node) rather than beside it.
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

pub(super) fn consent_verdict(call: &CallSpec, funding: Funding) -> u8 {
    match check_consent(call.consent.as_ref(), &call.terms, funding) {
        Ok(()) => 0,
        Err(reason) => Decision::ConsentRequired(reason).reason_code(),
    }
}

impl RedisStore {
    /// four keys (for undoing the hold). With `index`, the call index is the
    /// fifth key and is claimed inside the Function (single node).
    pub(super) fn authorize_call(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
        index: Option<&IndexClaim>,
    ) -> StoreResult<(::redis::Cmd, [String; 4])> {
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
            .arg(self.consent_json(call, Some(number), None, p, now_ms));
        if let Some(i) = index {
            cmd.arg(&i.payer).arg(i.ttl_ms);
        }
        Ok((cmd, keys))
    }

    /// The exact `FCALL` a postpaid Authorize sends (on a single node with
    /// the call-index claim inside it; on a cluster without the claim, which
    /// goes to another slot), for measuring the Redis floor: a server that
    /// does only this per request is the ceiling callauth on Redis is
    /// compared against.
    pub fn authorize_command(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<::redis::Cmd> {
        Ok(self.postpaid_authorize(number, call, now_ms)?.cmd)
    }

    /// Everything a postpaid Authorize sends: the payer, its call-index
    /// claim (inside the `FCALL` on a single node), the command and its keys.
    pub(super) fn postpaid_authorize(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<PostpaidAuthorize> {
        let payer = Payer::Number(self.partition(number.as_str()), number.as_str().to_string());
        let claim = self.index_claim(call, &payer);
        let inline = claim.as_ref().filter(|c| c.inline);
        let (cmd, keys) = self.authorize_call(number, call, now_ms, inline)?;
        Ok(PostpaidAuthorize {
            payer,
            claim,
            cmd,
            keys,
        })
    }

    /// The call-index claim for an Authorize that may create a hold: inside
    /// the Function on a single node, beside it on a cluster (another slot).
    pub(super) fn index_claim(&self, call: &CallSpec, payer: &Payer) -> Option<IndexClaim> {
        call.consent.as_ref()?;
        let p = self.partition(call.call_id.as_str());
        Some(IndexClaim {
            key: self.inner.keys.call(p, call.call_id.as_str()),
            payer: payer.encode(),
            ttl_ms: i64::from(self.inner.policy.grant.max_call_seconds) * 1000
                + self.inner.policy.hold_grace_ms
                + self.inner.policy.hold_retention_ms,
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

    /// Claims the call id in the call index (SET NX, returning any previous
    /// owner). Written with the hold's TTL horizon; a refused call leaves an
    /// entry that expires by itself.
    pub(super) async fn claim_call(&self, claim: &IndexClaim) -> StoreResult<Option<Payer>> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&claim.key)
            .arg(&claim.payer)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(claim.ttl_ms);
        let old: Option<String> = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(old.and_then(|s| Payer::decode(&s)))
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
        Ok(v.and_then(|s| Payer::decode(&s)))
    }

    pub(super) fn payer_key(&self, payer: &Payer) -> String {
        match payer {
            Payer::Number(p, n) => self.inner.keys.account(*p, n),
            Payer::Code(p, c) => self.inner.keys.code(*p, c),
        }
    }

    /// Runs an Authorize Function with the call-index claim: inside it on a
    /// single node; on a cluster concurrently beside it (one round trip of
    /// latency), where a conflict in the index (the call id already belongs
    /// to another payer) undoes a hold the Function just created.
    pub(super) async fn authorize_with_index(
        &self,
        call: &CallSpec,
        payer: &Payer,
        claim: Option<IndexClaim>,
        cmd: ::redis::Cmd,
        keys: [String; 4],
    ) -> StoreResult<AuthorizeResult> {
        let index = async {
            match &claim {
                Some(c) if !c.inline => self.claim_call(c).await,
                _ => Ok(None),
            }
        };
        let answer = async {
            self.inner
                .conn
                .query::<Value>(&cmd)
                .await
                .map_err(|e| self.unavailable(e))
        };
        let (answer, previous) = tokio::join!(answer, index);
        let result = parse_hold_answer(array(answer?)?)?;
        match previous? {
            Some(other) if other != *payer => {
                if let Decision::Allowed(_) = result.decision {
                    if !result.replayed {
                        // Undo our fresh hold: the call id belongs to someone else.
                        let p = payer.partition();
                        let _ = self
                            .fcall(
                                "release",
                                &keys,
                                vec![
                                    "0".into(),
                                    call.call_id.to_string(),
                                    "1000".into(),
                                    p.to_string(),
                                ],
                            )
                            .await;
                    }
                }
                Err(StoreError::Rejected(format!(
                    "call_id {} is already used for another caller, code or service",
                    call.call_id
                )))
            }
            _ => Ok(result),
        }
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
