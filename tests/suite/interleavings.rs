//! Random interleavings and concurrency: money stays exact, credit is never overspent (R8, R10).

use super::*;

/// A small deterministic generator, so that the random interleavings test
/// runs the same sequences on every backend.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random interleavings of authorize / extend / post / release / expire on
/// one number: exposure plus pending never passes the limit except through a
/// post-grant overrun or usage posted after its hold expired, pending always equals the open holds, and every
/// posted charge lands in unbilled (money is conserved).
pub async fn random_interleavings_keep_money_exact<S: Store>(s: S) {
    ready(&s).await;
    let services = [TAROT, LEGAL, CHAT];
    // How often each path was taken, so the test cannot pass by doing nothing.
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for seed in 0..12u64 {
        let number = n(&format!("+4670{:07}", 1_000_000 + seed));
        s.put_directory(&number, true, "test", T0).await.unwrap();
        let mut rng = Rng::new(seed + 1);
        let mut now = T0;
        let mut open: BTreeMap<String, (String, Grant, i64)> = BTreeMap::new();
        let mut posted_total = Money::ZERO;
        let mut overran = false;
        let mut seq: HashMap<String, u32> = HashMap::new();
        for step in 0..60 {
            now += rng.below(400_000) as i64;
            match rng.below(6) {
                0 | 1 => {
                    let svc_no = services[rng.below(3) as usize];
                    let svc = service(&s, svc_no).await;
                    let id = format!("s{seed}-c{step}");
                    if let Decision::Allowed(g) = s
                        .authorize(&number, &call(&id, &svc, true), now)
                        .await
                        .unwrap()
                        .decision
                    {
                        open.insert(id, (svc_no.to_string(), g, now));
                        *seen.entry("allowed").or_default() += 1;
                    } else {
                        *seen.entry("denied").or_default() += 1;
                    }
                }
                2 => {
                    if let Some(id) = open.keys().next().cloned() {
                        let k = seq.entry(id.clone()).or_insert(0);
                        *k += 1;
                        let r = s.extend(&call_id(&id), IVR, *k, now).await.unwrap();
                        if r.outcome == ExtendOutcome::Extended {
                            *seen.entry("extended").or_default() += 1;
                            open.get_mut(&id).unwrap().1 = Grant {
                                granted_seconds: r.granted_seconds_total,
                                hold: r.hold,
                            };
                        }
                    }
                }
                3 => {
                    if let Some(id) = open.keys().next().cloned() {
                        let (svc, g, authorized_at) = open.remove(&id).unwrap();
                        // Mostly within the grant, sometimes past it.
                        let d = if rng.below(5) == 0 {
                            g.granted_seconds + rng.below(600) as u32
                        } else {
                            rng.below(u64::from(g.granted_seconds) + 1) as u32
                        };
                        let r = s
                            .post_usage(&usage_at(&id, &svc, MERCHANT, d, authorized_at), now)
                            .await
                            .unwrap();
                        let UsageOutcome::Applied(p) = r else {
                            panic!("seed {seed} step {step}: {r:?}")
                        };
                        posted_total += p.charge;
                        // The two documented ways past the limit: a call that ran past
                        // its grant, and usage that arrived after its hold expired.
                        overran |= p.overrun_seconds > 0 || p.late;
                        *seen.entry("posted").or_default() += 1;
                        if p.late {
                            *seen.entry("late").or_default() += 1;
                        }
                        if p.overrun_seconds > 0 {
                            *seen.entry("overrun").or_default() += 1;
                        }
                    }
                }
                4 => {
                    if let Some(id) = open.keys().next().cloned() {
                        open.remove(&id);
                        if matches!(
                            s.release(&call_id(&id), IVR, now).await.unwrap(),
                            ReleaseOutcome::Voided(_)
                        ) {
                            *seen.entry("voided").or_default() += 1;
                        }
                    }
                }
                _ => {
                    *seen.entry("expired").or_default() +=
                        s.expire_due(now, 1000).await.unwrap() as u32;
                    // Holds whose time passed are no longer open for posting within a grant.
                    let acct = s.account(&number).await.unwrap();
                    if acct.pending_calls == 0 {
                        open.clear();
                    }
                }
            }
            let acct = s.account(&number).await.unwrap();
            assert_eq!(
                acct.unbilled, posted_total,
                "seed {seed} step {step}: money conserved"
            );
            assert!(acct.pending >= Money::ZERO);
            if !overran {
                assert!(
                    acct.exposure() + acct.pending <= acct.limit,
                    "seed {seed} step {step}: {acct:?}"
                );
            }
        }
        // Drain: expire everything, pending must return to zero.
        s.expire_due(now + 100_000_000, 100_000).await.unwrap();
        let acct = s.account(&number).await.unwrap();
        assert_eq!(acct.pending, Money::ZERO, "seed {seed}");
        assert_eq!(acct.pending_calls, 0, "seed {seed}");
        assert_eq!(acct.unbilled, posted_total, "seed {seed}");
    }
    for path in [
        "allowed", "denied", "extended", "posted", "late", "overrun", "voided", "expired",
    ] {
        assert!(
            seen.get(path).copied().unwrap_or(0) > 0,
            "path {path} never taken: {seen:?}"
        );
    }
}

/// Many tasks authorizing for one number at once never hold more than the
/// limit; the same call id retried concurrently creates one hold.
pub async fn concurrent_authorizations_never_overspend<S: Store + Clone>(s: S) {
    ready(&s).await;
    let svc = service(&s, CHAT).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            s.authorize(&n(NUM_A), &call(&format!("k{i}"), &svc, true), T0)
                .await
                .unwrap()
        }));
    }
    let mut held = Money::ZERO;
    for t in tasks {
        if let Decision::Allowed(g) = t.await.unwrap().decision {
            held += g.hold;
        }
    }
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, held, "the sum of grants is what is held");
    assert!(held <= Money::sek(1500), "held {held}");
    assert!(
        acct.available() < Money::ore_unchecked(34),
        "credit is used up: {acct:?}"
    );

    let mut tasks = Vec::new();
    for _ in 0..32 {
        let s = s.clone();
        let svc = service(&s, TAROT).await;
        tasks.push(tokio::spawn(async move {
            s.authorize(&n(NUM_B), &call("same", &svc, true), T0)
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(matches!(r.decision, Decision::Allowed(_)));
        if !r.replayed {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one hold was created");
    assert_eq!(s.account(&n(NUM_B)).await.unwrap().pending_calls, 1);
}
