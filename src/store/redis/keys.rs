//! Key names (DESIGN invariant 7). Everything of partition N shares the hash
//! tag `{<prefix>:p<N>}`; the catalogue has its own tag `{<prefix>:cat}`.
//! docs/redis.md lists every key with its type and lifetime.

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `"{<prefix>:p<N>}:"` — every key of partition N starts with it.
    pub fn tag_prefix(&self, p: u32) -> String {
        format!("{{{}:p{p}}}:", self.prefix)
    }

    /// Hash: a number's account (directory, limit, money, blocks, sequences).
    pub fn account(&self, p: u32, number: &str) -> String {
        format!("{}a:{number}", self.tag_prefix(p))
    }

    /// Hash: one call's hold.
    pub fn hold(&self, p: u32, call_id: &str) -> String {
        format!("{}h:{call_id}", self.tag_prefix(p))
    }

    /// The partition's expiry index (library version 5; callauth.lua
    /// `index_expiry`): this key is a sorted set of the seconds that have
    /// holds expiring in them, `<this>:<second>` a list of those holds' call
    /// ids, and `<this>n` the count of pending holds.
    pub fn expiry(&self, p: u32) -> String {
        format!("{}x", self.tag_prefix(p))
    }

    /// String: the number of pending holds the expiry index lists.
    pub fn pending_count(&self, p: u32) -> String {
        format!("{}xn", self.tag_prefix(p))
    }

    /// Sorted set: library version 4's expiry index (call ids by expiry),
    /// which holds made before the upgrade stay in until they end.
    pub fn expiry_v4(&self, p: u32) -> String {
        format!("{}exp", self.tag_prefix(p))
    }

    /// Stream: the partition's outbox events.
    pub fn events(&self, p: u32) -> String {
        format!("{}events", self.tag_prefix(p))
    }

    /// Hash: a calling line's wrong-code counter and lockout.
    pub fn line(&self, p: u32, line: &str) -> String {
        format!("{}l:{line}", self.tag_prefix(p))
    }

    /// Set: invoice ids applied to a number (idempotency).
    pub fn applied_invoices(&self, p: u32, number: &str) -> String {
        format!("{}ai:{number}", self.tag_prefix(p))
    }

    /// Set: payment ids applied to a number (idempotency).
    pub fn applied_payments(&self, p: u32, number: &str) -> String {
        format!("{}ap:{number}", self.tag_prefix(p))
    }

    /// Hash: a prepaid code's balance.
    pub fn code(&self, p: u32, code_id: &str) -> String {
        format!("{}c:{code_id}", self.tag_prefix(p))
    }

    /// String: what a payment reference paid for, once
    /// ("p|<code_id>|<amount_ore>" a purchase, "t|…" a top-up). It lives in
    /// the reference's own partition (`partition_of("ref:" + reference)`).
    pub fn reference(&self, p: u32, reference: &str) -> String {
        format!("{}ref:{reference}", self.tag_prefix(p))
    }

    /// String: which payer holds a call (`"n|<p>|<number>"` or `"c|<p>|<code_id>"`).
    pub fn call(&self, p: u32, call_id: &str) -> String {
        format!("{}call:{call_id}", self.tag_prefix(p))
    }

    /// Hash: the deployment's record — the store policy it was set up with
    /// (`policy`) and when (`created_at_ms`). Its absence means the store is
    /// empty: it lost its data or was never set up.
    pub fn meta(&self) -> String {
        format!("{{{}:meta}}", self.prefix)
    }

    /// The catalogue: version, merchants, services, terms.
    pub fn catalog(&self) -> Vec<String> {
        let tag = format!("{{{}:cat}}", self.prefix);
        vec![
            format!("{tag}:version"),
            format!("{tag}:merchants"),
            format!("{tag}:services"),
            format!("{tag}:terms"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_partition_tag() {
        let k = Keys::new("ca");
        assert_eq!(k.account(3, "+46701234567"), "{ca:p3}:a:+46701234567");
        assert_eq!(k.hold(3, "c1"), "{ca:p3}:h:c1");
        assert_eq!(k.events(3), "{ca:p3}:events");
        assert!(k.catalog().iter().all(|key| key.starts_with("{ca:cat}:")));
    }
}
