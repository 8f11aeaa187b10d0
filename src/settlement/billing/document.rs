//! What an invoice document says (SPEC R12, R13): the kinds of document
//! (invoice, reminder, collection demand) and rendering one from what the
//! ledger holds now into a `layout::InvoiceDocument`, laid out by `layout`
//! and written as PDF bytes by `formats::pdf`.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use chrono_tz::Europe::Stockholm;
use sqlx::{PgConnection, Row};

use crate::domain::{Money, VatRate, E164};
use crate::settlement::billing::layout;
use crate::settlement::context::{SettlementError, SettlementResult};
use crate::settlement::policy::SettlementPolicy;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    Invoice,
    Reminder,
    Collection,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "invoice",
            DocumentKind::Reminder => "reminder",
            DocumentKind::Collection => "collection",
        }
    }

    fn title(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "Faktura",
            DocumentKind::Reminder => "Påminnelse",
            DocumentKind::Collection => "Inkassokrav",
        }
    }
}

fn national(number: &str) -> String {
    E164::parse(number)
        .map(|n| n.national_display())
        .unwrap_or_else(|_| number.to_string())
}

/// Renders an invoice (or a reminder or collection demand of it) as PDF,
/// from what the ledger holds now (R12).
pub async fn render(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    invoice_id: i64,
    kind: DocumentKind,
) -> SettlementResult<Vec<u8>> {
    let inv = sqlx::query(
        "select i.number, i.ocr, i.issue_date, i.due_date, i.stage_due_date, i.period_start, i.period_end,
                i.total_ore, i.paid_ore, h.customer_number, h.name, h.address_lines
         from invoices i left join holders h on h.id = i.holder_id where i.id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&mut *conn)
    .await?;
    let number: String = inv.get("number");
    let lines = call_lines(conn, invoice_id).await?;
    let vat = vat_lines(conn, invoice_id).await?;
    let (fees, discounts, outside_vat) = other_lines(conn, invoice_id).await?;
    let total: i64 = inv.get("total_ore");
    let paid: i64 = inv.get("paid_ore");
    let notes = notes(kind, paid, outside_vat);
    let due = match kind {
        DocumentKind::Invoice => inv.get("due_date"),
        _ => inv.get("stage_due_date"),
    };
    let doc = layout::InvoiceDocument {
        issuer_lines: policy.issuer_lines.clone(),
        invoice_number: invoice_id.to_string(),
        kind: kind.title().to_string(),
        invoice_date: inv.get("issue_date"),
        customer_number: inv
            .get::<Option<String>, _>("customer_number")
            .unwrap_or_default(),
        holder_name: inv
            .get::<Option<String>, _>("name")
            .unwrap_or_else(|| format!("Innehavaren av {}", national(&number))),
        address_lines: inv
            .get::<Option<Vec<String>>, _>("address_lines")
            .unwrap_or_default(),
        number_billed: national(&number),
        ocr: inv.get("ocr"),
        due_date: due,
        period: (
            inv.get::<Option<NaiveDate>, _>("period_start")
                .unwrap_or_else(|| inv.get("issue_date")),
            inv.get::<Option<NaiveDate>, _>("period_end")
                .unwrap_or_else(|| inv.get("issue_date")),
        ),
        lines,
        fees,
        discounts,
        previous_balance: None,
        total: Money::ore_unchecked(total - paid),
        vat,
        bankgiro: policy.bankgiro.clone(),
        notes,
    };
    Ok(layout::render_invoice(&doc))
}

