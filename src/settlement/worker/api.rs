//! The `callauth.v1.Settlement` gRPC service. Merchants (merchant tokens)
//! read their own statements and the marketing opt-out list; everything else
//! needs an admin token. Generated types stop here.
//!
//! Every string field is checked here, before the ledger sees it (issue 10):
//! numbers and merchant ids by their grammar, OCR references as digits, and
//! free text (names, addresses, e-mail, reasons) by the one rule of
//! [`crate::domain::text`] — a documented maximum length (the constants below,
//! and the table in `docs/api.md`) and no control characters. PostgreSQL
//! refuses NUL in `text` and `jsonb`: a NUL in a holder's name once reached
//! the database and came back as INTERNAL. Errors name the field, never its
//! value (names, addresses and numbers are personal data).

use std::sync::Arc;

use chrono::NaiveDate;
use tonic::{Request, Response, Status};

use crate::auth::{principal, require_admin, Role};
use crate::domain::text::{self, TextError};
use crate::domain::{CodeHasher, CodeId, MerchantId, Money, E164};
use crate::pb;
use crate::settlement::billing::delivery::{self, Outcome};
use crate::settlement::billing::route::Channel;
use crate::settlement::context::{Settlement, SettlementError};
use crate::settlement::payments::prepaid_orders::{self, OrderKind, OrderRef, PickedUp};
use crate::settlement::payments::{self, MatchTarget};
use crate::settlement::privacy::personal::{self, HolderInput};
use crate::settlement::{
    billing::merchants, collection::disputes, collection::ladder, collection::plans,
    sync::projector,
};
use crate::store::Store;

pub struct SettlementApi<S: Store> {
    pub settlement: Arc<Settlement<S>>,
    /// Needed to issue prepaid codes at pick-up; without it pick-up is refused.
    pub hasher: Option<CodeHasher>,
}

/// The shared mapping ([`crate::status`]), typed for this API's errors.
pub fn to_status(e: SettlementError) -> Status {
    crate::status::to_status(e)
}

/// A holder's name, as printed on invoices.
pub const MAX_HOLDER_NAME_CHARS: usize = 200;
/// A postal address: at most this many lines of at most this many characters.
pub const MAX_ADDRESS_LINES: usize = 6;
pub const MAX_ADDRESS_LINE_CHARS: usize = 100;
/// Another address for direct marketing (R22), one line.
pub const MAX_MARKETING_ADDRESS_CHARS: usize = 300;
/// A dispute's reason and its resolution.
pub const MAX_DISPUTE_TEXT_CHARS: usize = 1000;
/// Where a prepaid code or receipt goes: a number or an e-mail address.
pub const MAX_DELIVER_TO_CHARS: usize = 200;
/// A pick-up secret (48 hex digits when made here).
pub const MAX_PICKUP_SECRET_CHARS: usize = 128;
/// Bankgiro OCR references are at most 25 digits.
pub const MAX_OCR_DIGITS: usize = 25;
/// `invoice_delivery` ("email" or "paper") and `personal_number` (12 digits)
/// as received, before their own checks.
const MAX_DELIVERY_CHARS: usize = 16;
const MAX_PERSONAL_NUMBER_CHARS: usize = 16;
/// A phone number as written ("+46 (0)70-123 45 67" is 19 characters).
const MAX_NUMBER_CHARS: usize = 32;

fn date(field: &str, s: &str) -> Result<NaiveDate, Status> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Status::invalid_argument(format!("{field}: a date like 2026-12-15")))
}

fn text_status(e: TextError) -> Status {
    crate::status::to_status(e)
}

/// Free text of at most `max_chars`, trimmed (empty allowed).
fn free_text<'a>(field: &'static str, s: &'a str, max_chars: usize) -> Result<&'a str, Status> {
    Ok(text::checked_text(field, s, max_chars)
        .map_err(text_status)?
        .trim())
}

/// A phone number (E.164 or Swedish national form), never echoed in errors.
fn number(field: &'static str, s: &str) -> Result<E164, Status> {
    text::checked_text(field, s, MAX_NUMBER_CHARS).map_err(text_status)?;
    E164::parse(s).map_err(|e| Status::invalid_argument(format!("{field} {e}")))
}

