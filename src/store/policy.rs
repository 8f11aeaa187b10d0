//! The rules the state store applies inside its atomic steps, declared once
//! for both processes: the gateway and the settlement worker flatten the
//! same [`StorePolicyArgs`] into their command lines (same flags, same
//! `CALLAUTH_…` variables), and the Redis store records the policy it was
//! set up with, so that a process started with other values refuses to
//! start instead of computing limits of its own (R8, R10, R17).

use clap::Args;

use super::StorePolicy;
use crate::domain::{CreditPolicy, GrantPolicy, Money};

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct StorePolicyArgs {
    /// Number of state-store partitions (fixed per deployment).
    #[arg(long, env = "CALLAUTH_PARTITIONS", global = true, default_value_t = 16)]
    pub partitions: u32,

    /// Credit limit of a first-time caller, SEK (R8).
    #[arg(
        long,
        env = "CALLAUTH_FIRST_TIME_LIMIT_SEK",
        global = true,
        default_value = "1500"
    )]
    pub first_time_limit_sek: Money,

    /// Credit limit after the first paid invoice, SEK (R8).
    #[arg(
        long,
        env = "CALLAUTH_ESTABLISHED_LIMIT_SEK",
        global = true,
        default_value = "3000"
    )]
    pub established_limit_sek: Money,

    /// Exposure, in percent of the limit, that triggers an invoice at once (R8).
    #[arg(long, env = "CALLAUTH_THRESHOLD_PERCENT", global = true, default_value_t = 80,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub threshold_percent: u8,

    /// Seconds granted per Authorize or Extend at most (R10).
    #[arg(
        long,
        env = "CALLAUTH_GRANT_QUOTA_SECONDS",
        global = true,
        default_value_t = 900
    )]
    pub grant_quota_seconds: u32,

    /// Longest call, seconds; also the longest usage a record may report.
    #[arg(
        long,
        env = "CALLAUTH_MAX_CALL_SECONDS",
        global = true,
        default_value_t = 14_400
    )]
    pub max_call_seconds: u32,

    /// A pending hold expires this long after its grant ends (R10).
    #[arg(
        long,
        env = "CALLAUTH_HOLD_GRACE_SECONDS",
        global = true,
        default_value_t = 120
    )]
    pub hold_grace_seconds: u32,

    /// Finished calls are remembered this long (retries, late usage).
    #[arg(
        long,
        env = "CALLAUTH_HOLD_RETENTION_HOURS",
        global = true,
        default_value_t = 72
    )]
    pub hold_retention_hours: u32,

    /// Wrong prepaid codes from one line that lock it out (R17).
    #[arg(
        long,
        env = "CALLAUTH_PREPAID_MAX_FAILURES",
        global = true,
        default_value_t = 5
    )]
    pub prepaid_max_failures: u32,

    /// How long a line stays locked out, seconds (R17).
    #[arg(
        long,
        env = "CALLAUTH_PREPAID_LOCKOUT_SECONDS",
        global = true,
        default_value_t = 900
    )]
    pub prepaid_lockout_seconds: u32,
}

impl StorePolicyArgs {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions == 0 || self.partitions > 16_384 {
            return Err("--partitions must be between 1 and 16384".into());
        }
        if self.first_time_limit_sek.is_negative() || self.established_limit_sek.is_negative() {
            return Err("limits must not be negative".into());
        }
        if self.grant_quota_seconds == 0 || self.max_call_seconds == 0 {
            return Err("--grant-quota-seconds and --max-call-seconds must be positive".into());
        }
        if self.prepaid_max_failures == 0 {
            return Err("--prepaid-max-failures must be positive".into());
        }
        Ok(())
    }

    pub fn policy(&self) -> StorePolicy {
        StorePolicy {
            credit: CreditPolicy {
                first_time_limit: self.first_time_limit_sek,
                established_limit: self.established_limit_sek,
                threshold_percent: self.threshold_percent,
            },
            grant: GrantPolicy {
                quota_seconds: self.grant_quota_seconds,
                max_call_seconds: self.max_call_seconds,
            },
            hold_grace_ms: i64::from(self.hold_grace_seconds) * 1000,
            hold_retention_ms: i64::from(self.hold_retention_hours) * 3_600_000,
            lockout_max_failures: self.prepaid_max_failures,
            lockout_ms: i64::from(self.prepaid_lockout_seconds) * 1000,
            partitions: self.partitions,
            ..StorePolicy::default()
        }
    }
}

impl StorePolicy {
    /// The policy as one line of `name=value` pairs: what the Redis store
    /// records, and what a starting process compares with its own.
    pub fn fingerprint(&self) -> String {
        format!(
            "partitions={};first_time_limit_ore={};established_limit_ore={};threshold_percent={};\
             grant_quota_seconds={};max_call_seconds={};hold_grace_ms={};hold_retention_ms={};\
             usage_start_skew_ms={};lockout_max_failures={};lockout_window_ms={};lockout_ms={}",
            self.partitions,
            self.credit.first_time_limit.ore(),
            self.credit.established_limit.ore(),
            self.credit.threshold_percent,
            self.grant.quota_seconds,
            self.grant.max_call_seconds,
            self.hold_grace_ms,
            self.hold_retention_ms,
            self.usage_start_skew_ms,
            self.lockout_max_failures,
            self.lockout_window_ms,
            self.lockout_ms,
        )
    }

    /// What differs between this policy and a recorded fingerprint, as
    /// "name: here vs recorded" (empty when they agree).
    pub fn differences(&self, recorded: &str) -> Vec<String> {
        let pairs = |s: &str| -> Vec<(String, String)> {
            s.split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let theirs = pairs(recorded);
        let mut out = Vec::new();
        for (k, v) in pairs(&self.fingerprint()) {
            match theirs.iter().find(|(tk, _)| *tk == k) {
                Some((_, tv)) if *tv == v => {}
                Some((_, tv)) => out.push(format!("{k}: {v} here, {tv} recorded")),
                None => out.push(format!("{k}: {v} here, not recorded")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        policy: StorePolicyArgs,
    }

    #[test]
    fn the_defaults_are_the_spec_and_the_store_default() {
        let cli = Cli::parse_from(["x"]);
        cli.policy.validate().unwrap();
        let p = cli.policy.policy();
        assert_eq!(p.credit.first_time_limit, Money::sek(1500));
        assert_eq!(p.credit.established_limit, Money::sek(3000));
        assert_eq!(p.credit.threshold_percent, 80);
        assert_eq!(p.fingerprint(), StorePolicy::default().fingerprint());
    }

    #[test]
    fn differences_name_each_field() {
        let a = StorePolicy::default();
        let b = StorePolicy {
            partitions: 32,
            credit: CreditPolicy {
                first_time_limit: Money::sek(2000),
                ..CreditPolicy::default()
            },
            ..StorePolicy::default()
        };
        assert!(a.differences(&a.fingerprint()).is_empty());
        assert_eq!(
            a.differences(&b.fingerprint()),
            vec![
                "partitions: 16 here, 32 recorded".to_string(),
                "first_time_limit_ore: 150000 here, 200000 recorded".to_string(),
            ]
        );
    }
}
