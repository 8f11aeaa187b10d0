//! A catalogue file (TOML): merchants, services, number-directory entries
//! and, for demos only, client tokens. `examples/demo.toml` is one, compiled
//! into the binaries so that `callauth-gateway --demo` works from anywhere.
//!
//! Amounts are written in SEK as people write them ("29.90"); they are
//! parsed exactly into öre.

use std::path::Path;

use serde::Deserialize;

use crate::auth::ClientConfig;
use crate::domain::catalog::{Merchant, ServiceSpec};
use crate::domain::{MerchantId, Money, Tariff, VatRate, E164};
use crate::gateway::Gateway;
use crate::store::Store;

/// The demo catalogue shipped in `examples/demo.toml`.
pub const DEMO: &str = include_str!("../../examples/demo.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    #[serde(default, rename = "merchant")]
    pub merchants: Vec<MerchantEntry>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceEntry>,
    #[serde(default, rename = "directory")]
    pub directory: Vec<DirectoryEntry>,
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantEntry {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub org_number: String,
    /// The billing company's fee in percent of collected usage, e.g. "15" or "12.5".
    pub fee_percent: String,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub number: String,
    pub merchant: String,
    pub name: String,
    #[serde(default)]
    pub category: String,
    /// SEK per minute, e.g. "29.90".
    pub price_per_minute: String,
    #[serde(default)]
    pub minimum_minutes: u32,
    #[serde(default = "sixty")]
    pub billing_step_seconds: u32,
    /// Agreed reminder fee in SEK (at most 60); "0" when none was agreed.
    #[serde(default = "sixty_sek")]
    pub reminder_fee: String,
    /// The VAT rate included in the price, percent: 25 (the default), 12, 6,
    /// or 0 for a service exempt from VAT.
    #[serde(default = "twenty_five")]
    pub vat_percent: u32,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    pub number: String,
    #[serde(default = "yes")]
    pub holder_registered: bool,
}

fn yes() -> bool {
    true
}
fn sixty() -> u32 {
    60
}
fn sixty_sek() -> String {
    "60".into()
}

fn twenty_five() -> u32 {
    VatRate::STANDARD.percent()
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{what}: {problem}")]
    Entry { what: String, problem: String },
}

fn entry_err(what: impl Into<String>, problem: impl std::fmt::Display) -> CatalogFileError {
    CatalogFileError::Entry {
        what: what.into(),
        problem: problem.to_string(),
    }
}

impl CatalogFile {
    pub fn parse(text: &str) -> Result<CatalogFile, CatalogFileError> {
        toml::from_str(text).map_err(|e| CatalogFileError::Parse(e.to_string()))
    }

    pub fn read(path: &Path) -> Result<CatalogFile, CatalogFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        CatalogFile::parse(&text)
    }

    pub fn merchants(&self) -> Result<Vec<Merchant>, CatalogFileError> {
        self.merchants
            .iter()
            .map(|m| {
                let what = || format!("merchant {}", m.id);
                let pct: rust_decimal::Decimal = m
                    .fee_percent
                    .trim()
                    .parse()
                    .map_err(|_| entry_err(what(), "fee_percent must be a number"))?;
                if pct.is_sign_negative() {
                    return Err(entry_err(what(), "fee_percent must not be negative"));
                }
                // Checked: a 29-digit percentage overflows the decimal.
                let bps = pct
                    .checked_mul(rust_decimal::Decimal::ONE_HUNDRED)
                    .ok_or_else(|| entry_err(what(), "fee_percent out of range"))?;
                if bps.fract() != rust_decimal::Decimal::ZERO {
                    return Err(entry_err(what(), "fee_percent has at most two decimals"));
                }
                Ok(Merchant {
                    id: MerchantId::parse(&m.id).map_err(|e| entry_err(what(), e))?,
                    name: m.name.clone(),
                    org_number: m.org_number.clone(),
                    fee_basis_points: u32::try_from(bps.trunc().mantissa())
                        .map_err(|_| entry_err(what(), "fee_percent out of range"))?,
                    active: m.active,
                })
            })
            .collect()
    }

    pub fn services(&self) -> Result<Vec<ServiceSpec>, CatalogFileError> {
        self.services
            .iter()
            .map(|s| {
                let what = || format!("service {}", s.number);
                let price: Money = s
                    .price_per_minute
                    .parse()
                    .map_err(|e| entry_err(what(), e))?;
                Ok(ServiceSpec {
                    number: E164::parse(&s.number).map_err(|e| entry_err(what(), e))?,
                    merchant_id: MerchantId::parse(&s.merchant)
                        .map_err(|e| entry_err(what(), e))?,
                    name: s.name.clone(),
                    category: s.category.clone(),
                    tariff: Tariff::new(price, s.billing_step_seconds, s.minimum_minutes)
                        .map_err(|e| entry_err(what(), e))?,
                    reminder_fee: s.reminder_fee.parse().map_err(|e| entry_err(what(), e))?,
                    vat: VatRate::from_percent(s.vat_percent).map_err(|e| entry_err(what(), e))?,
                    active: s.active,
                })
            })
            .collect()
    }

    pub fn directory(&self) -> Result<Vec<(E164, bool)>, CatalogFileError> {
        self.directory
            .iter()
            .map(|d| {
                E164::parse(&d.number)
                    .map(|n| (n, d.holder_registered))
                    .map_err(|e| entry_err(format!("directory {}", d.number), e))
            })
            .collect()
    }

    /// Loads merchants, services and directory entries through the gateway
    /// (so that each goes through the same validation as the admin API).
    pub async fn load_into<S: Store>(&self, gateway: &Gateway<S>) -> anyhow::Result<()> {
        for m in self.merchants()? {
            gateway.upsert_merchant(&m).await?;
        }
        for s in self.services()? {
            gateway.upsert_service(&s).await?;
        }
        for (n, registered) in self.directory()? {
            gateway
                .put_directory(&n, registered, "catalog-file")
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_file_is_valid() {
        let f = CatalogFile::parse(DEMO).unwrap();
        let merchants = f.merchants().unwrap();
        assert!(merchants.len() >= 2);
        let services = f.services().unwrap();
        assert!(services.len() >= 4);
        assert!(services.iter().any(|s| s.tariff.minimum_minutes > 0));
        assert!(services.iter().any(|s| s.tariff.billing_step_seconds == 1));
        assert!(services.iter().any(|s| s.vat == VatRate::STANDARD));
        assert!(services.iter().any(|s| s.vat == VatRate::EXEMPT));
        assert!(!f.directory().unwrap().is_empty());
        crate::auth::TokenRegistry::from_clients(&f.clients).unwrap();
    }

    /// Found by tests/fuzz.rs: a fee with 29 digits overflowed the decimal
    /// multiplication and panicked while loading the file.
    #[test]
    fn a_huge_fee_is_refused_not_a_panic() {
        for fee in [
            "79228162514264337593543950335",
            "1e30",
            "-5",
            "12.345",
            "50000000",
        ] {
            let text = format!("[[merchant]]\nid = \"m\"\nname = \"M\"\nfee_percent = \"{fee}\"\n");
            let e = CatalogFile::parse(&text).unwrap().merchants().unwrap_err();
            assert!(
                e.to_string().starts_with("merchant m: fee_percent"),
                "{fee}: {e}"
            );
        }
    }

    #[test]
    fn reports_bad_entries() {
        let bad = r#"
            [[service]]
            number = "0900-100 10 10"
            merchant = "x"
            name = "X"
            price_per_minute = "29.905"
        "#;
        let e = CatalogFile::parse(bad).unwrap().services().unwrap_err();
        assert!(e.to_string().contains("service 0900-100 10 10"), "{e}");
        assert!(CatalogFile::parse("[[service]]\nnumber = 1").is_err());
        let bad_vat = r#"
            [[service]]
            number = "0900-100 10 10"
            merchant = "x"
            name = "X"
            price_per_minute = "29.90"
            vat_percent = 20
        "#;
        let e = CatalogFile::parse(bad_vat).unwrap().services().unwrap_err();
        assert!(e.to_string().contains("VAT rate"), "{e}");
    }
}
