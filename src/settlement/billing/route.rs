//! Where a document goes (SPEC R13): the route of an invoice or a letter,
//! from what its holder chose and which addresses work, and queueing a
//! rendered document on that route (`documents`). Held invoices and the
//! mailing system's side of the queue are in `delivery`.
//!
//! **Routes.** An invoice goes by e-mail (no fee) when the holder chose
//! e-mail and has a working address, and on paper with the paper fee when
//! the holder chose paper and has a postal address. When the chosen way is
//! impossible the other one is used without a fee: e-mail chosen but the
//! address is missing or bounced → paper (R13: "falls back to paper");
//! paper chosen but no postal address → e-mail. With neither, the invoice
//! is **held**: booked (the claim exists, and the state store knows the
//! amount) but not sent, so it has no running due date and the ladder leaves
//! it alone; `ListHeldInvoices` and `callauth_settlement_invoices_held` say
//! so. It is released when an address or an e-mail address appears (at
//! once by `UpsertHolder`, and by the daily run): issued that day, due no
//! earlier than `threshold_due_days` later, and, when it goes on paper as
//! the holder chose, with the paper fee like any paper invoice. Reminders
//! and collection demands are letters: on paper when there is a postal
//! address, else by e-mail (a written reminder need not be on paper,
//! reference/sweden.md §1.5), else held with the document.
//!
//! The fee of a fallback: see `delivery`.

use sqlx::{PgConnection, Row};

use crate::settlement::billing::document::DocumentKind;
use crate::settlement::context::SettlementResult;

/// A way to send a document.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Paper,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Paper => "paper",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "paper" => Some(Channel::Paper),
            _ => None,
        }
    }
}

/// What is known about where a holder can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The holder's choice, "email" or "paper" (R13).
    pub chosen: String,
    pub has_postal_address: bool,
    /// An e-mail address that has not bounced since it was given.
    pub has_working_email: bool,
}

/// Where a document goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Send {
        channel: Channel,
        paper_fee: bool,
    },
    /// Nowhere to send it yet.
    Held,
}

/// The route of an invoice (see the module doc).
pub fn route_invoice(r: &Recipient) -> Route {
    let paper_chosen = r.chosen != "email";
    match (paper_chosen, r.has_postal_address, r.has_working_email) {
        (true, true, _) => Route::Send {
            channel: Channel::Paper,
            paper_fee: true,
        },
        (false, _, true) | (true, false, true) => Route::Send {
            channel: Channel::Email,
            paper_fee: false,
        },
        (false, true, false) => Route::Send {
            channel: Channel::Paper,
            paper_fee: false,
        },
        (_, false, false) => Route::Held,
    }
}

/// The route of a reminder or collection demand: paper when possible (R13).
pub fn route_letter(r: &Recipient) -> Route {
    match (r.has_postal_address, r.has_working_email) {
        (true, _) => Route::Send {
            channel: Channel::Paper,
            paper_fee: false,
        },
        (false, true) => Route::Send {
            channel: Channel::Email,
            paper_fee: false,
        },
        (false, false) => Route::Held,
    }
}

/// A holder's reachability, read in the caller's transaction.
pub async fn recipient(conn: &mut PgConnection, holder_id: i64) -> SettlementResult<Recipient> {
    let r = sqlx::query(
        "select invoice_delivery,
                cardinality(array_remove(array_remove(address_lines, ''), null)) > 0 as postal,
                coalesce(position('@' in email) > 1 and email_bounced_at is null, false) as email_ok
         from holders where id = $1",
    )
    .bind(holder_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Recipient {
        chosen: r.get("invoice_delivery"),
        has_postal_address: r.get("postal"),
        has_working_email: r.get("email_ok"),
    })
}

pub(crate) async fn recipient_of_invoice(
    conn: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<Option<Recipient>> {
    let holder: Option<i64> = sqlx::query_scalar("select holder_id from invoices where id = $1")
        .bind(invoice_id)
        .fetch_one(&mut *conn)
        .await?;
    match holder {
        Some(id) => Ok(Some(recipient(conn, id).await?)),
        None => Ok(None),
    }
}

/// Queues a rendered document in the caller's transaction. An invoice goes
/// by the `channel` its route chose; a letter asked for on paper goes by
/// [`route_letter`]; a document with nowhere to go is stored `held`.
/// Returns the document's id.
pub async fn queue(
    conn: &mut PgConnection,
    invoice_id: i64,
    kind: DocumentKind,
    channel: &str,
    pdf: Vec<u8>,
    fallback_of: Option<i64>,
) -> SettlementResult<i64> {
    let (channel, status) = if kind == DocumentKind::Invoice && fallback_of.is_none() {
        (channel.to_string(), "queued")
    } else {
        match recipient_of_invoice(conn, invoice_id).await? {
            Some(r) => match route_letter(&r) {
                Route::Send { channel, .. } => (channel.as_str().to_string(), "queued"),
                Route::Held => ("paper".to_string(), "held"),
            },
            None => ("paper".to_string(), "held"),
        }
    };
    let id: i64 = sqlx::query_scalar(
        "insert into documents (invoice_id, kind, channel, pdf, status, fallback_of)
         values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(invoice_id)
    .bind(kind.as_str())
    .bind(&channel)
    .bind(pdf)
    .bind(status)
    .bind(fallback_of)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(chosen: &str, postal: bool, email: bool) -> Recipient {
        Recipient {
            chosen: chosen.into(),
            has_postal_address: postal,
            has_working_email: email,
        }
    }

    const EMAIL: Route = Route::Send {
        channel: Channel::Email,
        paper_fee: false,
    };
    const PAPER_WITH_FEE: Route = Route::Send {
        channel: Channel::Paper,
        paper_fee: true,
    };
    const PAPER_NO_FEE: Route = Route::Send {
        channel: Channel::Paper,
        paper_fee: false,
    };

    #[test]
    fn invoices_go_the_chosen_way_or_fall_back_without_a_fee() {
        // Chosen and possible.
        assert_eq!(route_invoice(&r("email", true, true)), EMAIL);
        assert_eq!(route_invoice(&r("email", false, true)), EMAIL);
        assert_eq!(route_invoice(&r("paper", true, true)), PAPER_WITH_FEE);
        assert_eq!(route_invoice(&r("paper", true, false)), PAPER_WITH_FEE);
        // E-mail chosen but missing or bounced: paper, no fee (R13).
        assert_eq!(route_invoice(&r("email", true, false)), PAPER_NO_FEE);
        // Paper chosen but no postal address: e-mail, no fee.
        assert_eq!(route_invoice(&r("paper", false, true)), EMAIL);
        // Nowhere: held, never a PDF addressed to nobody.
        assert_eq!(route_invoice(&r("paper", false, false)), Route::Held);
        assert_eq!(route_invoice(&r("email", false, false)), Route::Held);
    }

    #[test]
    fn letters_go_on_paper_when_they_can() {
        assert_eq!(route_letter(&r("email", true, true)), PAPER_NO_FEE);
        assert_eq!(route_letter(&r("email", false, true)), EMAIL);
        assert_eq!(route_letter(&r("paper", false, false)), Route::Held);
    }
}
