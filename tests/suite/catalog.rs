//! The catalogue and its terms versions (R4, R5).

use super::*;

pub async fn catalog_versions_terms<S: Store>(s: S) {
    seed_catalog(&s).await;
    let v1 = s.catalog_version().await.unwrap();
    let old = service(&s, TAROT).await;
    let change = s
        .upsert_service(&spec(TAROT, MERCHANT, "Tarotlinjen", 3490, 60, 0), T0 + 1)
        .await
        .unwrap();
    assert!(change.new_terms.is_some());
    assert!(s.catalog_version().await.unwrap() > v1);
    let cat = s.catalog().await.unwrap();
    assert_eq!(
        cat.service(&n(TAROT))
            .unwrap()
            .terms
            .tariff
            .price_per_minute,
        Money::ore_unchecked(3490)
    );
    // The old terms are still there, unchanged.
    assert_eq!(
        cat.terms(&old.terms.terms_id)
            .unwrap()
            .tariff
            .price_per_minute,
        Money::ore_unchecked(2990)
    );
    // Unknown merchant refused.
    assert!(matches!(
        s.upsert_service(&spec("+469007007070", "nobody", "X", 100, 60, 0), T0)
            .await,
        Err(StoreError::Rejected(_))
    ));
}
