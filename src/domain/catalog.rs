//! The service catalogue: merchants, their services and immutable terms
//! versions (SPEC R4, R5, R20).
//!
//! The gateway reads the catalogue on every call, so it is held as one
//! immutable [`CatalogSnapshot`] behind an `Arc` and replaced as a whole when
//! it changes: lookups take no lock. Terms versions are never changed or
//! removed once created, because a caller's consent and a dispute refer to the
//! exact terms announced (R3, R19).

use std::collections::HashMap;

/// A hash map with foldhash's seeded hasher: several times faster than
/// SipHash on short keys such as numbers and ids, still randomly seeded per
/// process.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::{MerchantId, TermsId};
use super::money::Money;
use super::number::{NumberKind, E164};
use super::rating::{Tariff, TariffError};
use super::text;
use super::vat::VatRate;

/// The statutory cap on a written payment reminder fee (lag 1981:739, 4 § p.1).
pub const MAX_REMINDER_FEE: Money = Money::sek(60);

/// The longest names and categories, in characters; all are one line of
/// plain text ([`super::text`]), because they are read out in the
/// announcement, printed on statements and kept in the terms.
pub const MAX_MERCHANT_NAME_CHARS: usize = 200;
pub const MAX_SERVICE_NAME_CHARS: usize = 100;
pub const MAX_CATEGORY_CHARS: usize = 40;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    pub org_number: String,
    /// The billing company's fee on collected usage, in basis points (R20).
    pub fee_basis_points: u32,
    pub active: bool,
}

/// One immutable version of a service's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub terms_id: TermsId,
    pub service_number: E164,
    pub service_name: String,
    pub version: u32,
    pub tariff: Tariff,
    /// The reminder fee agreed in these terms (0 = none; at most 60 SEK).
    pub reminder_fee: Money,
    /// The VAT rate included in the price (terms stored before rates
    /// existed read as the general rate, 25 %).
    #[serde(default)]
    pub vat: VatRate,
    pub created_at_ms: i64,
    /// The two announcements (postpaid, prepaid), made once per terms version:
    /// the IVR receives one with every Authorize.
    #[serde(skip)]
    pub announcements: Memo<[String; 2]>,
}

/// A value computed once from the rest of its struct: invisible to equality,
/// serialisation and debugging, so that a cached and an uncached copy are equal.
#[derive(Clone, Default)]
pub struct Memo<T>(std::sync::OnceLock<T>);

impl<T> Memo<T> {
    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(make)
    }
}

impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Memo<T>) -> bool {
        true
    }
}

impl<T> Eq for Memo<T> {}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub number: E164,
    pub merchant_id: MerchantId,
    pub name: String,
    /// Shown in lookups; never on an invoice (a third party may open it).
    pub category: String,
    pub active: bool,
    pub terms: Arc<Terms>,
}

/// What an admin asks for when creating or changing a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub number: E164,
    pub merchant_id: MerchantId,
    pub name: String,
    pub category: String,
    pub tariff: Tariff,
    pub reminder_fee: Money,
    /// The VAT rate included in the price (25 % unless the service is exempt).
    pub vat: VatRate,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown merchant '{0}'")]
    UnknownMerchant(String),
    #[error("service name must be 1–100 characters of plain text on one line")]
    Name,
    #[error("category must be at most 40 characters of plain text on one line")]
    Category,
    #[error("merchant name must be 1–200 characters of plain text on one line")]
    MerchantName,
    #[error("organisation number must be empty or NNNNNN-NNNN")]
    OrgNumber,
    #[error("fee must be at most 10000 basis points (100 %)")]
    Fee,
    #[error("reminder fee must be between 0 and 60 SEK (lag 1981:739)")]
    ReminderFee,
    #[error("a service number must be a Swedish number, got a {0:?} number")]
    ServiceNumberKind(NumberKind),
    #[error(transparent)]
    Tariff(#[from] TariffError),
}

impl Terms {
    pub fn make_id(service: &E164, version: u32) -> TermsId {
        TermsId::parse(&format!("t-{}-{}", service.digits(), version))
            .expect("digits and a number form a valid terms id")
    }