/// An OCR reference: 2–25 digits.
fn ocr<'a>(field: &'static str, s: &'a str) -> Result<&'a str, Status> {
    text::checked_digits(field, s.trim(), 2, MAX_OCR_DIGITS, "must be 2–25 digits")
        .map_err(text_status)
}

fn actor<T>(req: &Request<T>) -> Result<String, Status> {
    Ok(require_admin(req)?.client_id.clone())
}

fn statement_pb(s: &merchants::Statement) -> pb::Statement {
    pb::Statement {
        id: s.id,
        merchant_id: s.merchant_id.clone(),
        period_start: s.period_start.to_string(),
        period_end: s.period_end.to_string(),
        calls: s.calls,
        gross_ore: s.gross_ore,
        fee_ore: s.fee_ore,
        net_ore: s.net_ore,
        payout_reference: s.payout_reference.clone().unwrap_or_default(),
        vat_ore: s.vat_ore,
        chargeback_ore: s.chargeback_ore,
    }
}

fn holder_pb(h: personal::Holder) -> pb::Holder {
    pb::Holder {
        id: h.id,
        customer_number: h.customer_number,
        name: h.name.unwrap_or_default(),
        address_lines: h.address_lines,
        email: h.email.unwrap_or_default(),
        invoice_delivery: h.invoice_delivery,
        marketing_opt_out: h.marketing_opt_out,
        marketing_address: h.marketing_address.unwrap_or_default(),
        numbers: h.numbers,
    }
}

fn dispute_pb(d: disputes::Dispute) -> pb::Dispute {
    pb::Dispute {
        id: d.id,
        invoice_id: d.invoice_id,
        reason: d.reason,
        status: d.status.as_str().to_string(),
        resolution: d.resolution.unwrap_or_default(),
        evidence_json: d.evidence.to_string(),
    }
}

/// The merchant a request may read: its own (merchant token) or any (admin).
fn merchant_scope<T>(req: &Request<T>, asked: &str) -> Result<Option<String>, Status> {
    let p = principal(req)?;
    match &p.role {
        Role::Admin => Ok((!asked.is_empty()).then(|| asked.to_string())),
        Role::Merchant(m) => {
            if !asked.is_empty() && asked != m.as_str() {
                return Err(Status::permission_denied(
                    "a merchant sees only its own statements",
                ));
            }
            Ok(Some(m.to_string()))
        }
        Role::Ivr => Err(Status::permission_denied(
            "statements are for merchants and administrators",
        )),
    }
}