/// The call lines, in call order, with Stockholm dates and times.
async fn call_lines(
    conn: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<Vec<layout::CallLine>> {
    let calls = sqlx::query(
        "select u.started_at, u.service_number, u.duration_seconds, u.billed_seconds, u.billing_step_seconds, l.amount_ore, l.description
         from invoice_lines l join usage u on u.call_id = l.call_id
         where l.invoice_id = $1 and l.kind = 'call' order by u.started_at, u.call_id",
    )
    .bind(invoice_id)
    .fetch_all(&mut *conn)
    .await?;
    let lines = calls
        .iter()
        .map(|r| {
            let started: DateTime<Utc> = r.get("started_at");
            let local = started.with_timezone(&Stockholm);
            let billed = r.get::<i32, _>("billed_seconds").max(0) as u32;
            let step = r.get::<i32, _>("billing_step_seconds");
            let charged_minutes = if step == 60 {
                (billed / 60).to_string()
            } else {
                format!("{}:{:02}", billed / 60, billed % 60)
            };
            layout::CallLine {
                date: local.date_naive(),
                time: format!("{:02}:{:02}", local.hour(), local.minute()),
                service_number: national(r.get::<&str, _>("service_number")),
                description: r.get("description"),
                duration_seconds: r.get::<i32, _>("duration_seconds").max(0) as u32,
                charged_minutes,
                amount: Money::ore_unchecked(r.get("amount_ore")),
            }
        })
        .collect();
    Ok(lines)
}

/// Mervärdesskattelagen 17 kap.: base and VAT per rate.
async fn vat_lines(
    conn: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<Vec<layout::VatLine>> {
    // Calls booked
    // before VAT rates were recorded have no rate and are left out.
    let vat = sqlx::query(
        "select vat_rate_percent, sum(amount_ore - vat_ore)::bigint as base_ore, sum(vat_ore)::bigint as vat_ore
         from invoice_lines where invoice_id = $1 and vat_rate_percent is not null
         group by vat_rate_percent order by vat_rate_percent desc",
    )
    .bind(invoice_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| -> SettlementResult<layout::VatLine> {
        let rate = VatRate::from_percent(r.get::<i32, _>("vat_rate_percent") as u32)
            .map_err(|e| SettlementError::Invalid(format!("invoice {invoice_id}: {e}")))?;
        Ok(layout::VatLine {
            rate,
            base: Money::ore_unchecked(r.get("base_ore")),
            vat: Money::ore_unchecked(r.get("vat_ore")),
        })
    })
    .collect::<SettlementResult<Vec<_>>>()?;
    Ok(vat)
}

/// The lines other than calls: fees, and credits shown as discounts; and
/// whether a fee or interest outside the scope of VAT is among them.
async fn other_lines(
    conn: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<(Vec<(String, Money)>, Vec<(String, Money)>, bool)> {
    let other = sqlx::query(
        "select kind, description, amount_ore, vat_rate_percent from invoice_lines
         where invoice_id = $1 and kind <> 'call' order by id",
    )
    .bind(invoice_id)
    .fetch_all(&mut *conn)
    .await?;
    let outside_vat = other.iter().any(|r| {
        matches!(r.get::<&str, _>("kind"), "fee" | "interest")
            && r.get::<Option<i32>, _>("vat_rate_percent").is_none()
    });
    let mut fees = Vec::new();
    let mut discounts = Vec::new();
    for r in &other {
        let kind: String = r.get("kind");
        let line = (
            r.get::<String, _>("description"),
            Money::ore_unchecked(r.get("amount_ore")),
        );
        if kind == "credit" {
            discounts.push(line);
        } else {
            fees.push(line);
        }
    }
    Ok((fees, discounts, outside_vat))
}

/// The notes at the end of the document.
fn notes(kind: DocumentKind, paid: i64, outside_vat: bool) -> Vec<String> {
    let mut notes = vec![
        "Betala senast förfallodagen. Vid försenad betalning debiteras dröjsmålsränta enligt räntelagen (referensräntan + 8 procentenheter).".to_string(),
        "Har du inte ringt samtalen eller anser du att fakturan är fel? Kontakta oss innan förfallodagen; vi pausar då kravet medan vi utreder.".to_string(),
    ];
    if paid > 0 {
        notes.push(format!(
            "Redan betalt: {}.",
            Money::ore_unchecked(paid).to_swedish()
        ));
    }
    if kind == DocumentKind::Collection {
        notes.push("Detta är ett inkassokrav. Betala eller invänd inom angiven tid; annars kan ärendet lämnas till Kronofogden.".into());
    }
    notes.push("Alla priser är inklusive moms.".into());
    if outside_vat {
        notes.push(
            "Påminnelseavgift, inkassoavgift och dröjsmålsränta är ersättning enligt lag och omfattas inte av moms."
                .into(),
        );
    }
    notes
}
