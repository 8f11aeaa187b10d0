//! `callauthctl`: a command-line client for people — support staff, SREs,
//! integrators trying the API. Every command is one gRPC call (or, for
//! `authorize --consent`, the two calls an IVR makes) printed readably.
//!
//! With `--demo` the client picks the public demo token for the role a
//! command needs (IVR, merchant or admin), matching `callauth-gateway --demo`.
//!
//! An `https://` endpoint is reached over TLS, the gateway's certificate
//! checked against `--ca-cert` (a private CA) or the system trust store;
//! `--client-cert`/`--client-key` present a client certificate to a gateway
//! that requires mutual TLS.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use crate::domain::Money;
use crate::gateway::api::convert::{ms_to_timestamp, timestamp_to_ms};
use crate::gateway::catalog_file::{CatalogFile, DEMO};
use crate::pb;

#[derive(Parser, Debug)]
#[command(
    name = "callauthctl",
    version,
    about = "Command-line client for the callauth gateway"
)]
pub struct Cli {
    /// Gateway gRPC endpoint: http://host:port, or https://host:port for TLS.
    #[arg(
        long,
        env = "CALLAUTH_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub endpoint: String,
    /// PEM CA certificate(s) the gateway's certificate is checked against
    /// (https:// only; default: the system trust store).
    #[arg(long, env = "CALLAUTH_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for a gateway that asks for one (mutual TLS).
    #[arg(
        long,
        env = "CALLAUTH_CLIENT_CERT",
        global = true,
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        env = "CALLAUTH_CLIENT_KEY",
        global = true,
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Bearer token (role must fit the command).
    #[arg(long, env = "CALLAUTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Use the public demo token of the role each command needs.
    #[arg(long, global = true)]
    pub demo: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask whether a caller may call a service (as an IVR does).
    Authorize(AuthorizeArgs),
    /// Grow an allowed call's grant.
    Extend {
        #[arg(long)]
        call_id: String,
        #[arg(long, default_value_t = 1)]
        sequence: u32,
    },
    /// Void an unused hold (the caller hung up before the service started).
    Release {
        #[arg(long)]
        call_id: String,
    },
    /// Report a call's usage (as a merchant does).
    Usage(UsageArgs),
    /// Look a service up by its number (public).
    Lookup { service: String },
    /// List services, optionally of one merchant (public).
    Services {
        #[arg(long)]
        merchant: Option<String>,
    },
    /// Show a number's account.
    Account { number: String },
    /// Record a number-directory entry.
    Directory {
        number: String,
        /// false for a secret or unregistered number.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        registered: bool,
    },
    /// Block a number (all services, one merchant or one service).
    Block(BlockArgs),
    /// Lift a block.
    Unblock(BlockArgs),
    /// Change a number's credit limit.
    Limit(LimitArgs),
    /// Prepaid codes.
    #[command(subcommand)]
    Prepaid(PrepaidCommand),
    /// Run a whole demo call against a `--demo` gateway: consent required,
    /// allowed, usage posted, account charged.
    DemoCall {
        #[arg(long, default_value = "070-123 45 67")]
        a_number: String,
        #[arg(long, default_value = "0900-100 10 10")]
        service: String,
        #[arg(long, default_value_t = 185)]
        duration_seconds: i32,
    },
    /// Print a new random client token and the SHA-256 to put in the tokens file.
    GenToken,
}