    /// The text the IVR reads out within 10 seconds of the call's start
    /// (reference/sweden.md §2.2, §2.4): price, minimum charge, how the call is
    /// paid, the age requirement and consent to the service starting at once.
    pub fn announcement_sv(&self, prepaid: bool) -> &str {
        let [postpaid, prepaid_text] = self.announcements.get_or_init(|| {
            [
                self.make_announcement_sv(false),
                self.make_announcement_sv(true),
            ]
        });
        if prepaid {
            prepaid_text
        } else {
            postpaid
        }
    }

    /// Every variant of this text is written out in the tests: Swedish needs
    /// "1 minut" but "2 minuter", and a price in whole kronor is read without
    /// ",00" ("30 kr", not "30,00 kr": read aloud, the decimals are noise).
    /// Billing steps other than 1 and 60 s divide 60 (2–30 s), so "sekunder"
    /// is always plural there.
    fn make_announcement_sv(&self, prepaid: bool) -> String {
        let t = &self.tariff;
        let mut s = format!(
            "Du ringer {}. Samtalet kostar {} per minut",
            self.service_name,
            spoken_price(t.price_per_minute)
        );
        // Prices to consumers include VAT; say so unless there is none.
        if self.vat != VatRate::EXEMPT {
            s.push_str(" inklusive moms");
        }
        if t.billing_step_seconds == 1 {
            s.push_str(" och debiteras per sekund");
        } else if t.billing_step_seconds != 60 {
            s.push_str(&format!(
                " och debiteras per påbörjad period om {} sekunder",
                t.billing_step_seconds
            ));
        } else {
            s.push_str(" och debiteras per påbörjad minut");
        }
        if t.minimum_minutes > 0 {
            let unit = if t.minimum_minutes == 1 {
                "minut"
            } else {
                "minuter"
            };
            s.push_str(&format!(
                ", med en minimidebitering om {} {unit} ({})",
                t.minimum_minutes,
                spoken_price(t.minimum_charge())
            ));
        }
        s.push_str(". ");
        if prepaid {
            s.push_str("Kostnaden dras från saldot på din förskottskod. ");
            s.push_str("Tryck 1 om du är minst 18 år. ");
        } else {
            s.push_str(
                "Kostnaden faktureras innehavaren av numret du ringer från, med en separat faktura. ",
            );
            s.push_str(
                "Tryck 1 om du är minst 18 år och ringer från ett nummer som är registrerat på dig. ",
            );
        }
        s.push_str(
            "Tryck sedan 1 för att godkänna priset och att tjänsten startar direkt; \
             ångerrätten upphör när tjänsten har utförts.",
        );
        s
    }
}

/// A price as the announcement says it: "29,90 kr", but "30 kr" for whole kronor.
fn spoken_price(m: Money) -> String {
    let text = m.to_swedish();
    match text.strip_suffix(",00 kr") {
        Some(kronor) => format!("{kronor} kr"),
        None => text,
    }
}

impl Merchant {
    pub fn validate(&self) -> Result<(), CatalogError> {
        text::required_text("name", &self.name, MAX_MERCHANT_NAME_CHARS)
            .map_err(|_| CatalogError::MerchantName)?;
        text::checked_org_number("org_number", &self.org_number)
            .map_err(|_| CatalogError::OrgNumber)?;
        if self.fee_basis_points > 10_000 {
            return Err(CatalogError::Fee);
        }
        Ok(())
    }
}

/// A consistent, immutable view of the whole catalogue.
#[derive(Clone, Debug, Default)]
pub struct CatalogSnapshot {
    /// Increases with every change; caches compare it to decide whether to reload.
    pub version: u64,
    pub merchants: FastMap<MerchantId, Arc<Merchant>>,
    pub services: FastMap<E164, Arc<Service>>,
    /// Every terms version ever created, current or not.
    pub terms: FastMap<TermsId, Arc<Terms>>,
}

/// The result of planning a service upsert: the new service and, when the
/// money terms changed, the new terms version it points to.
#[derive(Clone, Debug)]
pub struct ServiceChange {
    pub service: Arc<Service>,
    pub new_terms: Option<Arc<Terms>>,
}

impl CatalogSnapshot {
    pub fn service(&self, number: &E164) -> Option<&Arc<Service>> {
        self.services.get(number)
    }

    pub fn merchant(&self, id: &MerchantId) -> Option<&Arc<Merchant>> {
        self.merchants.get(id)
    }

    pub fn terms(&self, id: &TermsId) -> Option<&Arc<Terms>> {
        self.terms.get(id)
    }

