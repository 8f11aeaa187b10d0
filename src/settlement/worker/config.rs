//! `callauth-settlement`'s configuration: one `clap` struct, every flag also
//! an environment variable, secrets never printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::Money;
use crate::settlement::interest;
use crate::settlement::policy::SettlementPolicy;

#[derive(Parser, Debug)]
#[command(
    name = "callauth-settlement",
    version,
    about = "The callauth settlement worker: the PostgreSQL ledger, invoices, payments, reminders, collection, merchant settlements"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// PostgreSQL URL of the ledger. TLS: `?sslmode=require` (encrypted),
    /// `verify-ca` or `verify-full` (the server's certificate checked against
    /// `sslrootcert=/path/ca.crt`, or the system trust store; verify-full
    /// also checks the host name); `sslcert=`/`sslkey=` for a client certificate.
    #[arg(
        long,
        env = "CALLAUTH_DATABASE_URL",
        hide_env_values = true,
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/callauth"
    )]
    pub database_url: String,

    /// The gateway's state store: redis://host:port or redis+cluster://host:port,…
    /// (rediss:// and rediss+cluster:// for TLS).
    #[arg(
        long,
        env = "CALLAUTH_STORE",
        global = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub store: String,

    /// Prefix of every Redis key (as the gateways use).
    #[arg(
        long,
        env = "CALLAUTH_REDIS_PREFIX",
        global = true,
        default_value = "ca"
    )]
    pub redis_prefix: String,

    /// How long a Redis command may take before it fails, milliseconds.
    /// Longer than the gateways' 250 ms: the worker reads whole batches from
    /// the event streams, and with the gateways busy on the same Redis a
    /// 250 ms read timed out on every run of the issue 13.3 measurement (a
    /// failed read is retried; nothing is lost, but nothing moves either).
    #[arg(
        long,
        env = "CALLAUTH_SETTLEMENT_REDIS_TIMEOUT_MS",
        global = true,
        default_value_t = 2000
    )]
    pub redis_timeout_ms: u64,

    /// The rules the state store applies (the gateways' own flags; the
    /// store records them and a worker with others refuses to start).
    #[command(flatten)]
    pub store_policy: crate::store::policy::StorePolicyArgs,

    /// Act as at this instant instead of the system clock, for rehearsals
    /// and simulated months: an RFC 3339 time or a date (12:00 Stockholm).
    /// One-off commands stay at it; `run` starts there and runs on.
    #[arg(long, env = "CALLAUTH_SETTLEMENT_NOW", global = true)]
    pub now: Option<String>,

    /// Log format: text or json.
    #[arg(
        long,
        env = "CALLAUTH_LOG_FORMAT",
        global = true,
        default_value = "text"
    )]
    pub log_format: String,

    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub redis_tls: crate::store::redis::RedisTlsArgs,
}