#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    #[arg(long)]
    pub call_id: String,
    /// The calling number (omit with --withheld).
    #[arg(long)]
    pub a_number: Option<String>,
    #[arg(long)]
    pub withheld: bool,
    #[arg(long)]
    pub service: String,
    /// Prepaid code as typed.
    #[arg(long)]
    pub code: Option<String>,
    /// The caller confirmed both steps for the announced terms (the client
    /// first asks for the terms, then authorizes with consent).
    #[arg(long)]
    pub consent: bool,
    #[arg(long, default_value = "callauthctl")]
    pub ivr_id: String,
    #[arg(long, default_value = "")]
    pub line_ref: String,
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    #[arg(long)]
    pub call_id: String,
    #[arg(long)]
    pub service: String,
    #[arg(long)]
    pub duration_seconds: i32,
    /// Defaults to "<call_id>-1".
    #[arg(long)]
    pub record_id: Option<String>,
    /// Start of the service, Unix milliseconds (default: now − duration).
    #[arg(long)]
    pub started_at_ms: Option<i64>,
}

#[derive(Args, Debug)]
pub struct BlockArgs {
    pub number: String,
    /// Block one merchant's services.
    #[arg(long, conflicts_with = "service")]
    pub merchant: Option<String>,
    /// Block one service.
    #[arg(long)]
    pub service: Option<String>,
    /// Who asked and how (kept in the audit trail).
    #[arg(long)]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct LimitArgs {
    pub number: String,
    /// Lower limit on the holder's request, SEK.
    #[arg(long, group = "change")]
    pub holder_requested: Option<Money>,
    /// Limit after a credit check, SEK (needs --reference).
    #[arg(long, group = "change", requires = "reference")]
    pub credit_decision: Option<Money>,
    #[arg(long)]
    pub reference: Option<String>,
    /// Back to the default limit.
    #[arg(long, group = "change")]
    pub reset: bool,
}