    /// Plans a service upsert against this snapshot (pure; the store applies
    /// it atomically). A change of tariff, reminder fee or VAT rate creates a
    /// new terms version; renaming a service keeps the version (the name in old terms
    /// stays what was announced then).
    pub fn plan_service(
        &self,
        spec: &ServiceSpec,
        now_ms: i64,
    ) -> Result<ServiceChange, CatalogError> {
        let name = text::required_text("name", &spec.name, MAX_SERVICE_NAME_CHARS)
            .map_err(|_| CatalogError::Name)?;
        text::checked_text("category", &spec.category, MAX_CATEGORY_CHARS)
            .map_err(|_| CatalogError::Category)?;
        if spec.reminder_fee.is_negative() || spec.reminder_fee > MAX_REMINDER_FEE {
            return Err(CatalogError::ReminderFee);
        }
        if !spec.number.is_swedish() {
            return Err(CatalogError::ServiceNumberKind(spec.number.kind()));
        }
        if !self.merchants.contains_key(&spec.merchant_id) {
            return Err(CatalogError::UnknownMerchant(spec.merchant_id.to_string()));
        }
        let existing = self.services.get(&spec.number);
        let (terms, new_terms) = match existing {
            Some(s)
                if s.terms.tariff == spec.tariff
                    && s.terms.reminder_fee == spec.reminder_fee
                    && s.terms.vat == spec.vat =>
            {
                (s.terms.clone(), None)
            }
            _ => {
                let version = self
                    .terms
                    .values()
                    .filter(|t| t.service_number == spec.number)
                    .map(|t| t.version)
                    .max()
                    .unwrap_or(0)
                    + 1;
                let t = Arc::new(Terms {
                    terms_id: Terms::make_id(&spec.number, version),
                    service_number: spec.number.clone(),
                    service_name: name.to_string(),
                    version,
                    tariff: spec.tariff,
                    reminder_fee: spec.reminder_fee,
                    vat: spec.vat,
                    created_at_ms: now_ms,
                    announcements: Default::default(),
                });
                (t.clone(), Some(t))
            }
        };
        let service = Arc::new(Service {
            number: spec.number.clone(),
            merchant_id: spec.merchant_id.clone(),
            name: name.to_string(),
            category: spec.category.trim().to_string(),
            active: spec.active,
            terms,
        });
        Ok(ServiceChange { service, new_terms })
    }

    /// A new snapshot with `change` applied and the version bumped.
    pub fn with_service(&self, change: &ServiceChange) -> CatalogSnapshot {
        let mut next = self.clone();
        next.version += 1;
        if let Some(t) = &change.new_terms {
            next.terms.insert(t.terms_id.clone(), t.clone());
        }
        next.services
            .insert(change.service.number.clone(), change.service.clone());
        next
    }

