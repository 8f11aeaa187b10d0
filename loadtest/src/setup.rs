//! Setup before the measured run, through the gateway's own admin API (the
//! demo admin token by default): the run's population of numbers with their
//! directory entries, limits and blocks, and its prepaid codes; and the money
//! snapshots of the money check.
//!
//! Numbers are `+4673` and 7 digits from a base chosen per run (random unless
//! `--number-base` is given), so that repeated runs against one gateway
//! mostly meet fresh accounts; the money check compares snapshots taken just
//! before and just after the run, so earlier activity does not disturb it.

use anyhow::Context;
use callauth::pb;
use futures_util::{StreamExt, TryStreamExt};

use crate::target::{Clients, Token};

/// What a population number is set up as. The classes make every decision
/// kind occur in the mix scenario.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// Registered holder, default limit.
    Regular,
    /// Registered holder, a very high credit-decision limit (authorize scenario).
    HighLimit,
    /// Registered holder who blocked all services.
    Blocked,
    /// Registered holder who asked for a low limit: short grants, then the credit block.
    LowLimit,
    /// Listed without an invoiceable holder ("hemligt"): prepaid only.
    Secret,
    /// Not in the directory at all: prepaid only.
    Unlisted,
}

/// Percentages of the population in each special class (the rest is Regular).
#[derive(Clone, Debug)]
pub struct Shares {
    pub blocked_pct: u32,
    pub low_limit_pct: u32,
    pub secret_pct: u32,
    pub unlisted_pct: u32,
}

pub struct Population {
    pub numbers: Vec<String>,
    pub classes: Vec<Class>,
}

/// The highest limit the API accepts (account.rs `LimitChange::resolve`).
pub const MAX_LIMIT_ORE: i64 = 100_000_000;

impl Population {
    /// `count` numbers from `base`; with `shares` None every number is HighLimit.
    pub fn new(base: u64, count: usize, shares: Option<&Shares>) -> Population {
        let numbers = (0..count as u64)
            .map(|i| format!("+4673{:07}", (base + i) % 10_000_000))
            .collect();
        let classes = (0..count)
            .map(|i| match shares {
                None => Class::HighLimit,
                Some(s) => {
                    // Spread the classes over the index (and so over the
                    // popularity ranks) with a multiplicative hash.
                    let bucket = ((i as u64).wrapping_mul(2_654_435_761) % 100) as u32;
                    let mut edge = s.blocked_pct;
                    if bucket < edge {
                        return Class::Blocked;
                    }
                    edge += s.low_limit_pct;
                    if bucket < edge {
                        return Class::LowLimit;
                    }
                    edge += s.secret_pct;
                    if bucket < edge {
                        return Class::Secret;
                    }
                    edge += s.unlisted_pct;
                    if bucket < edge {
                        return Class::Unlisted;
                    }
                    Class::Regular
                }
            })
            .collect();
        Population { numbers, classes }
    }

    pub fn count(&self, class: Class) -> usize {
        self.classes.iter().filter(|c| **c == class).count()
    }
}

/// The admin API with its token.
#[derive(Clone)]
pub struct Admin {
    pub clients: Clients,
    pub token: Token,
}

fn credit_decision(limit_ore: i64, reference: &str) -> pb::set_credit_limit_request::Change {
    pb::set_credit_limit_request::Change::CreditDecision(pb::CreditDecision {
        limit_ore,
        credit_check_reference: reference.to_string(),
        decided_by: "callauth-loadtest".into(),
    })
}

impl Admin {
    async fn setup_number(
        &self,
        number: &str,
        class: Class,
        low_limit_ore: i64,
        reference: &str,
    ) -> anyhow::Result<()> {
        let mut accounts = self.clients.accounts.clone();
        let t = &self.token;
        if class == Class::Unlisted {
            return Ok(());
        }
        accounts
            .put_directory_entry(t.request(pb::DirectoryEntry {
                number: number.to_string(),
                holder_registered: class != Class::Secret,
            }))
            .await
            .with_context(|| format!("PutDirectoryEntry {number}"))?;
        let limit = match class {
            Class::HighLimit => Some(credit_decision(MAX_LIMIT_ORE, reference)),
            Class::LowLimit => Some(pb::set_credit_limit_request::Change::HolderRequestedOre(
                low_limit_ore,
            )),
            _ => None,
        };
        if let Some(change) = limit {
            accounts
                .set_credit_limit(t.request(pb::SetCreditLimitRequest {
                    number: number.to_string(),
                    change: Some(change),
                }))
                .await
                .with_context(|| format!("SetCreditLimit {number}"))?;
        }
        if class == Class::Blocked {
            accounts
                .set_block(t.request(pb::SetBlockRequest {
                    number: number.to_string(),
                    scope: pb::BlockScope::AllServices as i32,
                    target: String::new(),
                    blocked: true,
                    reason: "callauth-loadtest: holder block".into(),
                }))
                .await
                .with_context(|| format!("SetBlock {number}"))?;
        }
        Ok(())
    }