/// The settlement rules (SPEC R11–R20); defaults from the seeds.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Day of the month of the monthly invoice run (R11).
    #[arg(
        long,
        env = "CALLAUTH_INVOICE_DAY",
        global = true,
        default_value_t = 15
    )]
    pub invoice_day: u32,
    /// Days until a threshold invoice is due.
    #[arg(
        long,
        env = "CALLAUTH_THRESHOLD_DUE_DAYS",
        global = true,
        default_value_t = 14
    )]
    pub threshold_due_days: u32,
    /// Fee on a paper invoice, SEK (R13).
    #[arg(
        long,
        env = "CALLAUTH_PAPER_INVOICE_FEE_SEK",
        global = true,
        default_value = "30"
    )]
    pub paper_invoice_fee_sek: Money,
    /// The VAT rate included in the paper-invoice fee, percent (25, 12, 6 or 0).
    #[arg(
        long,
        env = "CALLAUTH_PAPER_INVOICE_FEE_VAT_PERCENT",
        global = true,
        default_value_t = 25
    )]
    pub paper_invoice_fee_vat_percent: u32,
    /// Below this, an invoice is carried to the next period (R14); off when absent.
    #[arg(long, env = "CALLAUTH_MINIMUM_INVOICE_SEK", global = true)]
    pub minimum_invoice_sek: Option<Money>,
    /// Bank days a payment made on a deadline may take to reach us (R15);
    /// a claim is overdue, and the ladder's next step due, only after them.
    #[arg(
        long,
        env = "CALLAUTH_PAYMENT_GRACE_BANK_DAYS",
        global = true,
        default_value_t = 3
    )]
    pub payment_grace_bank_days: u32,
    /// Days after the due date before a reminder (R16).
    #[arg(
        long,
        env = "CALLAUTH_REMINDER_AFTER_DAYS",
        global = true,
        default_value_t = 5
    )]
    pub reminder_after_days: u32,
    /// The reminder fee, SEK (at most 60).
    #[arg(
        long,
        env = "CALLAUTH_REMINDER_FEE_SEK",
        global = true,
        default_value = "60"
    )]
    pub reminder_fee_sek: Money,
    /// The collection fee, SEK (at most 180).
    #[arg(
        long,
        env = "CALLAUTH_COLLECTION_FEE_SEK",
        global = true,
        default_value = "180"
    )]
    pub collection_fee_sek: Money,
    /// A file of reference rates ("2026-01-01 2.00" per line); the built-in table otherwise.
    #[arg(long, env = "CALLAUTH_REFERENCE_RATES_FILE", global = true)]
    pub reference_rates_file: Option<PathBuf>,
    /// Day of the month on which merchants are settled for the previous month (R20).
    #[arg(
        long,
        env = "CALLAUTH_MERCHANT_SETTLEMENT_DAY",
        global = true,
        default_value_t = 1
    )]
    pub merchant_settlement_day: u32,
    /// Years after the end of a record's year that bookkeeping records are
    /// kept (Bokföringslagen 7 kap. 2 §: at least 7).
    #[arg(
        long,
        env = "CALLAUTH_BOOKKEEPING_RETENTION_YEARS",
        global = true,
        default_value_t = 7
    )]
    pub bookkeeping_retention_years: u32,
    /// Years after the end of a call's year that its consent evidence and
    /// call detail are kept (at least 3: the limitation period).
    #[arg(
        long,
        env = "CALLAUTH_EVIDENCE_RETENTION_YEARS",
        global = true,
        default_value_t = 3
    )]
    pub evidence_retention_years: u32,
    /// Our bankgiro number, printed on invoices.
    #[arg(
        long,
        env = "CALLAUTH_BANKGIRO",
        global = true,
        default_value = "991-2346"
    )]
    pub bankgiro: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Run the worker: consume events, push account changes, run the daily
    /// calendar, serve the Settlement API, Swish callbacks and /metrics.
    Run(Box<RunArgs>),
    /// Run the calendar (monthly invoices on the invoice day, reminders and
    /// collection, installment checks, merchant settlements) for one date.
    RunOnce {
        /// The Stockholm date to run, e.g. 2026-12-15.
        #[arg(long)]
        at: chrono::NaiveDate,
    },
    /// Import a Bankgirot BgMax payment file (each file once).
    ImportBgmax { file: PathBuf },
    /// Commit the events of an embedded gateway's JSON-lines outbox file.
    IngestJsonl { file: PathBuf },
    /// Compare the state store with the ledger (after consuming all events);
    /// with --repair, overwrite the store's amounts with the ledger's.
    Reconcile {
        #[arg(long)]
        repair: bool,
    },
    /// Print everything held about a number (R21), as text or JSON.
    Extract {
        number: String,
        #[arg(long)]
        json: bool,
    },
    /// Erase what may be erased about a number (R21).
    Erase { number: String },
    /// Print merchant statements.
    Statements {
        #[arg(long)]
        merchant: Option<String>,
    },
    /// List the account changes the state store refused (repaired by
    /// `reconcile --repair`).
    RefusedStoreOps,
    /// Take a 0 SEK payment or a BgMax deduction out of the manual queue
    /// (a deduction is written off), with a reason (R15).
    DismissPayment {
        /// The payment id (as `ListUnmatchedPayments` shows it).
        payment_id: i64,
        #[arg(long)]
        reason: String,
        /// Who decides (recorded in the audit log).
        #[arg(long)]
        by: String,
    },
    /// The mailing system's queue (R13): queued documents, reports of sent
    /// or bounced ones (a bounced e-mail falls back to paper), held invoices.
    Documents {
        #[command(subcommand)]
        action: DocumentsAction,
    },
    /// Delete or anonymise what is past its retention (Bokföringslagen
    /// 7 kap. 2 §: the 7th year after the record's year; consent evidence
    /// and call detail after 3 years), as of a Stockholm date (today by default).
    Retention {
        #[arg(long)]
        at: Option<chrono::NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DocumentsAction {
    /// List queued documents, oldest first; with --out, write each PDF to `DIR/<id>.pdf`.
    List {
        /// email or paper (both when absent).
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Report a document sent.
    Sent { id: i64 },
    /// Report an e-mail bounced: a paper copy is queued in its place, without a fee.
    Bounced {
        id: i64,
        /// The mail system's reason (at most 500 characters).
        #[arg(long, default_value = "")]
        detail: String,
    },
    /// List invoices held because the holder has no postal or e-mail address.
    Held,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// gRPC listen address (the Settlement API and health).
    #[arg(
        long,
        env = "CALLAUTH_SETTLEMENT_GRPC_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub grpc_listen: SocketAddr,
    /// HTTP listen address: /metrics, /healthz, /readyz and the Swish callback.
    #[arg(
        long,
        env = "CALLAUTH_SETTLEMENT_HTTP_LISTEN",
        default_value = "127.0.0.1:9091"
    )]
    pub http_listen: SocketAddr,
    /// Client tokens (the same TOML format as the gateway's).
    #[arg(long, env = "CALLAUTH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// The prepaid-code key (as the gateways use), for issuing codes at pick-up.
    #[arg(long, env = "CALLAUTH_PREPAID_CODE_KEY", hide_env_values = true)]
    pub prepaid_code_key: Option<String>,
    /// Secret path segment of the Swish callback URL (`/swish/callback/<token>`).
    #[arg(long, env = "CALLAUTH_SWISH_CALLBACK_TOKEN", hide_env_values = true)]
    pub swish_callback_token: Option<String>,
    /// Stockholm time of day (HH:MM) of the daily calendar run.
    #[arg(long, env = "CALLAUTH_DAILY_RUN_AT", default_value = "06:00")]
    pub daily_run_at: chrono::NaiveTime,
    /// This replica's index and the number of replicas: replica i consumes
    /// the partitions p with p % count == i.
    #[arg(long, env = "CALLAUTH_REPLICA_INDEX", default_value_t = 0)]
    pub replica_index: u32,
    #[arg(long, env = "CALLAUTH_REPLICA_COUNT", default_value_t = 1)]
    pub replica_count: u32,
    /// Consumer name in the consumer group (defaults to the host name).
    #[arg(long, env = "CALLAUTH_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Events per batch.
    #[arg(long, env = "CALLAUTH_BATCH", default_value_t = 500)]
    pub batch: usize,
    /// Failed deliveries of one event before it is dead-lettered.
    #[arg(long, env = "CALLAUTH_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u32,
    /// Entries idle this long at another consumer are taken over, seconds.
    #[arg(long, env = "CALLAUTH_CLAIM_IDLE_SECONDS", default_value_t = 60)]
    pub claim_idle_seconds: u64,
    /// Database connections.
    #[arg(long, env = "CALLAUTH_DB_POOL", default_value_t = 8)]
    pub db_pool: u32,
    /// Partitions committed at the same time, each on its own connection
    /// (at most the pool size less two, for the API and the calendar).
    #[arg(long, env = "CALLAUTH_INGEST_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub ingest_concurrency: u32,
    /// TLS for the gRPC and HTTP listeners (the Swish callback needs it).
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

impl Common {
    pub fn store_policy(&self) -> crate::store::StorePolicy {
        self.store_policy.policy()
    }

    pub fn redis_config(&self) -> crate::store::redis::RedisConfig {
        let mut c = crate::store::redis::RedisConfig::new(&self.store);
        c.prefix = self.redis_prefix.clone();
        c.tls = self.redis_tls.files();
        c.response_timeout = Duration::from_millis(self.redis_timeout_ms);
        c
    }
}

impl RunArgs {
    pub fn claim_idle(&self) -> Duration {
        Duration::from_secs(self.claim_idle_seconds)
    }
}

impl PolicyArgs {
    pub fn policy(&self) -> anyhow::Result<SettlementPolicy> {
        anyhow::ensure!(
            (1..=28).contains(&self.invoice_day),
            "--invoice-day must be 1–28"
        );
        anyhow::ensure!(
            (1..=28).contains(&self.merchant_settlement_day),
            "--merchant-settlement-day must be 1–28"
        );
        anyhow::ensure!(
            !self.reminder_fee_sek.is_negative() && self.reminder_fee_sek <= Money::sek(60),
            "--reminder-fee-sek is at most 60 (lag 1981:739)"
        );
        anyhow::ensure!(
            !self.collection_fee_sek.is_negative() && self.collection_fee_sek <= Money::sek(180),
            "--collection-fee-sek is at most 180 (lag 1981:739)"
        );
        anyhow::ensure!(
            (7..=50).contains(&self.bookkeeping_retention_years),
            "--bookkeeping-retention-years is 7–50 (Bokföringslagen 7 kap. 2 §)"
        );
        anyhow::ensure!(
            (3..=self.bookkeeping_retention_years).contains(&self.evidence_retention_years),
            "--evidence-retention-years is at least 3 (the limitation period) and at most the bookkeeping years"
        );
        let mut p = SettlementPolicy {
            invoice_day: self.invoice_day,
            threshold_due_days: self.threshold_due_days,
            paper_invoice_fee: self.paper_invoice_fee_sek,
            paper_invoice_fee_vat: crate::domain::VatRate::from_percent(
                self.paper_invoice_fee_vat_percent,
            )
            .map_err(|e| anyhow::anyhow!("--paper-invoice-fee-vat-percent: {e}"))?,
            minimum_invoice_amount: self.minimum_invoice_sek,
            payment_grace_bank_days: self.payment_grace_bank_days,
            reminder_after_days: self.reminder_after_days,
            reminder_fee: self.reminder_fee_sek,
            collection_fee: self.collection_fee_sek,
            merchant_settlement_day: self.merchant_settlement_day,
            bankgiro: self.bankgiro.clone(),
            bookkeeping_retention_years: self.bookkeeping_retention_years,
            evidence_retention_years: self.evidence_retention_years,
            ..SettlementPolicy::default()
        };
        if let Some(path) = &self.reference_rates_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            p.reference_rates = interest::parse_table(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(p)
    }
}