    pub fn with_merchant(&self, merchant: Merchant) -> CatalogSnapshot {
        let mut next = self.clone();
        next.version += 1;
        next.merchants
            .insert(merchant.id.clone(), Arc::new(merchant));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant() -> Merchant {
        Merchant {
            id: MerchantId::parse("stjarnlinjen").unwrap(),
            name: "Stjärnlinjen AB".into(),
            org_number: "556677-8899".into(),
            fee_basis_points: 1500,
            active: true,
        }
    }

    fn spec(price_ore: i64) -> ServiceSpec {
        ServiceSpec {
            number: E164::parse("0900-123 45 67").unwrap(),
            merchant_id: MerchantId::parse("stjarnlinjen").unwrap(),
            name: "Tarotlinjen".into(),
            category: "tarot".into(),
            tariff: Tariff::new(Money::ore_unchecked(price_ore), 60, 2).unwrap(),
            reminder_fee: Money::sek(60),
            vat: VatRate::STANDARD,
            active: true,
        }
    }

    #[test]
    fn price_change_creates_new_immutable_terms() {
        let cat = CatalogSnapshot::default().with_merchant(merchant());
        let c1 = cat.plan_service(&spec(2990), 1).unwrap();
        let cat = cat.with_service(&c1);
        assert_eq!(c1.service.terms.terms_id.as_str(), "t-469001234567-1");

        // Renaming keeps the terms version.
        let mut renamed = spec(2990);
        renamed.name = "Tarot direkt".into();
        let c2 = cat.plan_service(&renamed, 2).unwrap();
        assert!(c2.new_terms.is_none());
        let cat = cat.with_service(&c2);

        // A new price is a new version; the old one is still there.
        let c3 = cat.plan_service(&spec(3490), 3).unwrap();
        let cat = cat.with_service(&c3);
        assert_eq!(c3.service.terms.terms_id.as_str(), "t-469001234567-2");
        let old = cat
            .terms(&TermsId::parse("t-469001234567-1").unwrap())
            .unwrap();
        assert_eq!(old.tariff.price_per_minute.ore(), 2990);
        assert_eq!(cat.version, 4);

        // A new VAT rate is new terms too (the price announced is the same,
        // but what it contains is not), and the rate travels with them.
        let mut exempt = spec(3490);
        exempt.vat = VatRate::EXEMPT;
        let c4 = cat.plan_service(&exempt, 4).unwrap();
        assert_eq!(c4.service.terms.terms_id.as_str(), "t-469001234567-3");
        assert_eq!(c4.service.terms.vat, VatRate::EXEMPT);
        assert_eq!(c3.service.terms.vat, VatRate::STANDARD);
    }

    #[test]
    fn terms_stored_before_vat_rates_read_as_the_general_rate() {
        let cat = CatalogSnapshot::default().with_merchant(merchant());
        let c = cat.plan_service(&spec(2990), 1).unwrap();
        let mut json = serde_json::to_value(&*c.service.terms).unwrap();
        assert_eq!(json["vat"], 25);
        json.as_object_mut().unwrap().remove("vat");
        let old: Terms = serde_json::from_value(json).unwrap();
        assert_eq!(old.vat, VatRate::STANDARD);
    }

    #[test]
    fn refuses_bad_specs() {
        let cat = CatalogSnapshot::default();
        assert_eq!(
            cat.plan_service(&spec(2990), 1).unwrap_err(),
            CatalogError::UnknownMerchant("stjarnlinjen".into())
        );
        let cat = cat.with_merchant(merchant());
        let mut s = spec(2990);
        s.reminder_fee = Money::sek(61);
        assert_eq!(
            cat.plan_service(&s, 1).unwrap_err(),
            CatalogError::ReminderFee
        );
        let mut s = spec(2990);
        s.name = " ".into();
        assert_eq!(cat.plan_service(&s, 1).unwrap_err(), CatalogError::Name);
        let mut s = spec(2990);
        s.number = E164::parse("+4520123456").unwrap();
        assert!(matches!(
            cat.plan_service(&s, 1).unwrap_err(),
            CatalogError::ServiceNumberKind(_)
        ));
    }

    /// Terms of a service with this tariff, as the catalogue makes them.
    fn terms_with(name: &str, price_ore: i64, step: u32, minimum_minutes: u32) -> Arc<Terms> {
        let cat = CatalogSnapshot::default().with_merchant(merchant());
        let mut s = spec(price_ore);
        s.name = name.into();
        s.tariff = Tariff::new(Money::ore_unchecked(price_ore), step, minimum_minutes).unwrap();
        cat.plan_service(&s, 1).unwrap().service.terms.clone()
    }

    const POSTPAID_TAIL: &str = "Kostnaden faktureras innehavaren av numret du ringer från, \
        med en separat faktura. Tryck 1 om du är minst 18 år och ringer från ett nummer som är \
        registrerat på dig. Tryck sedan 1 för att godkänna priset och att tjänsten startar \
        direkt; ångerrätten upphör när tjänsten har utförts.";
    const PREPAID_TAIL: &str = "Kostnaden dras från saldot på din förskottskod. Tryck 1 om du \
        är minst 18 år. Tryck sedan 1 för att godkänna priset och att tjänsten startar direkt; \
        ångerrätten upphör när tjänsten har utförts.";

    /// The text the consent rests on (R3), every variant written out by hand:
    /// "1 minut" but "2 minuter", per started minute, per second and per
    /// started period, with and without a minimum, prices with öre and in
    /// whole kronor (read without ",00"), thousands grouped, VAT included
    /// (said unless the service is exempt).
    #[test]
    fn announcement_reads_as_correct_swedish_in_every_variant() {
        let cases: [(&str, i64, u32, u32, &str); 9] = [
            (
                "Tarotlinjen",
                2990,
                60,
                0,
                "Du ringer Tarotlinjen. Samtalet kostar 29,90 kr per minut inklusive moms och debiteras per \
                 påbörjad minut.",
            ),
            (
                "Travtips",
                2990,
                60,
                1,
                "Du ringer Travtips. Samtalet kostar 29,90 kr per minut inklusive moms och debiteras per \
                 påbörjad minut, med en minimidebitering om 1 minut (29,90 kr).",
            ),
            (
                "Juristjouren",
                2490,
                60,
                3,
                "Du ringer Juristjouren. Samtalet kostar 24,90 kr per minut inklusive moms och debiteras per \
                 påbörjad minut, med en minimidebitering om 3 minuter (74,70 kr).",
            ),
            (
                "Chattlinjen",
                1995,
                1,
                0,
                "Du ringer Chattlinjen. Samtalet kostar 19,95 kr per minut inklusive moms och debiteras per \
                 sekund.",
            ),
            (
                "Chattlinjen",
                1995,
                1,
                1,
                "Du ringer Chattlinjen. Samtalet kostar 19,95 kr per minut inklusive moms och debiteras per \
                 sekund, med en minimidebitering om 1 minut (19,95 kr).",
            ),
            (
                "Samtalsstöd",
                3000,
                60,
                2,
                "Du ringer Samtalsstöd. Samtalet kostar 30 kr per minut inklusive moms och debiteras per \
                 påbörjad minut, med en minimidebitering om 2 minuter (60 kr).",
            ),
            (
                "Halvminuten",
                1200,
                30,
                0,
                "Du ringer Halvminuten. Samtalet kostar 12 kr per minut inklusive moms och debiteras per \
                 påbörjad period om 30 sekunder.",
            ),
            (
                "Expertrådet",
                150_000,
                60,
                1,
                "Du ringer Expertrådet. Samtalet kostar 1 500 kr per minut inklusive moms och debiteras per \
                 påbörjad minut, med en minimidebitering om 1 minut (1 500 kr).",
            ),
            (
                "Femöringen",
                105,
                60,
                10,
                "Du ringer Femöringen. Samtalet kostar 1,05 kr per minut inklusive moms och debiteras per \
                 påbörjad minut, med en minimidebitering om 10 minuter (10,50 kr).",
            ),
        ];
        for (name, price_ore, step, minimum, head) in cases {
            let t = terms_with(name, price_ore, step, minimum);
            assert_eq!(
                t.announcement_sv(false),
                format!("{head} {POSTPAID_TAIL}"),
                "{name} postpaid"
            );
            assert_eq!(
                t.announcement_sv(true),
                format!("{head} {PREPAID_TAIL}"),
                "{name} prepaid"
            );
        }
        // A service exempt from VAT does not mention it.
        let cat = CatalogSnapshot::default().with_merchant(merchant());
        let mut exempt = spec(3000);
        exempt.name = "Psykologsamtal".into();
        exempt.vat = VatRate::EXEMPT;
        let t = cat.plan_service(&exempt, 1).unwrap().service.terms.clone();
        assert_eq!(
            t.announcement_sv(false),
            format!(
                "Du ringer Psykologsamtal. Samtalet kostar 30 kr per minut och debiteras per \
                 påbörjad minut, med en minimidebitering om 2 minuter (60 kr). {POSTPAID_TAIL}"
            )
        );
    }

    #[test]
    fn announcement_mentions_price_minimum_and_invoice() {
        let cat = CatalogSnapshot::default().with_merchant(merchant());
        let c = cat.plan_service(&spec(2990), 1).unwrap();
        let text = c.service.terms.announcement_sv(false);
        assert!(text.contains("29,90 kr per minut inklusive moms"), "{text}");
        assert!(
            text.contains("minimidebitering om 2 minuter (59,80 kr)"),
            "{text}"
        );
        assert!(text.contains("separat faktura"), "{text}");
        assert!(text.contains("18 år"), "{text}");
        let prepaid = c.service.terms.announcement_sv(true);
        assert!(prepaid.contains("förskottskod"));
        assert!(!prepaid.contains("separat faktura"));
        // An exempt service's price has no VAT to mention.
        let mut exempt = spec(2990);
        exempt.vat = VatRate::EXEMPT;
        let e = cat.plan_service(&exempt, 2).unwrap();
        let text = e.service.terms.announcement_sv(false);
        assert!(text.contains("29,90 kr per minut och"), "{text}");
        assert!(!text.contains("moms"), "{text}");
    }
}