#[tonic::async_trait]
impl<S: Store> pb::settlement_server::Settlement for SettlementApi<S> {
    async fn list_statements(
        &self,
        req: Request<pb::ListStatementsRequest>,
    ) -> Result<Response<pb::ListStatementsResponse>, Status> {
        let asked = &req.get_ref().merchant_id;
        if !asked.is_empty() {
            MerchantId::parse(asked)
                .map_err(|e| Status::invalid_argument(format!("merchant_id: {e}")))?;
        }
        let scope = merchant_scope(&req, asked)?;
        let list = merchants::statements(&self.settlement.pool, scope.as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListStatementsResponse {
            statements: list.iter().map(statement_pb).collect(),
        }))
    }

    async fn get_statement(
        &self,
        req: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::StatementDetail>, Status> {
        let scope = merchant_scope(&req, "")?;
        let id = req.get_ref().statement_id;
        let all = merchants::statements(&self.settlement.pool, scope.as_deref())
            .await
            .map_err(to_status)?;
        let st = all
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Status::not_found(format!("statement {id}")))?;
        let lines = merchants::statement_lines(&self.settlement.pool, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::StatementDetail {
            statement: Some(statement_pb(st)),
            lines: lines
                .into_iter()
                .map(|l| pb::StatementLine {
                    service_number: l.service_number,
                    funding: l.funding,
                    calls: l.calls,
                    billed_seconds: l.billed_seconds,
                    gross_ore: l.gross_ore,
                    vat_rate_percent: l.vat_rate_percent,
                    vat_ore: l.vat_ore,
                })
                .collect(),
        }))
    }

    async fn list_marketing_opt_outs(
        &self,
        req: Request<pb::ListMarketingOptOutsRequest>,
    ) -> Result<Response<pb::ListMarketingOptOutsResponse>, Status> {
        match principal(&req)?.role {
            Role::Admin | Role::Merchant(_) => {}
            Role::Ivr => {
                return Err(Status::permission_denied(
                    "the opt-out list is for merchants",
                ))
            }
        }
        let numbers = personal::marketing_opt_outs(&self.settlement.pool)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListMarketingOptOutsResponse { numbers }))
    }

    async fn upsert_holder(
        &self,
        req: Request<pb::UpsertHolderRequest>,
    ) -> Result<Response<pb::Holder>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let number = number("number", &r.number)?;
        let name = free_text("name", &r.name, MAX_HOLDER_NAME_CHARS)?;
        if r.address_lines.len() > MAX_ADDRESS_LINES {
            return Err(Status::invalid_argument(format!(
                "address_lines has more than {MAX_ADDRESS_LINES} lines"
            )));
        }
        let address_lines = r
            .address_lines
            .iter()
            .map(|l| free_text("address_lines", l, MAX_ADDRESS_LINE_CHARS).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        let email = if r.email.trim().is_empty() {
            None
        } else {
            Some(
                text::checked_email("email", &r.email)
                    .map_err(text_status)?
                    .to_string(),
            )
        };
        let delivery = free_text("invoice_delivery", &r.invoice_delivery, MAX_DELIVERY_CHARS)?;
        let personal_number = free_text(
            "personal_number",
            &r.personal_number,
            MAX_PERSONAL_NUMBER_CHARS,
        )?;
        let input = HolderInput {
            number: number.as_str().to_string(),
            name: (!name.is_empty()).then(|| name.to_string()),
            address_lines,
            email,
            invoice_delivery: if delivery.is_empty() {
                "paper".into()
            } else {
                delivery.to_string()
            },
            personal_number: (!personal_number.is_empty()).then(|| personal_number.to_string()),
        };
        let mut conn = self
            .settlement
            .pool
            .acquire()
            .await
            .map_err(|e| to_status(e.into()))?;
        let h = personal::upsert_holder(&mut conn, &input, &actor)
            .await
            .map_err(to_status)?;
        drop(conn);
        // An address may be what a held invoice waited for (R13).
        let released = delivery::release_held(&self.settlement, Some(&h.numbers))
            .await
            .map_err(to_status)?;
        if released.invoices > 0 {
            if let Err(e) = crate::settlement::sync::projector::flush(&self.settlement).await {
                tracing::warn!(error = %e, "pushing a released invoice's fee to the state store failed; it is retried");
            }
        }
        Ok(Response::new(holder_pb(h)))
    }

    async fn set_marketing_preference(
        &self,
        req: Request<pb::SetMarketingPreferenceRequest>,
    ) -> Result<Response<pb::Holder>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let number = number("number", &r.number)?;
        let address = free_text(
            "marketing_address",
            &r.marketing_address,
            MAX_MARKETING_ADDRESS_CHARS,
        )?;
        let address = (!address.is_empty()).then_some(address);
        let mut conn = self
            .settlement
            .pool
            .acquire()
            .await
            .map_err(|e| to_status(e.into()))?;
        let h = personal::set_marketing(&mut conn, number.as_str(), r.opt_out, address, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(holder_pb(h)))
    }

    async fn list_invoices(
        &self,
        req: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        actor(&req)?;
        let r = req.into_inner();
        let number = number("number", &r.number)?;
        let rows: Vec<(i64, String, String, String, NaiveDate, NaiveDate, i64, i64, String, String, bool)> = sqlx::query_as(
            "select id, number, kind, ocr, issue_date, due_date, total_ore, paid_ore, status, stage, disputed
             from invoices where number = $1 order by id",
        )
        .bind(number.as_str())
        .fetch_all(&self.settlement.pool)
        .await
        .map_err(|e| to_status(e.into()))?;
        let mut invoices = Vec::with_capacity(rows.len());
        for (id, number, kind, ocr, issue, due, total, paid, status, stage, disputed) in rows {
            let pdf = if r.include_pdf {
                sqlx::query_scalar::<_, Vec<u8>>(
                    "select pdf from documents where invoice_id = $1 order by id desc limit 1",
                )
                .bind(id)
                .fetch_optional(&self.settlement.pool)
                .await
                .map_err(|e| to_status(e.into()))?
                .unwrap_or_default()
            } else {
                vec![]
            };
            invoices.push(pb::Invoice {
                id,
                number,
                kind,
                ocr,
                issue_date: issue.to_string(),
                due_date: due.to_string(),
                total_ore: total,
                paid_ore: paid,
                status,
                stage,
                disputed,
                pdf,
            });
        }
        Ok(Response::new(pb::ListInvoicesResponse { invoices }))
    }

    async fn list_unmatched_payments(
        &self,
        req: Request<pb::ListUnmatchedPaymentsRequest>,
    ) -> Result<Response<pb::ListUnmatchedPaymentsResponse>, Status> {
        actor(&req)?;
        let list = payments::unmatched(&self.settlement.pool)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListUnmatchedPaymentsResponse {
            payments: list
                .into_iter()
                .map(|p| pb::UnmatchedPayment {
                    payment_id: p.id,
                    channel: p.channel,
                    reference: p.reference.unwrap_or_default(),
                    amount_ore: p.amount.ore(),
                    payer_name: p.payer_name.unwrap_or_default(),
                    paid_on: p.paid_on.to_string(),
                })
                .collect(),
        }))
    }

    async fn match_payment(
        &self,
        req: Request<pb::MatchPaymentRequest>,
    ) -> Result<Response<pb::MatchPaymentResponse>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        use pb::match_payment_request::Target;
        let target = match r.target {
            Some(Target::Invoice(i)) => MatchTarget::Invoice(
                text::checked_digits(
                    "invoice",
                    i.trim(),
                    1,
                    MAX_OCR_DIGITS,
                    "must be an OCR reference or an invoice id (digits)",
                )
                .map_err(text_status)?
                .to_string(),
            ),
            Some(Target::Number(n)) => {
                MatchTarget::Number(number("number", &n)?.as_str().to_string())
            }
            Some(Target::PrepaidOrder(o)) => {
                MatchTarget::PrepaidOrder(ocr("prepaid_order", &o)?.to_string())
            }
            None => {
                return Err(Status::invalid_argument(
                    "give an invoice, a number or a prepaid order",
                ))
            }
        };
        let s = &self.settlement;
        let mut tx = s.pool.begin().await.map_err(|e| to_status(e.into()))?;
        let allocations = payments::match_payment(
            &mut tx,
            &s.policy,
            r.payment_id,
            target,
            &actor,
            s.today(),
            s.now(),
        )
        .await
        .map_err(to_status)?;
        tx.commit().await.map_err(|e| to_status(e.into()))?;
        if let Err(e) = crate::settlement::sync::projector::flush(s).await {
            tracing::warn!(error = %e, "pushing the matched payment to the state store failed; it is retried");
        }
        Ok(Response::new(pb::MatchPaymentResponse {
            allocations: allocations.iter().map(|a| format!("{a:?}")).collect(),
        }))
    }

    async fn create_installment_plan(
        &self,
        req: Request<pb::CreateInstallmentPlanRequest>,
    ) -> Result<Response<pb::InstallmentPlan>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let number = number("number", &r.number)?;
        let monthly = Money::from_ore(r.monthly_ore)
            .map_err(|e| Status::invalid_argument(format!("monthly_ore: {e}")))?;
        let first = date("first_due_date", &r.first_due_date)?;
        let plan = plans::create_plan(
            &self.settlement,
            number.as_str(),
            monthly,
            first,
            &actor,
            r.allow_small_debt,
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(pb::InstallmentPlan {
            id: plan.id,
            number: plan.number,
            total_ore: plan.total.ore(),
            monthly_ore: plan.monthly.ore(),
            status: plan.status.as_str().to_string(),
            items: plan
                .items
                .iter()
                .map(|i| pb::InstallmentItem {
                    due_date: i.due_date.to_string(),
                    amount_ore: i.amount.ore(),
                })
                .collect(),
        }))
    }

    async fn open_dispute(
        &self,
        req: Request<pb::OpenDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let reason = text::required_text("reason", &r.reason, MAX_DISPUTE_TEXT_CHARS)
            .map_err(text_status)?;
        let d = disputes::open_dispute(&self.settlement, r.invoice_id, reason, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(dispute_pb(d)))
    }

    async fn resolve_dispute(
        &self,
        req: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let resolution = text::required_text("resolution", &r.resolution, MAX_DISPUTE_TEXT_CHARS)
            .map_err(text_status)?;
        let d =
            disputes::resolve_dispute(&self.settlement, r.dispute_id, r.upheld, resolution, &actor)
                .await
                .map_err(to_status)?;
        Ok(Response::new(dispute_pb(d)))
    }

    async fn list_enforcement(
        &self,
        req: Request<pb::ListEnforcementRequest>,
    ) -> Result<Response<pb::ListEnforcementResponse>, Status> {
        actor(&req)?;
        let items = ladder::enforcement_list(&self.settlement.pool)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListEnforcementResponse {
            items: items
                .into_iter()
                .map(|i| pb::EnforcementItem {
                    invoice_id: i.invoice_id,
                    number: i.number,
                    customer_number: i.customer_number.unwrap_or_default(),
                    holder_name: i.holder_name.unwrap_or_default(),
                    outstanding_ore: i.outstanding.ore(),
                    handed_over_on: i.handed_over_on.to_string(),
                })
                .collect(),
        }))
    }

    async fn create_prepaid_order(
        &self,
        req: Request<pb::CreatePrepaidOrderRequest>,
    ) -> Result<Response<pb::PrepaidOrder>, Status> {
        actor(&req)?;
        let r = req.into_inner();
        let kind = if r.top_up_code_id.is_empty() {
            OrderKind::Issue
        } else {
            OrderKind::TopUp {
                code_id: CodeId::from_stored(&r.top_up_code_id)
                    .ok_or_else(|| Status::invalid_argument("top_up_code_id: 32 hex digits"))?,
            }
        };
        let mut tx = self
            .settlement
            .pool
            .begin()
            .await
            .map_err(|e| to_status(e.into()))?;
        let deliver_to = free_text("deliver_to", &r.deliver_to, MAX_DELIVER_TO_CHARS)?;
        let order = prepaid_orders::create_order(&mut tx, kind, deliver_to)
            .await
            .map_err(to_status)?;
        tx.commit().await.map_err(|e| to_status(e.into()))?;
        Ok(Response::new(pb::PrepaidOrder {
            order_id: order.id,
            ocr: order.ocr,
            pickup_secret: order.pickup_secret,
        }))
    }

    async fn pick_up_prepaid_code(
        &self,
        req: Request<pb::PickUpPrepaidCodeRequest>,
    ) -> Result<Response<pb::PickUpPrepaidCodeResponse>, Status> {
        actor(&req)?;
        let hasher = self.hasher.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this worker has no --prepaid-code-key: codes cannot be issued here",
            )
        })?;
        let r = req.into_inner();
        let order = ocr("ocr", &r.ocr)?.to_string();
        let secret = free_text("pickup_secret", &r.pickup_secret, MAX_PICKUP_SECRET_CHARS)?;
        let out = prepaid_orders::pick_up(&self.settlement, OrderRef::Ocr(order), secret, hasher)
            .await
            .map_err(to_status)?;
        Ok(Response::new(match out {
            PickedUp::Issued {
                code,
                code_id,
                balance,
                ..
            } => pb::PickUpPrepaidCodeResponse {
                code: code.expose().to_string(),
                code_id: code_id.to_string(),
                balance_ore: balance.ore(),
                already_picked_up: false,
            },
            PickedUp::AlreadyPickedUp { code_id } => pb::PickUpPrepaidCodeResponse {
                code: String::new(),
                code_id: code_id.to_string(),
                balance_ore: 0,
                already_picked_up: true,
            },
        }))
    }

    async fn personal_data_extract(
        &self,
        req: Request<pb::PersonalDataExtractRequest>,
    ) -> Result<Response<pb::PersonalDataExtractResponse>, Status> {
        let actor = actor(&req)?;
        let number = number("number", &req.get_ref().number)?;
        let x = personal::extract(
            &self.settlement.pool,
            number.as_str(),
            &actor,
            self.settlement.now(),
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(pb::PersonalDataExtractResponse {
            json: x.json.to_string(),
            text: x.text,
            free: x.free,
        }))
    }

    async fn erase_personal_data(
        &self,
        req: Request<pb::ErasePersonalDataRequest>,
    ) -> Result<Response<pb::ErasePersonalDataResponse>, Status> {
        let actor = actor(&req)?;
        let number = number("number", &req.get_ref().number)?;
        let e = personal::erase(&self.settlement, number.as_str(), &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ErasePersonalDataResponse {
            holder_erased: e.holder_erased,
            consents_deleted: e.consents_deleted,
            kept: e.kept,
        }))
    }

    async fn list_queued_documents(
        &self,
        req: Request<pb::ListQueuedDocumentsRequest>,
    ) -> Result<Response<pb::ListQueuedDocumentsResponse>, Status> {
        actor(&req)?;
        let r = req.into_inner();
        let channel = match r.channel.as_str() {
            "" => None,
            c => Some(
                Channel::parse(c)
                    .ok_or_else(|| Status::invalid_argument("channel: email, paper or empty"))?,
            ),
        };
        let limit = if r.limit == 0 {
            100
        } else {
            i64::from(r.limit)
        };
        let list = delivery::queued(&self.settlement.pool, channel, limit, r.include_pdf)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListQueuedDocumentsResponse {
            documents: list
                .into_iter()
                .map(|d| pb::QueuedDocument {
                    document_id: d.id,
                    invoice_id: d.invoice_id,
                    kind: d.kind,
                    channel: d.channel,
                    email: d.email.unwrap_or_default(),
                    recipient_name: d.name.unwrap_or_default(),
                    address_lines: d.address_lines,
                    pdf: d.pdf,
                    queued_at: d.created_at.to_rfc3339(),
                })
                .collect(),
        }))
    }

    async fn report_document_delivery(
        &self,
        req: Request<pb::ReportDocumentDeliveryRequest>,
    ) -> Result<Response<pb::ReportDocumentDeliveryResponse>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let outcome = match pb::DeliveryOutcome::try_from(r.outcome) {
            Ok(pb::DeliveryOutcome::Sent) => Outcome::Sent,
            Ok(pb::DeliveryOutcome::Bounced) => Outcome::Bounced,
            _ => return Err(Status::invalid_argument("outcome: SENT or BOUNCED")),
        };
        let done = delivery::report(&self.settlement, r.document_id, outcome, &r.detail, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReportDocumentDeliveryResponse {
            status: done.status,
            fallback_document_id: done.fallback_document_id.unwrap_or(0),
            changed: done.changed,
        }))
    }

    async fn list_held_invoices(
        &self,
        req: Request<pb::ListHeldInvoicesRequest>,
    ) -> Result<Response<pb::ListHeldInvoicesResponse>, Status> {
        actor(&req)?;
        let list = delivery::held_invoices(&self.settlement.pool)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListHeldInvoicesResponse {
            invoices: list
                .into_iter()
                .map(|h| pb::HeldInvoice {
                    invoice_id: h.invoice_id,
                    number: h.number,
                    customer_number: h.customer_number.unwrap_or_default(),
                    total_ore: h.total_ore,
                    held_since: h.held_since.to_string(),
                })
                .collect(),
        }))
    }

    async fn list_refused_store_ops(
        &self,
        req: Request<pb::ListRefusedStoreOpsRequest>,
    ) -> Result<Response<pb::ListRefusedStoreOpsResponse>, Status> {
        actor(&req)?;
        let ops = projector::refused(&self.settlement.pool)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListRefusedStoreOpsResponse {
            ops: ops
                .into_iter()
                .map(|o| pb::RefusedStoreOp {
                    id: o.id,
                    kind: o.kind,
                    number: o.number,
                    created_at: o.created_at.to_rfc3339(),
                    refused_at: o.refused_at.to_rfc3339(),
                    attempts: o.attempts,
                    error: o.error,
                })
                .collect(),
        }))
    }

    async fn dismiss_payment(
        &self,
        req: Request<pb::DismissPaymentRequest>,
    ) -> Result<Response<pb::DismissPaymentResponse>, Status> {
        let actor = actor(&req)?;
        let r = req.into_inner();
        let s = &self.settlement;
        let mut tx = s.pool.begin().await.map_err(|e| to_status(e.into()))?;
        let d = payments::dismiss_payment(&mut tx, r.payment_id, &r.reason, &actor, s.now())
            .await
            .map_err(to_status)?;
        tx.commit().await.map_err(|e| to_status(e.into()))?;
        Ok(Response::new(pb::DismissPaymentResponse {
            payment_id: d.payment_id,
            written_off_ore: d.written_off.ore(),
        }))
    }
}
