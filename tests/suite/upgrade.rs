//! Rolling upgrade of the Redis Function library (docs/redis.md): holds
//! written by library version 3 (a hash of strings) and by version 4 (listed
//! in its sorted expiry index) are still served by the current version.
//! Redis only.

use super::*;
use callauth::store::redis::RedisStore;

/// Rewrites a hold in the version 3 layout (the inverse of `legacy_hold` in
/// callauth.lua, written from the version 3 `create_hold`, `extend` and
/// `post_usage`), keeping its time to live.
const TO_VERSION_3: &str = r#"
local h = cmsgpack.unpack(redis.call('GET', KEYS[1]))
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'pk', h.pk, 'pid', h.pid, 'num', h.num, 'svc', h.svc, 'mer', h.mer,
  'tid', h.tid, 'p', h.p, 'b', h.b, 'm', h.m, 'v', h.v, 'cl', h.cl, 'og', h.og, 'oh', h.oh,
  'g', h.g, 'h', h.h, 'at', h.at, 'exp', h.exp, 'st', h.st, 'xn', #h.x)
for i, r in ipairs(h.x) do redis.call('HSET', KEYS[1], 'x' .. i, cjson.encode(r)) end
if h.u then
  redis.call('HSET', KEYS[1], 'u_d', h.u[1], 'u_c', h.u[2], 'u_b', h.u[3], 'u_o', h.u[4],
    'u_l', h.u[5], 'u_u', h.u[6])
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return redis.call('TYPE', KEYS[1])['ok']
"#;

async fn to_version_3(s: &RedisStore, number: &str, call: &str) {
    let p = callauth::store::partition::partition_of(number, policy().partitions);
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(TO_VERSION_3).arg(1).arg(s.keys().hold(p, call));
    let kind: String = s.conn().query(&cmd).await.unwrap();
    assert_eq!(kind, "hash");
}

async fn key_type(s: &RedisStore, number: &str, call: &str) -> String {
    let p = callauth::store::partition::partition_of(number, policy().partitions);
    let mut cmd = ::redis::cmd("TYPE");
    cmd.arg(s.keys().hold(p, call));
    s.conn().query(&cmd).await.unwrap()
}

/// The same call on two numbers with the same limit; one hold is turned into
/// the version 3 layout after its first extension. Every later answer and
/// both accounts must match the untouched call's.
pub async fn version_3_holds_are_still_served(s: RedisStore) {
    ready(&s).await;
    let cases = [(NUM_A, "new"), (NUM_B, "old")];
    for (number, id) in cases {
        allowed(&s, number, id, TAROT, T0).await;
        let e = s.extend(&call_id(id), IVR, 1, T0 + 800_000).await.unwrap();
        assert_eq!(e.outcome, ExtendOutcome::Extended);
    }
    to_version_3(&s, NUM_B, "old").await;

    let mut answers = Vec::new();
    for (_, id) in cases {
        let c = call_id(id);
        let replay = s.extend(&c, IVR, 1, T0 + 900_000).await.unwrap();
        let second = s.extend(&c, IVR, 2, T0 + 1_700_000).await.unwrap();
        let posted = s
            .post_usage(&usage(id, TAROT, MERCHANT, 2000), T0 + 2_100_000)
            .await
            .unwrap();
        answers.push(format!("{replay:?} {second:?} {posted:?}"));
    }
    assert!(answers[0].contains("replayed: true"), "{}", answers[0]);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(key_type(&s, NUM_B, "old").await, "string");

    let mut a = s.account(&n(NUM_A)).await.unwrap();
    let b = s.account(&n(NUM_B)).await.unwrap();
    assert!(a.unbilled > Money::ZERO);
    a.number = b.number.clone();
    assert_eq!(a, b);

    // A posted version 3 hold answers a duplicate post and a release alike.
    to_version_3(&s, NUM_B, "old").await;
    for (_, id) in cases {
        let again = s
            .post_usage(&usage(id, TAROT, MERCHANT, 2000), T0 + 2_200_000)
            .await
            .unwrap();
        assert!(matches!(again, UsageOutcome::Duplicate(_)), "{again:?}");
        assert_eq!(
            s.release(&call_id(id), IVR, T0 + 2_300_000).await.unwrap(),
            ReleaseOutcome::AlreadyPosted
        );
    }
}