#[derive(Subcommand, Debug)]
pub enum PrepaidCommand {
    /// Issue a new code (printed once).
    Issue {
        #[arg(long)]
        amount: Money,
        #[arg(long)]
        purchase_ref: String,
    },
    /// Add to a code's balance.
    Topup {
        #[arg(long)]
        code: String,
        #[arg(long)]
        amount: Money,
        #[arg(long)]
        topup_ref: String,
    },
    /// Show a code's balance.
    Balance {
        #[arg(long)]
        code: String,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Role {
    Public,
    Ivr,
    Merchant,
    Admin,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn sek(ore: i64) -> String {
    Money::ore_unchecked(ore).to_swedish()
}

struct Client {
    channel: Channel,
    token: Option<String>,
    demo: bool,
}

impl Client {
    fn demo_token(role: Role, merchant: Option<&str>) -> anyhow::Result<Option<String>> {
        let demo = CatalogFile::parse(DEMO)?;
        let wanted = match role {
            Role::Public => return Ok(None),
            Role::Ivr => "ivr",
            Role::Admin => "admin",
            Role::Merchant => "merchant",
        };
        Ok(demo
            .clients
            .iter()
            .find(|c| {
                c.role == wanted && (role != Role::Merchant || c.merchant_id.as_deref() == merchant)
            })
            .and_then(|c| c.token.clone()))
    }

    fn request<T>(&self, msg: T, role: Role, merchant: Option<&str>) -> anyhow::Result<Request<T>> {
        let mut req = Request::new(msg);
        let token = match &self.token {
            Some(t) => Some(t.clone()),
            None if self.demo => Client::demo_token(role, merchant)?,
            None => None,
        };
        if let Some(t) = token {
            let v: MetadataValue<_> = format!("Bearer {t}")
                .parse()
                .context("token is not valid header text")?;
            req.metadata_mut().insert("authorization", v);
        } else if role != Role::Public {
            bail!("this command needs --token (or --demo against a demo gateway)");
        }
        Ok(req)
    }

    fn authorization(&self) -> pb::authorization_client::AuthorizationClient<Channel> {
        pb::authorization_client::AuthorizationClient::new(self.channel.clone())
    }
    fn usage(&self) -> pb::usage_client::UsageClient<Channel> {
        pb::usage_client::UsageClient::new(self.channel.clone())
    }
    fn catalog(&self) -> pb::catalog_client::CatalogClient<Channel> {
        pb::catalog_client::CatalogClient::new(self.channel.clone())
    }
    fn accounts(&self) -> pb::accounts_client::AccountsClient<Channel> {
        pb::accounts_client::AccountsClient::new(self.channel.clone())
    }

    async fn lookup(&self, service: &str) -> anyhow::Result<pb::ServiceInfo> {
        let req = self.request(
            pb::LookupServiceRequest {
                service_number: service.to_string(),
            },
            Role::Public,
            None,
        )?;
        Ok(self.catalog().lookup_service(req).await?.into_inner())
    }
}

fn print_terms(t: &pb::Terms) {
    println!(
        "  terms {}: {} per minute incl. {} % VAT, billed per {} s, minimum {} min ({})",
        t.terms_id,
        sek(t.price_per_minute_ore),
        t.vat_rate_percent,
        t.billing_step_seconds,
        t.minimum_minutes,
        sek(t.minimum_charge_ore)
    );
    println!("  announce: {}", t.announcement_sv);
}

fn print_authorize(r: &pb::AuthorizeResponse) {
    let decision =
        pb::Decision::try_from(r.decision).map_or("?".into(), |d| d.as_str_name().to_string());
    let reason = pb::Reason::try_from(r.reason).map_or("?".into(), |d| d.as_str_name().to_string());
    println!(
        "{decision} ({reason}){}",
        if r.replayed { " [replayed]" } else { "" }
    );
    if r.decision == pb::Decision::Allowed as i32 {
        let funding =
            pb::Funding::try_from(r.funding).map_or("?".into(), |f| f.as_str_name().to_string());
        println!(
            "  granted {} s, holding {} ({funding})",
            r.granted_seconds,
            sek(r.hold_ore)
        );
    }
    match &r.terms {
        Some(t) if r.decision == pb::Decision::ConsentRequired as i32 => print_terms(t),
        Some(t) => println!("  terms {}", t.terms_id),
        None => {}
    }
}

fn print_account(v: &pb::AccountView) {
    println!("account {}", v.number);
    println!(
        "  directory: {}",
        match (v.in_directory, v.holder_registered) {
            (false, _) => "not listed",
            (true, false) => "listed, holder not registered",
            (true, true) => "registered holder",
        }
    );
    let source = pb::LimitSource::try_from(v.limit_source)
        .map_or("?".into(), |s| s.as_str_name().to_string());
    println!(
        "  limit {} ({source}){}",
        sek(v.limit_ore),
        if v.established { ", established" } else { "" }
    );
    println!(
        "  unbilled {}, invoiced unpaid {}, pending {} in {} call(s)",
        sek(v.unbilled_ore),
        sek(v.invoiced_unpaid_ore),
        sek(v.pending_ore),
        v.pending_calls
    );
    println!(
        "  exposure {}, available {}",
        sek(v.exposure_ore),
        sek(v.available_ore)
    );
    let mut blocks = Vec::new();
    if v.blocked_all_services {
        blocks.push("all services (holder)".to_string());
    }
    blocks.extend(v.blocked_merchants.iter().map(|m| format!("merchant {m}")));
    blocks.extend(v.blocked_services.iter().map(|s| format!("service {s}")));
    if v.credit_blocked {
        blocks.push("credit limit reached".into());
    }
    if v.overdue_blocked {
        blocks.push("overdue invoice".into());
    }
    println!(
        "  blocks: {}",
        if blocks.is_empty() {
            "none".into()
        } else {
            blocks.join(", ")
        }
    );
    if v.threshold_reached {
        println!("  80 % threshold reached: an invoice is on its way");
    }
}

fn print_ack(a: &pb::UsageAck) {
    let result =
        pb::UsageResult::try_from(a.result).map_or("?".into(), |r| r.as_str_name().to_string());
    if a.result == pb::UsageResult::Rejected as i32 {
        let reason = pb::UsageRejectReason::try_from(a.reject_reason)
            .map_or("?".into(), |r| r.as_str_name().to_string());
        println!("{result} ({reason}): {}", a.detail);
    } else {
        println!(
            "{result}: charged {} for {} s billed{}",
            sek(a.charge_ore),
            a.billed_seconds,
            if a.overrun_seconds > 0 {
                format!(", {} s past the grant", a.overrun_seconds)
            } else {
                String::new()
            }
        );
    }
}

/// The channel to `--endpoint`: TLS for https://, with the CA and client
/// certificate flags.
async fn connect(cli: &Cli) -> anyhow::Result<Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut endpoint = Endpoint::from_shared(cli.endpoint.clone()).context("invalid --endpoint")?;
    let tls = cli.endpoint.starts_with("https://");
    if !tls && (cli.ca_cert.is_some() || cli.client_cert.is_some()) {
        bail!("--ca-cert and --client-cert need an https:// endpoint");
    }
    if tls {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut config = match &cli.ca_cert {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(config).context("TLS configuration")?;
    }
    Ok(endpoint.connect().await?)
}

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::GenToken = cli.command {
        let bytes: [u8; 24] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        println!("token        {token}");
        println!("token_sha256 {}", crate::auth::token_sha256_hex(&token));
        return Ok(0);
    }
    let channel = connect(&cli)
        .await
        .with_context(|| format!("cannot reach the gateway at {}", cli.endpoint))?;
    let c = Client {
        channel,
        token: cli.token.clone(),
        demo: cli.demo,
    };
    match cli.command {
        Command::Authorize(a) => {
            let r = authorize(&c, &a).await?;
            print_authorize(&r);
        }
        Command::Extend { call_id, sequence } => {
            let req = c.request(pb::ExtendRequest { call_id, sequence }, Role::Ivr, None)?;
            let r = c.authorization().extend(req).await?.into_inner();
            let reason =
                pb::Reason::try_from(r.reason).map_or("?".into(), |d| d.as_str_name().to_string());
            println!(
                "{reason}: granted {} s in total (+{} s), holding {}",
                r.granted_seconds_total,
                r.added_seconds,
                sek(r.hold_ore)
            );
        }
        Command::Release { call_id } => {
            let req = c.request(pb::ReleaseRequest { call_id }, Role::Ivr, None)?;
            let r = c.authorization().release(req).await?.into_inner();
            let outcome = pb::ReleaseOutcome::try_from(r.outcome)
                .map_or("?".into(), |o| o.as_str_name().to_string());
            println!("{outcome}: released {}", sek(r.released_ore));
        }
        Command::Usage(u) => {
            let ack = usage(&c, &u).await?;
            print_ack(&ack);
            if ack.result == pb::UsageResult::Rejected as i32 {
                return Ok(2);
            }
        }
        Command::Lookup { service } => {
            let s = c.lookup(&service).await?;
            println!(
                "{} {} — {} ({}), merchant {} ({}){}",
                s.service_number_national,
                s.service_number,
                s.name,
                s.category,
                s.merchant_name,
                s.merchant_id,
                if s.active { "" } else { " [suspended]" }
            );
            if let Some(t) = &s.terms {
                print_terms(t);
            }
        }
        Command::Services { merchant } => {
            let req = c.request(
                pb::ListServicesRequest {
                    merchant_id: merchant.unwrap_or_default(),
                },
                Role::Public,
                None,
            )?;
            for s in c.catalog().list_services(req).await?.into_inner().services {
                let t = s.terms.unwrap_or_default();
                println!(
                    "{:<16} {:<22} {:>12}/min min {} min  step {:>2} s  {}",
                    s.service_number_national,
                    s.name,
                    sek(t.price_per_minute_ore),
                    t.minimum_minutes,
                    t.billing_step_seconds,
                    s.merchant_id
                );
            }
        }
        Command::Account { number } => {
            let req = c.request(pb::GetAccountRequest { number }, Role::Admin, None)?;
            print_account(&c.accounts().get_account(req).await?.into_inner());
        }
        Command::Directory { number, registered } => {
            let req = c.request(
                pb::DirectoryEntry {
                    number,
                    holder_registered: registered,
                },
                Role::Admin,
                None,
            )?;
            print_account(&c.accounts().put_directory_entry(req).await?.into_inner());
        }
        Command::Block(b) => set_block(&c, b, true).await?,
        Command::Unblock(b) => set_block(&c, b, false).await?,
        Command::Limit(l) => {
            use pb::set_credit_limit_request::Change;
            let change = if let Some(m) = l.holder_requested {
                Change::HolderRequestedOre(m.ore())
            } else if let Some(m) = l.credit_decision {
                Change::CreditDecision(pb::CreditDecision {
                    limit_ore: m.ore(),
                    credit_check_reference: l.reference.unwrap_or_default(),
                    decided_by: "callauthctl".into(),
                })
            } else if l.reset {
                Change::ResetToDefault(true)
            } else {
                bail!("give --holder-requested, --credit-decision or --reset");
            };
            let req = c.request(
                pb::SetCreditLimitRequest {
                    number: l.number,
                    change: Some(change),
                },
                Role::Admin,
                None,
            )?;
            print_account(&c.accounts().set_credit_limit(req).await?.into_inner());
        }
        Command::Prepaid(p) => prepaid(&c, p).await?,
        Command::DemoCall {
            a_number,
            service,
            duration_seconds,
        } => demo_call(&c, &a_number, &service, duration_seconds).await?,
        Command::GenToken => unreachable!("handled above"),
    }
    Ok(0)
}

async fn set_block(c: &Client, b: BlockArgs, blocked: bool) -> anyhow::Result<()> {
    let (scope, target) = match (&b.merchant, &b.service) {
        (Some(m), _) => (pb::BlockScope::Merchant, m.clone()),
        (None, Some(s)) => (pb::BlockScope::Service, s.clone()),
        (None, None) => (pb::BlockScope::AllServices, String::new()),
    };
    let req = c.request(
        pb::SetBlockRequest {
            number: b.number,
            scope: scope as i32,
            target,
            blocked,
            reason: b.reason,
        },
        Role::Admin,
        None,
    )?;
    print_account(&c.accounts().set_block(req).await?.into_inner());
    Ok(())
}

async fn authorize(c: &Client, a: &AuthorizeArgs) -> anyhow::Result<pb::AuthorizeResponse> {
    let mut msg = pb::AuthorizeRequest {
        call_id: a.call_id.clone(),
        a_number: a.a_number.clone().unwrap_or_default(),
        number_withheld: a.withheld,
        service_number: a.service.clone(),
        prepaid_code: a.code.clone().unwrap_or_default(),
        consent: None,
        ivr_id: a.ivr_id.clone(),
        line_ref: a.line_ref.clone(),
    };
    let first = c
        .authorization()
        .authorize(c.request(msg.clone(), Role::Ivr, None)?)
        .await?
        .into_inner();
    if !a.consent || first.decision != pb::Decision::ConsentRequired as i32 {
        return Ok(first);
    }
    print_authorize(&first);
    println!("(the caller presses 1 twice)");
    let terms_id = first.terms.map(|t| t.terms_id).unwrap_or_default();
    let now = ms_to_timestamp(now_ms());
    msg.consent = Some(pb::Consent {
        age_confirmed: true,
        own_number_confirmed: a.code.is_none(),
        step1_at: Some(now),
        terms_accepted: true,
        step2_at: Some(now),
        terms_id,
    });
    Ok(c.authorization()
        .authorize(c.request(msg, Role::Ivr, None)?)
        .await?
        .into_inner())
}

async fn usage(c: &Client, u: &UsageArgs) -> anyhow::Result<pb::UsageAck> {
    let merchant = if c.demo && c.token.is_none() {
        Some(c.lookup(&u.service).await?.merchant_id)
    } else {
        None
    };
    let started = u
        .started_at_ms
        .unwrap_or_else(|| now_ms() - i64::from(u.duration_seconds.max(0)) * 1000);
    let record = pb::UsageRecord {
        record_id: u
            .record_id
            .clone()
            .unwrap_or_else(|| format!("{}-1", u.call_id)),
        call_id: u.call_id.clone(),
        service_number: u.service.clone(),
        started_at: Some(ms_to_timestamp(started)),
        duration_seconds: u.duration_seconds,
    };
    let req = c.request(record, Role::Merchant, merchant.as_deref())?;
    Ok(c.usage().report_one(req).await?.into_inner())
}

async fn prepaid(c: &Client, p: PrepaidCommand) -> anyhow::Result<()> {
    let print_balance = |b: &pb::PrepaidBalance| {
        let issued = b.issued_at.as_ref().map(timestamp_to_ms).unwrap_or(0);
        println!(
            "code {}: balance {}, pending {} (issued at {} ms)",
            b.code_id,
            sek(b.balance_ore),
            sek(b.pending_ore),
            issued
        );
    };
    match p {
        PrepaidCommand::Issue {
            amount,
            purchase_ref,
        } => {
            let req = c.request(
                pb::IssuePrepaidCodeRequest {
                    amount_ore: amount.ore(),
                    purchase_ref,
                },
                Role::Admin,
                None,
            )?;
            let r = c.accounts().issue_prepaid_code(req).await?.into_inner();
            if r.already_issued {
                println!("already issued for this purchase: code {} (balance {}); the code itself cannot be shown again", r.code_id, sek(r.balance_ore));
            } else {
                println!(
                    "code {}  (id {}, balance {}) — shown once, deliver it now",
                    r.code,
                    r.code_id,
                    sek(r.balance_ore)
                );
            }
        }
        PrepaidCommand::Topup {
            code,
            amount,
            topup_ref,
        } => {
            let req = c.request(
                pb::TopUpPrepaidCodeRequest {
                    code,
                    amount_ore: amount.ore(),
                    topup_ref,
                },
                Role::Admin,
                None,
            )?;
            print_balance(&c.accounts().top_up_prepaid_code(req).await?.into_inner());
        }
        PrepaidCommand::Balance { code } => {
            let req = c.request(pb::GetPrepaidBalanceRequest { code }, Role::Admin, None)?;
            print_balance(&c.accounts().get_prepaid_balance(req).await?.into_inner());
        }
    }
    Ok(())
}

async fn demo_call(c: &Client, a_number: &str, service: &str, duration: i32) -> anyhow::Result<()> {
    let call_id = format!("demo-{}", now_ms());
    println!("== 1. the IVR asks; the caller hears the terms and confirms both steps");
    let args = AuthorizeArgs {
        call_id: call_id.clone(),
        a_number: Some(a_number.to_string()),
        withheld: false,
        service: service.to_string(),
        code: None,
        consent: true,
        ivr_id: "demo-ivr".into(),
        line_ref: String::new(),
    };
    let allowed = authorize(c, &args).await?;
    print_authorize(&allowed);
    if allowed.decision != pb::Decision::Allowed as i32 {
        bail!("the demo call was not allowed");
    }
    println!("== 2. the call ends after {duration} s; the merchant reports it");
    let ack = usage(
        c,
        &UsageArgs {
            call_id,
            service: service.to_string(),
            duration_seconds: duration,
            record_id: None,
            started_at_ms: None,
        },
    )
    .await?;
    print_ack(&ack);
    println!("== 3. the account");
    let req = c.request(
        pb::GetAccountRequest {
            number: a_number.to_string(),
        },
        Role::Admin,
        None,
    )?;
    print_account(&c.accounts().get_account(req).await?.into_inner());
    Ok(())
}