    /// Registers the population (`concurrency` admin requests at a time).
    pub async fn setup_population(
        &self,
        pop: &Population,
        low_limit_ore: i64,
        reference: &str,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        futures_util::stream::iter(pop.numbers.iter().zip(&pop.classes))
            .map(|(n, c)| self.setup_number(n, *c, low_limit_ore, reference))
            .buffer_unordered(concurrency)
            .try_collect::<()>()
            .await
    }

    /// Issues `count` prepaid codes of `amount_ore` each; returns the codes.
    pub async fn issue_codes(
        &self,
        count: usize,
        amount_ore: i64,
        run_id: &str,
        concurrency: usize,
    ) -> anyhow::Result<Vec<String>> {
        futures_util::stream::iter(0..count)
            .map(|i| {
                let mut accounts = self.clients.accounts.clone();
                let req = self.token.request(pb::IssuePrepaidCodeRequest {
                    amount_ore,
                    purchase_ref: format!("loadtest-{run_id}-{i}"),
                });
                async move {
                    let r = accounts
                        .issue_prepaid_code(req)
                        .await
                        .context("IssuePrepaidCode")?
                        .into_inner();
                    anyhow::ensure!(!r.code.is_empty(), "IssuePrepaidCode returned no code");
                    Ok(r.code)
                }
            })
            .buffered(concurrency)
            .try_collect()
            .await
    }

    /// Money as the gateway reports it: the exposure (unbilled + invoiced
    /// unpaid) summed over `numbers`, and the balances summed over `codes`.
    pub async fn money(
        &self,
        numbers: &[String],
        codes: &[String],
        concurrency: usize,
    ) -> anyhow::Result<MoneySnapshot> {
        let exposure: Vec<i64> = futures_util::stream::iter(numbers)
            .map(|n| {
                let mut accounts = self.clients.accounts.clone();
                let req = self
                    .token
                    .request(pb::GetAccountRequest { number: n.clone() });
                async move {
                    let v = accounts
                        .get_account(req)
                        .await
                        .with_context(|| format!("GetAccount {n}"))?
                        .into_inner();
                    Ok::<_, anyhow::Error>(v.unbilled_ore + v.invoiced_unpaid_ore)
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let balances: Vec<(i64, i64)> = futures_util::stream::iter(codes)
            .map(|c| {
                let mut accounts = self.clients.accounts.clone();
                let req = self
                    .token
                    .request(pb::GetPrepaidBalanceRequest { code: c.clone() });
                async move {
                    let b = accounts
                        .get_prepaid_balance(req)
                        .await
                        .context("GetPrepaidBalance")?
                        .into_inner();
                    Ok::<_, anyhow::Error>((b.balance_ore, b.pending_ore))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        Ok(MoneySnapshot {
            exposure_ore: exposure.iter().sum(),
            prepaid_balance_ore: balances.iter().map(|b| b.0).sum(),
            prepaid_pending_ore: balances.iter().map(|b| b.1).sum(),
        })
    }
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MoneySnapshot {
    pub exposure_ore: i64,
    pub prepaid_balance_ore: i64,
    pub prepaid_pending_ore: i64,
}

/// A service of the catalogue as the load generator needs it.
#[derive(Clone, Debug)]
pub struct ServiceRef {
    pub number: String,
    pub merchant_id: String,
    pub terms_id: String,
}

/// The active services (public `ListServices`).
pub async fn services(clients: &Clients) -> anyhow::Result<Vec<ServiceRef>> {
    let list = clients
        .catalog
        .clone()
        .list_services(pb::ListServicesRequest::default())
        .await
        .context("Catalog.ListServices")?
        .into_inner();
    Ok(list
        .services
        .into_iter()
        .filter(|s| s.active)
        .map(|s| ServiceRef {
            number: s.service_number,
            merchant_id: s.merchant_id,
            terms_id: s.terms.map(|t| t.terms_id).unwrap_or_default(),
        })
        .collect())
}

/// One service by number (public `LookupService`), with its current terms id.
pub async fn lookup(clients: &Clients, number: &str) -> anyhow::Result<ServiceRef> {
    let s = clients
        .catalog
        .clone()
        .lookup_service(pb::LookupServiceRequest {
            service_number: number.to_string(),
        })
        .await
        .with_context(|| format!("Catalog.LookupService {number}"))?
        .into_inner();
    Ok(ServiceRef {
        number: s.service_number,
        merchant_id: s.merchant_id,
        terms_id: s
            .terms
            .map(|t| t.terms_id)
            .context("the service has no terms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_numbers_and_classes() {
        let shares = Shares {
            blocked_pct: 10,
            low_limit_pct: 10,
            secret_pct: 10,
            unlisted_pct: 10,
        };
        let p = Population::new(9_999_999, 1000, Some(&shares));
        assert_eq!(p.numbers[0], "+46739999999");
        assert_eq!(p.numbers[1], "+46730000000");
        for c in [
            Class::Blocked,
            Class::LowLimit,
            Class::Secret,
            Class::Unlisted,
        ] {
            let n = p.count(c);
            assert!((50..=150).contains(&n), "{c:?}: {n}");
        }
        assert!(Population::new(0, 10, None)
            .classes
            .iter()
            .all(|c| *c == Class::HighLimit));
    }
}