/// Turns a hold into one library version 4 made: no `xb` in the hold, listed
/// in the version 4 sorted set by its expiry instead of the per-second index,
/// not in the pending count.
const TO_VERSION_4: &str = r#"
local h = cmsgpack.unpack(redis.call('GET', KEYS[1]))
local list = KEYS[2] .. ':' .. h.xb
redis.call('LREM', list, 0, ARGV[1])
if redis.call('LLEN', list) == 0 then redis.call('ZREM', KEYS[2], h.xb) end
h.xb = nil
redis.call('SET', KEYS[1], cmsgpack.pack(h), 'KEEPTTL')
redis.call('DECR', KEYS[2] .. 'n')
return redis.call('ZADD', KEYS[3], h.exp, ARGV[1])
"#;

async fn to_version_4(s: &RedisStore, number: &str, call: &str) {
    let p = callauth::store::partition::partition_of(number, policy().partitions);
    let k = s.keys();
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(TO_VERSION_4)
        .arg(3)
        .arg(k.hold(p, call))
        .arg(k.expiry(p))
        .arg(k.expiry_v4(p))
        .arg(call);
    let added: i64 = s.conn().query(&cmd).await.unwrap();
    assert_eq!(added, 1);
}

/// The same three calls on two numbers; the second number's holds are turned
/// into version 4 holds. Extending, releasing, posting and expiring them must
/// answer as for the untouched ones, leave equal accounts and count the
/// pending holds right throughout.
pub async fn version_4_holds_are_still_served(s: RedisStore) {
    ready(&s).await;
    let numbers = [(NUM_A, "new"), (NUM_B, "old")];
    let mut expiry = 0;
    for (number, tag) in numbers {
        for call in ["ext", "rel", "exp"] {
            let g = allowed(&s, number, &format!("{tag}-{call}"), TAROT, T0).await;
            expiry = T0 + i64::from(g.granted_seconds) * 1000 + policy().hold_grace_ms;
        }
    }
    for call in ["ext", "rel", "exp"] {
        to_version_4(&s, NUM_B, &format!("old-{call}")).await;
    }
    assert_eq!(s.stats().await.unwrap().pending_holds, 6);

    let mut answers = Vec::new();
    for (_, tag) in numbers {
        let ext = call_id(&format!("{tag}-ext"));
        let extended = s.extend(&ext, IVR, 1, T0 + 60_000).await.unwrap();
        let released = s
            .release(&call_id(&format!("{tag}-rel")), IVR, T0 + 60_000)
            .await
            .unwrap();
        answers.push(format!("{extended:?} {released:?}"));
    }
    assert!(answers[0].contains("Extended"), "{}", answers[0]);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(s.stats().await.unwrap().pending_holds, 4);

    // The two "exp" holds are due at `expiry`; the extended ones later.
    assert_eq!(s.expire_due(expiry, 100).await.unwrap(), 2);
    assert_eq!(s.stats().await.unwrap().pending_holds, 2);
    let mut posted = Vec::new();
    for (_, tag) in numbers {
        let id = format!("{tag}-ext");
        let u = usage(&id, TAROT, MERCHANT, 1000);
        posted.push(format!("{:?}", s.post_usage(&u, expiry + 1).await.unwrap()));
    }
    assert_eq!(posted[0], posted[1]);
    assert_eq!(s.stats().await.unwrap().pending_holds, 0);
    assert_eq!(s.expire_due(expiry + 100_000_000, 100).await.unwrap(), 0);

    let mut a = s.account(&n(NUM_A)).await.unwrap();
    let b = s.account(&n(NUM_B)).await.unwrap();
    assert!(a.unbilled > Money::ZERO);
    assert_eq!(b.pending, Money::ZERO);
    a.number = b.number.clone();
    assert_eq!(a, b);
}
