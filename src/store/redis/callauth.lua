#!lua name=callauth_v__V__
--
-- callauth state-store Functions, library version __V__ (DESIGN invariants 2, 4, 6, 7).
--
-- Every Function is one business step: it validates first and writes last,
-- checks its own idempotency, and appends its events to the partition's
-- stream in the same call, so a money change is all or nothing. All keys of
-- one call share one hash tag ({<prefix>:p<N>}), so each call touches one
-- Redis Cluster slot. Keys derived inside a Function (a hold found in the
-- expiry index, the account a hold belongs to) carry the same hash tag.
--
-- Money is integer öre. Lua numbers are doubles: the Rust caller asserts that
-- every amount is far below 2^53, and divisions go through idiv(), which
-- corrects the floating quotient with exact products, so the integer results
-- are exact.
--
-- The rules are those of src/domain, cited by name at each Function
-- (rating.rs, decision.rs, hold.rs, lockout.rs, account.rs). The embedded
-- store runs the Rust; tests/differential.rs runs both on one seeded workload
-- and compares every reply, account and event. The code tables below
-- (reason codes, usage rejections, hold states) are generated from the Rust
-- enums when the library is loaded (functions.rs `lua_constants`).
-- Events are the proto3 JSON of callauth.v1.Event (src/domain/event.rs),
-- every field written.
--
-- Library version 5 (issue 13.1) made an Authorize cheaper for Redis: the
-- hold's fixed fields arrive MessagePack-encoded from the gateway (the
-- Function appends the grant), and the expiry index is a list per second of
-- expiry instead of one sorted set (see `index_expiry`).

__CONSTANTS__

-- ---------------------------------------------------------------- helpers

local function num(x)
  if x == false or x == nil or x == '' then return 0 end
  return tonumber(x)
end

-- The negation of an integer amount. Plain `-x` turns 0 into -0, which Redis
-- receives as "-0" and HINCRBY refuses; and a Function is not rolled back
-- when it errors half-way, so that must never happen after a write.
local function neg(x)
  return 0 - x
end

-- Exact floor(x / y) for integers |x|, |y| < 2^53, y > 0.
local function idiv(x, y)
  local q = math.floor(x / y)
  while (q + 1) * y <= x do q = q + 1 end
  while q * y > x do q = q - 1 end
  return q
end

-- Exact ceil(x / y) for integers, y > 0.
local function iceil(x, y)
  return -idiv(-x, y)
end

-- rating.rs rate(): charge and billed seconds of a call of d seconds.
local function rate(p, b, m, d)
  if d <= 0 then return 0, 0 end
  local stepped = iceil(d, b) * b
  local charge = idiv(p * stepped + 30, 60)
  local minimum = p * m
  if charge >= minimum then
    return charge, math.max(stepped, m * 60)
  end
  return minimum, m * 60
end

-- rating.rs max_seconds_within(): the longest duration <= cap the budget covers.
local function max_seconds(p, b, m, budget, cap)
  local least = rate(p, b, m, 1)
  if budget < least or cap <= 0 then return 0 end
  if p == 0 then return cap end
  local steps = idiv(60 * budget + 29, p * b)
  return math.min(steps * b, cap)
end

-- decision.rs grant_for(): (granted seconds, hold) or nil.
local function grant_for(p, b, m, available, quota, max_call)
  local cap = math.min(math.max(quota, m * 60), max_call)
  local secs = max_seconds(p, b, m, available, cap)
  if secs <= 0 then return nil end
  local hold = rate(p, b, m, secs)
  return secs, hold
end

local function xadd(stream, event)
  redis.call('XADD', stream, '*', 'e', cjson.encode(event))
end

local function event(id, at, partition, kind, body)
  local e = { event_id = id, at_ms = at, partition = partition }
  e[kind] = body
  return e
end

-- The account's limit (account.rs CreditPolicy::effective_limit).
local function account_limit(a, first_time, established)
  local source = num(a.ls)
  if source == 2 or source == 3 then return num(a.lf) end
  if a.est == '1' then return established end
  return first_time
end

-- HGETALL as a table.
local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function funding_of(hold)
  if hold.pk == 'c' then return 'FUNDING_PREPAID' end
  return 'FUNDING_POSTPAID'
end

local function code_of(hold)
  if hold.pk == 'c' then return hold.pid end
  return ''
end

-- The VAT rate of the hold's terms; 25 (the general rate) for a hold made
-- by an earlier library version, which did not record it.
local function vat_of(hold)
  return hold.v or 25
end

local function block_event(stream, partition, a_key, number, kind, target, blocked, reason, actor, now)
  local seq = redis.call('HINCRBY', a_key, 'sq_b', 1)
  xadd(stream, event('block:' .. number .. ':' .. seq, now, partition, 'block_changed', {
    number = number, kind = kind, target = target, blocked = blocked,
    reason = reason, actor = actor, sequence = seq }))
end

-- account.rs on_exposure_rise: the 80 % event once per cycle, the credit block at 100 %.
local function after_rise(stream, partition, a_key, number, first_time, established, percent, now)
  local a = hgetall(a_key)
  local limit = account_limit(a, first_time, established)
  local ub, iu = num(a.ub), num(a.iu)
  local exposure = ub + iu
  local thr, lim = 0, 0
  if a.tf ~= '1' and exposure * 100 >= limit * percent then
    thr = 1
    redis.call('HSET', a_key, 'tf', '1')
    local seq = redis.call('HINCRBY', a_key, 'sq_t', 1)
    xadd(stream, event('threshold:' .. number .. ':' .. seq, now, partition, 'threshold_reached', {
      number = number, exposure_ore = exposure, limit_ore = limit,
      unbilled_ore = ub, invoiced_unpaid_ore = iu, sequence = seq }))
  end
  if a.bc ~= '1' and exposure >= limit then
    lim = 1
    redis.call('HSET', a_key, 'bc', '1')
    local seq = redis.call('HINCRBY', a_key, 'sq_l', 1)
    xadd(stream, event('limit:' .. number .. ':' .. seq, now, partition, 'limit_reached', {
      number = number, exposure_ore = exposure, limit_ore = limit, sequence = seq }))
    block_event(stream, partition, a_key, number, 'BLOCK_KIND_CREDIT_LIMIT', '', true,
      'limit reached', 'gateway', now)
  end
  return thr, lim
end

-- account.rs on_exposure_fall: lift the credit block below the limit, re-arm below the threshold.
local function after_fall(stream, partition, a_key, number, first_time, established, percent, now)
  local a = hgetall(a_key)
  local limit = account_limit(a, first_time, established)
  local exposure = num(a.ub) + num(a.iu)
  if a.tf == '1' and exposure * 100 < limit * percent then
    redis.call('HDEL', a_key, 'tf')
  end
  if a.bc == '1' and exposure < limit then
    redis.call('HDEL', a_key, 'bc')
    block_event(stream, partition, a_key, number, 'BLOCK_KIND_CREDIT_LIMIT', '', false,
      'below the limit', 'gateway', now)
  end
end

local function limit_changed_event(stream, partition, a_key, number, first_time, established, reference, actor, now)
  local a = hgetall(a_key)
  local seq = redis.call('HINCRBY', a_key, 'sq_lc', 1)
  local source = num(a.ls)
  if source == 0 then source = 1 end
  local names = { 'LIMIT_SOURCE_DEFAULT', 'LIMIT_SOURCE_HOLDER_REQUESTED', 'LIMIT_SOURCE_CREDIT_DECISION' }
  xadd(stream, event('limit-changed:' .. number .. ':' .. seq, now, partition, 'limit_changed', {
    number = number, limit_ore = account_limit(a, first_time, established),
    source = names[source], reference = reference, actor = actor, sequence = seq }))
end

-- A hold is one string key: the MessagePack of a table with the fields of
-- hold.rs Hold — pk ('n' postpaid, 'c' prepaid), pid (the payer's number or
-- code id), num (the caller), svc, mer, tid, p, b, m (the tariff), v (VAT %),
-- cl (the IVR client), og, oh (the original grant and hold), g, h (the grant
-- and hold now), at (authorized), exp (expiry), st (HOLD_*), x (every
-- extension's answer, by sequence), xb (the second of the expiry index it is
-- listed under; since version 5) and, once posted, u = {duration, charge,
-- billed, overrun, late, uncollected}. One SET with its time to live writes
-- it (a hash of twenty fields cost more Redis CPU than anything else in an
-- Authorize); numbers stay numbers.
-- A hold written by library version 3 (a hash of strings), read into the
-- version 4 shape so that calls authorized before an upgrade can still be
-- extended, released, posted and expired. The next write stores it as a
-- string (SET replaces a key of any type). Remove after every deployment has
-- run version 4 for longer than --hold-retention-hours.
local function legacy_hold(key)
  local f = hgetall(key)
  local h = { pk = f.pk, pid = f.pid, num = f.num, svc = f.svc, mer = f.mer, tid = f.tid, cl = f.cl, st = f.st, x = {} }
  for _, n in ipairs({ 'p', 'b', 'm', 'v', 'og', 'oh', 'g', 'h', 'at', 'exp' }) do h[n] = num(f[n]) end
  for seq = 1, num(f.xn) do h.x[seq] = cjson.decode(f['x' .. seq]) end
  if f.u_d then
    h.u = { num(f.u_d), num(f.u_c), num(f.u_b), num(f.u_o), num(f.u_l), num(f.u_u) }
  end
  return h
end

local function load_hold(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then return legacy_hold(key) end
  if not raw then return nil end
  return cmsgpack.unpack(raw)
end

-- ttl_ms nil keeps the key's time to live.
local function store_hold(key, h, ttl_ms)
  if ttl_ms then
    redis.call('SET', key, cmsgpack.pack(h), 'PX', ttl_ms)
  else
    redis.call('SET', key, cmsgpack.pack(h), 'KEEPTTL')
  end
end

-- The expiry index of a partition (R10; the embedded store's BTreeSet of
-- (expiry, call id)). KEYS[3] of every hold Function is its base,
-- "{…}:x"; under it:
--   {…}:x:<s>  a list of the call ids whose hold expires in second s
--              (floor(expiry ms / 1000)), appended by authorize and extend;
--   {…}:x      a sorted set of the seconds that have such a list;
--   {…}:xn     the number of pending holds (the callauth_holds_pending gauge).
-- An RPUSH replaces the ZADD of every call id that version 4 made (the
-- largest single cost of an Authorize); the sorted set grows by one member
-- per second, not per call. Entries are not removed when a call ends: the
-- sweep (expire_due) drops them when their second comes, by reading the
-- hold. A pending hold records its second (xb) so an extension moves it at
-- most once per second of growth, and so the sweep can tell a current entry
-- from one an extension left behind or one of a call that ended.
-- Holds made by version 4 (no xb) are in the version-4 sorted set
-- "{…}:exp" until they end; the sweep still reads it.
local EXPIRY_SECOND_MS = 1000

local function expiry_second(expires)
  return math.floor(expires / EXPIRY_SECOND_MS)
end

local function legacy_expiry_key(base)
  return string.sub(base, 1, -2) .. 'exp'
end

local function index_expiry(base, second, call_id)
  if redis.call('RPUSH', base .. ':' .. second, call_id) == 1 then
    redis.call('ZADD', base, second, second)
  end
end

-- A pending hold leaves the index (released, posted or expired): counted
-- out, and its xb cleared (the caller stores it), which tells the sweep that
-- this entry was counted out. A hold still carrying xb once ended was ended
-- by a version-4 gateway during a rollout, which does not count; the sweep
-- counts it out then.
local function unindex_expiry(base, h, call_id)
  if h.xb then
    redis.call('DECR', base .. 'n')
    h.xb = nil
  else
    redis.call('ZREM', legacy_expiry_key(base), call_id)
  end
end

-- Writes a new pending hold (hold.rs Hold::new) without building it as a
-- table: `fixed` is the MessagePack of its seven text fields (pk, pid, num,
-- svc, mer, tid, cl) as the gateway encoded them (calls.rs
-- hold_fixed_fields); here the map's header (map 16 of 20 entries) goes
-- before them and the tariff, VAT rate and grant after. Returns its expiry.
local HOLD_HEADER = '\222\0\20'
local function create_hold(h_key, base, call_id, fixed, p, b, m, vat, granted, hold, now, grace, retention)
  local expires = now + granted * 1000 + grace
  local second = expiry_second(expires)
  -- TTLs are relative: `now` is the caller's clock, which Redis's own clock
  -- need not match (and a test's clock may be years away).
  redis.call('SET', h_key, HOLD_HEADER .. fixed .. cmsgpack.pack('p', p, 'b', b, 'm', m, 'v', vat,
    'og', granted, 'oh', hold, 'g', granted, 'h', hold, 'at', now, 'exp', expires,
    'st', HOLD_PENDING, 'x', {}, 'xb', second), 'PX', (expires - now) + retention)
  index_expiry(base, second, call_id)
  redis.call('INCR', base .. 'n')
  return expires
end

-- hold.rs Hold::replay: the answer to an Authorize for a call id whose hold
-- exists. nil when the hold is another payer's and the request carries no
-- consent (nothing will be written; the call index decides reuse when a
-- hold could be made); {-1, …} when the call id is reused.
local CALL_ID_REUSED = 'is already used for another caller, code, service or IVR client'
local function replay(h, kind, pid, call_id, service, client, now, with_consent)
  if h.pk ~= kind or h.pid ~= pid then
    if with_consent then return { -1, 'call_id ' .. call_id .. ' ' .. CALL_ID_REUSED } end
    return nil
  end
  if h.svc ~= service or h.cl ~= client then
    return { -1, 'call_id ' .. call_id .. ' ' .. CALL_ID_REUSED }
  end
  if h.st == HOLD_PENDING and h.exp > now then
    return { 2, h.og, h.oh, h.exp, h.tid }
  end
  return { 3 }
end

-- ------------------------------------------------------------- functions

-- The call index (call id -> payer): claimed by every Authorize that carries
-- consent, allowed or not, and refreshed by the same payer's claims, so that
-- it outlives every hold it names. On a single node inside the authorize
-- step (KEYS[5]); on a cluster it lives in another slot and the gateway
-- claims it first with claim_call. Returns 'fresh' (no one had it: no hold
-- of this call id can exist), 'again' (this payer's, refreshed) or false
-- (another payer's).
local function claim_index(index_key, payer, ttl)
  local prev = redis.call('SET', index_key, payer, 'NX', 'GET', 'PX', ttl)
  if not prev then return 'fresh' end
  if prev ~= payer then return false end
  redis.call('PEXPIRE', index_key, ttl)
  return 'again'
end

-- Claims the call index on a cluster, before the authorize step.
-- KEYS[1] call index entry   ARGV: payer, ttl_ms
-- Returns 1 fresh | 2 this payer's again | 0 reused.
local function claim_call(keys, args)
  local claim = claim_index(keys[1], args[1], tonumber(args[2]))
  if claim == 'fresh' then return 1 end
  if claim == 'again' then return 2 end
  return 0
end

-- Postpaid authorize (decision.rs decide_postpaid + hold.rs Hold::new).
-- KEYS[1] account hash   KEYS[2] hold   KEYS[3] expiry index base   KEYS[4] event stream
-- [KEYS[5] call index entry, single node only]
-- ARGV: now, call_id, number, service, merchant, terms_id, price, step, minimum,
--       quota, max_call, grace_ms, retention_ms, first_time_limit, established_limit,
--       consent_verdict (0 = both steps for these terms, else the reason code),
--       partition, ivr_client, with_consent (0/1), consent_event_json (appended when allowed),
--       vat_rate_percent, hold_fixed_fields (MessagePack, see create_hold), claimed ('fresh' when the
--       gateway claimed the index fresh on a cluster, else '')
--       [, index_payer, index_ttl_ms with KEYS[5]]
-- Returns {0, reason} refused | {1, granted, hold, expires, terms_id} allowed |
--         {2, granted, hold, expires, terms_id} replayed | {3} replayed, the call ended |
--         {-1, message} call id reused.
local function authorize(keys, args)
  local a_key, h_key, exp_key, stream = keys[1], keys[2], keys[3], keys[4]
  local now, call_id, number, service, merchant = tonumber(args[1]), args[2], args[3], args[4], args[5]
  local terms_id = args[6]
  local p, b, m = tonumber(args[7]), tonumber(args[8]), tonumber(args[9])
  local quota, max_call = tonumber(args[10]), tonumber(args[11])
  local grace, retention = tonumber(args[12]), tonumber(args[13])
  local first_time, established = tonumber(args[14]), tonumber(args[15])
  local consent_verdict = tonumber(args[16])
  local client, with_consent = args[18], args[19] == '1'
  local vat, fixed, claim = tonumber(args[21]), args[22], args[23]

  if keys[5] then
    claim = claim_index(keys[5], args[24], tonumber(args[25]))
    if not claim then return { -1, 'call_id ' .. call_id .. ' ' .. CALL_ID_REUSED } end
  end
  -- A fresh claim of the index means no hold of this call id exists.
  if claim ~= 'fresh' then
    local existing = load_hold(h_key)
    if existing then
      local r = replay(existing, 'n', number, call_id, service, client, now, with_consent)
      if r then return r end
    end
  end
  local f = redis.call('HMGET', a_key, 'dir', 'ls', 'lf', 'est', 'ub', 'iu', 'pd', 'bo', 'bc', 'bd',
    'bm:' .. merchant, 'bs:' .. service, 'pc')
  local dir = f[1]
  if not dir then return { 0, NUMBER_NOT_IN_DIRECTORY } end
  if dir ~= '1' then return { 0, HOLDER_NOT_REGISTERED } end
  if f[8] == '1' or f[11] == '1' or f[12] == '1' then return { 0, BLOCKED_BY_HOLDER } end
  if f[10] == '1' then return { 0, BLOCKED_OVERDUE } end
  if f[9] == '1' then return { 0, BLOCKED_CREDIT_LIMIT } end
  local limit = account_limit({ ls = f[2], lf = f[3], est = f[4] }, first_time, established)
  local pending = num(f[7])
  local available = limit - num(f[5]) - num(f[6]) - pending
  if available < rate(p, b, m, 1) then return { 0, INSUFFICIENT_CREDIT } end
  if consent_verdict ~= 0 then return { 0, consent_verdict } end
  local granted, hold = grant_for(p, b, m, available, quota, max_call)
  if not granted then return { 0, INSUFFICIENT_CREDIT } end
  local expires = create_hold(h_key, exp_key, call_id, fixed, p, b, m, vat, granted, hold, now, grace, retention)
  redis.call('HSET', a_key, 'pd', pending + hold, 'pc', num(f[13]) + 1)
  redis.call('XADD', stream, '*', 'e', args[20])
  return { 1, granted, hold, expires, terms_id }
end

-- The answer to a retried prepaid Authorize whose line is now refused
-- (hold.rs Hold::replay). Read only.
-- KEYS[1] hold hash   ARGV: code_id, call_id, service, ivr_client, now
-- Returns as authorize ({2, …} | {3} | {-1, …}), or {0} when the code holds no such call.
local function replay_code(keys, args)
  local h = load_hold(keys[1])
  if not h then return { 0 } end
  local r = replay(h, 'c', args[1], args[2], args[3], args[4], tonumber(args[5]), false)
  return r or { 0 }
end

-- Who a hold concerns (the caller, merchant, service), for the holder-block
-- check of a prepaid call's Extend. Read only.
-- KEYS[1] hold   Returns {number, merchant, service} or {} when there is none.
local function hold_parties(keys, args)
  local h = load_hold(keys[1])
  if not h then return {} end
  return { h.num, h.mer, h.svc }
end

-- The calling line's part of a prepaid authorize (decide_prepaid_line). Read only.
-- KEYS[1] the caller's account hash (may not exist)   KEYS[2] line lockout hash
-- ARGV: merchant, service
-- Returns {locked_until_ms, holder_blocked (0/1)}.
local function prepaid_line(keys, args)
  local locked_until = num(redis.call('HGET', keys[2], 'lu'))
  local f = redis.call('HMGET', keys[1], 'bo', 'bm:' .. args[1], 'bs:' .. args[2])
  local blocked = 0
  if f[1] == '1' or f[2] == '1' or f[3] == '1' then blocked = 1 end
  return { locked_until, blocked }
end

-- Counts a wrong prepaid code on a line (R17; lockout.rs LineState::record_failure).
-- KEYS[1] line lockout hash
-- ARGV: now, window_ms, max_failures, lockout_ms
-- Returns 1 when the line is (now) locked, else 0.
local function code_failure(keys, args)
  local key = keys[1]
  local now, window, max, lockout = tonumber(args[1]), tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  local l = hgetall(key)
  if num(l.lu) > now then return 1 end
  local failures, start = num(l.f), num(l.ws)
  if start + window <= now then
    failures = 0
    start = now
  end
  failures = failures + 1
  local locked = 0
  if failures >= max then
    redis.call('HSET', key, 'f', 0, 'ws', now, 'lu', now + lockout)
    locked = 1
  else
    redis.call('HSET', key, 'f', failures, 'ws', start)
  end
  redis.call('PEXPIRE', key, math.max(now + lockout, start + window) - now + 1000)
  return locked
end

-- The code's part of a prepaid authorize (decision.rs decide_prepaid_code + hold.rs Hold::new).
-- KEYS[1] code hash   KEYS[2] hold   KEYS[3] expiry index base   KEYS[4] event stream
-- [KEYS[5] call index entry, single node only]
-- ARGV: now, call_id, code_id, number ('' when withheld), service, merchant, terms_id,
--       price, step, minimum, quota, max_call, grace_ms, retention_ms, consent_verdict,
--       partition, ivr_client, with_consent (0/1), consent_event_json, vat_rate_percent,
--       hold_fixed_fields (MessagePack, see create_hold), claimed ('fresh' or '', as for
--       authorize) [, index_payer, index_ttl_ms with KEYS[5]]
-- Returns as authorize; {0, PREPAID_CODE_INVALID} for an unknown code.
local function authorize_code(keys, args)
  local c_key, h_key, exp_key, stream = keys[1], keys[2], keys[3], keys[4]
  local now, call_id, code_id, number, service, merchant, terms_id =
    tonumber(args[1]), args[2], args[3], args[4], args[5], args[6], args[7]
  local p, b, m = tonumber(args[8]), tonumber(args[9]), tonumber(args[10])
  local quota, max_call = tonumber(args[11]), tonumber(args[12])
  local grace, retention = tonumber(args[13]), tonumber(args[14])
  local consent_verdict = tonumber(args[15])
  local client, with_consent = args[17], args[18] == '1'
  local vat, fixed, claim = tonumber(args[20]), args[21], args[22]

  if keys[5] then
    claim = claim_index(keys[5], args[23], tonumber(args[24]))
    if not claim then return { -1, 'call_id ' .. call_id .. ' ' .. CALL_ID_REUSED } end
  end
  local f = redis.call('HMGET', c_key, 'bal', 'pd')
  if not f[1] then return { 0, PREPAID_CODE_INVALID } end
  if claim ~= 'fresh' then
    local existing = load_hold(h_key)
    if existing then
      local r = replay(existing, 'c', code_id, call_id, service, client, now, with_consent)
      if r then return r end
    end
  end
  local pending = num(f[2])
  local available = num(f[1]) - pending
  if available < rate(p, b, m, 1) then return { 0, PREPAID_BALANCE_INSUFFICIENT } end
  if consent_verdict ~= 0 then return { 0, consent_verdict } end
  local granted, hold = grant_for(p, b, m, available, quota, max_call)
  if not granted then return { 0, PREPAID_BALANCE_INSUFFICIENT } end
  local expires = create_hold(h_key, exp_key, call_id, fixed, p, b, m, vat, granted, hold, now, grace, retention)
  redis.call('HSET', c_key, 'pd', pending + hold)
  redis.call('XADD', stream, '*', 'e', args[19])
  return { 1, granted, hold, expires, terms_id }
end

-- Grows a pending call's grant (hold.rs Hold::extend_step and Hold::extend;
-- decision.rs decide_extend), idempotent per (call_id, sequence): every earlier
-- sequence replays its first answer. Only the authorizing IVR client may extend.
-- KEYS[1] payer hash (account or code)   KEYS[2] hold   KEYS[3] expiry index base
-- ARGV: now, call_id, sequence, quota, max_call, grace_ms, first_time_limit,
--       established_limit, prepaid_holder_blocked (0/1), ivr_client
-- Returns {-1, message} out of order | {-2} unknown call | {-3, message} another client's call |
--         {outcome (1 extended, else the refusal reason), total, added, hold, expires, replayed}
local function extend(keys, args)
  local payer_key, h_key, exp_key = keys[1], keys[2], keys[3]
  local now, call_id, seq = tonumber(args[1]), args[2], tonumber(args[3])
  local quota, max_call, grace = tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
  local first_time, established = tonumber(args[7]), tonumber(args[8])
  local h = load_hold(h_key)
  if not h then return { -2 } end
  if h.cl ~= args[10] then
    return { -3, 'call_id ' .. call_id .. ' was authorized by another IVR client' }
  end
  local done = #h.x
  if seq >= 1 and seq <= done then
    local r = h.x[seq]
    return { r[1], r[2], r[3], r[4], r[5], 1 }
  end
  if seq ~= done + 1 or seq > MAX_EXTENSIONS then
    return { -1, 'extension sequence ' .. seq .. ' is out of order: expected ' .. (done + 1) }
  end
  local p, b, m = h.p, h.b, h.m
  local granted, hold, expires = h.g, h.h, h.exp
  local before, ttl = h.g, nil
  local outcome
  if h.st ~= HOLD_PENDING or expires <= now then
    outcome = CALL_ENDED
  else
    local refusal = 0
    local available
    if h.pk == 'n' then
      local a = redis.call('HMGET', payer_key, 'ls', 'lf', 'est', 'ub', 'iu', 'pd', 'bo', 'bc', 'bd',
        'bm:' .. h.mer, 'bs:' .. h.svc)
      if a[7] == '1' or a[10] == '1' or a[11] == '1' then
        refusal = BLOCKED_BY_HOLDER
      elseif a[9] == '1' then
        refusal = BLOCKED_OVERDUE
      elseif a[8] == '1' then
        refusal = BLOCKED_CREDIT_LIMIT
      end
      local limit = account_limit({ ls = a[1], lf = a[2], est = a[3] }, first_time, established)
      available = limit - num(a[4]) - num(a[5]) - num(a[6])
    else
      if args[9] == '1' then refusal = BLOCKED_BY_HOLDER end
      local c = redis.call('HMGET', payer_key, 'bal', 'pd')
      available = num(c[1]) - num(c[2])
    end
    if refusal ~= 0 then
      outcome = refusal
    elseif granted >= max_call then
      outcome = MAX_CALL_DURATION
    else
      local cap = math.min(granted + quota, max_call)
      local budget = hold + math.max(available, 0)
      local secs = max_seconds(p, b, m, budget, cap)
      if secs <= granted then
        outcome = INSUFFICIENT_CREDIT
      else
        local new_hold = math.max(rate(p, b, m, secs), hold)
        local new_expires = h.at + secs * 1000 + grace
        redis.call('HINCRBY', payer_key, 'pd', new_hold - hold)
        local second = expiry_second(new_expires)
        if h.xb ~= second then
          if not h.xb then
            -- A version-4 hold moves into this version's index.
            redis.call('ZREM', legacy_expiry_key(exp_key), call_id)
            redis.call('INCR', exp_key .. 'n')
          end
          index_expiry(exp_key, second, call_id)
          h.xb = second
        end
        local left = redis.call('PTTL', h_key)
        if left > 0 then ttl = left + (new_expires - expires) end
        h.g, h.h, h.exp = secs, new_hold, new_expires
        outcome = GRANTED
        granted, hold, expires = secs, new_hold, new_expires
      end
    end
  end
  local added = granted - before
  local result = { outcome, granted, added, hold, expires }
  h.x[seq] = result
  store_hold(h_key, h, ttl)
  return { outcome, granted, added, hold, expires, 0 }
end

-- Voids a pending hold (Release; hold.rs Hold::void). Only the authorizing IVR client may.
-- KEYS[1] payer hash   KEYS[2] hold   KEYS[3] expiry index base   KEYS[4] event stream
-- ARGV: now, call_id, retention_ms, partition, ivr_client
-- Returns {1, amount} voided | {2} already voided | {3} already posted | {4} already expired |
--         {5} unknown | {-3, message} another client's call.
local function release(keys, args)
  local payer_key, h_key, exp_key, stream = keys[1], keys[2], keys[3], keys[4]
  local now, call_id, retention, partition = tonumber(args[1]), args[2], tonumber(args[3]), tonumber(args[4])
  local h = load_hold(h_key)
  if not h then return { 5 } end
  if h.cl ~= args[5] then
    return { -3, 'call_id ' .. call_id .. ' was authorized by another IVR client' }
  end
  if h.st == HOLD_VOIDED then return { 2 } end
  if h.st == HOLD_POSTED then return { 3 } end
  if h.st == HOLD_EXPIRED then return { 4 } end
  local amount = h.h
  h.st = HOLD_VOIDED
  unindex_expiry(exp_key, h, call_id)
  store_hold(h_key, h, retention)
  redis.call('HINCRBY', payer_key, 'pd', neg(amount))
  if h.pk == 'n' then redis.call('HINCRBY', payer_key, 'pc', -1) end
  xadd(stream, event('voided:' .. call_id, now, partition, 'hold_voided', {
    call_id = call_id, number = h.num, funding = funding_of(h), code_id = code_of(h), amount_ore = amount }))
  return { 1, amount }
end

-- Rates usage with the hold's terms and posts it (R4, R8, R10; hold.rs
-- Hold::check_usage and prepaid_debit); idempotent per call.
-- KEYS[1] payer hash   KEYS[2] hold   KEYS[3] expiry index base   KEYS[4] event stream
-- ARGV: now, call_id, merchant, record_id, service, started_at_ms, duration_seconds,
--       start_skew_ms, retention_ms, first_time_limit, established_limit, threshold_percent, partition
-- Returns {1 applied | 2 duplicate, charge, billed, overrun, late, uncollected[, threshold_reached,
-- limit_reached]} (the two flags only when applied) or {0, reject_code, detail}.
local function post_usage(keys, args)
  local payer_key, h_key, exp_key, stream = keys[1], keys[2], keys[3], keys[4]
  local now, call_id, merchant, record_id, service = tonumber(args[1]), args[2], args[3], args[4], args[5]
  local started, duration = tonumber(args[6]), tonumber(args[7])
  local skew, retention = tonumber(args[8]), tonumber(args[9])
  local first_time, established, percent = tonumber(args[10]), tonumber(args[11]), tonumber(args[12])
  local partition = tonumber(args[13])
  local h = load_hold(h_key)
  if not h then
    return { 0, USAGE_UNKNOWN_CALL, 'no call with this call_id was authorized' }
  end
  if h.svc ~= service then
    return { 0, USAGE_SERVICE_MISMATCH, 'the call was authorized for another service number' }
  end
  if h.mer ~= merchant then
    return { 0, USAGE_NOT_MERCHANTS_SERVICE, "the call was authorized for another merchant's service" }
  end
  if h.st == HOLD_POSTED then
    local u = h.u
    if u[1] == duration then
      return { 2, u[2], u[3], u[4], u[5], u[6] }
    end
    return { 0, USAGE_CONFLICTING_DUPLICATE,
      'the call was already posted with ' .. string.format('%d', u[1]) .. ' s' }
  end
  if h.st == HOLD_VOIDED then
    return { 0, USAGE_CALL_RELEASED, 'the IVR released the call before the service started' }
  end
  if started < h.at - skew then
    return { 0, USAGE_START_OUT_OF_RANGE, 'started_at is before the call was authorized' }
  end
  local late = 0
  if h.st == HOLD_EXPIRED then late = 1 end
  local p, b, m = h.p, h.b, h.m
  local charge, billed = rate(p, b, m, duration)
  local granted = h.g
  local overrun = math.max(duration - granted, 0)
  if late == 0 then
    unindex_expiry(exp_key, h, call_id)
    redis.call('HINCRBY', payer_key, 'pd', neg(h.h))
    if h.pk == 'n' then redis.call('HINCRBY', payer_key, 'pc', -1) end
  end
  local uncollected = 0
  if h.pk == 'c' then
    -- prepaid_debit: never more than the code holds beside its other calls' holds.
    local c = redis.call('HMGET', payer_key, 'bal', 'pd')
    local free = math.max(num(c[1]) - num(c[2]), 0)
    if charge > free then
      uncollected = charge - free
      charge = free
    end
  end
  h.st, h.u = HOLD_POSTED, { duration, charge, billed, overrun, late, uncollected }
  store_hold(h_key, h, retention)
  local exposure = 0
  if h.pk == 'n' then
    redis.call('HINCRBY', payer_key, 'ub', charge)
    local e = redis.call('HMGET', payer_key, 'ub', 'iu')
    exposure = num(e[1]) + num(e[2])
  else
    redis.call('HINCRBY', payer_key, 'bal', neg(charge))
  end
  xadd(stream, event('usage:' .. call_id, now, partition, 'usage_posted', {
    call_id = call_id, record_id = record_id, merchant_id = merchant, service_number = service,
    number = h.num, funding = funding_of(h), code_id = code_of(h), terms_id = h.tid,
    price_per_minute_ore = p, billing_step_seconds = b, minimum_minutes = m,
    started_at_ms = started, duration_seconds = duration, billed_seconds = billed,
    charge_ore = charge, granted_seconds = granted, overrun_seconds = overrun,
    late = (late == 1), authorized_at_ms = h.at, exposure_after_ore = exposure,
    uncollected_ore = uncollected, vat_rate_percent = vat_of(h) }))
  local thr, lim = 0, 0
  if h.pk == 'n' then
    thr, lim = after_rise(stream, partition, payer_key, h.num, first_time, established, percent, now)
  else
    xadd(stream, event('prepaid-debit:' .. call_id, now, partition, 'prepaid_debited', {
      code_id = h.pid, call_id = call_id, amount_ore = charge,
      balance_after_ore = num(redis.call('HGET', payer_key, 'bal')) }))
  end
  return { 1, charge, billed, overrun, late, uncollected, thr, lim }
end

-- Expires one due hold (hold.rs Hold::expire).
local function expire_one(stream, partition, prefix, h_key, h, call_id, now, retention)
  local amount = h.h
  local payer_key
  if h.pk == 'n' then payer_key = prefix .. 'a:' .. h.pid else payer_key = prefix .. 'c:' .. h.pid end
  h.st = HOLD_EXPIRED
  store_hold(h_key, h, retention)
  redis.call('HINCRBY', payer_key, 'pd', neg(amount))
  if h.pk == 'n' then redis.call('HINCRBY', payer_key, 'pc', -1) end
  xadd(stream, event('expired:' .. call_id, now, partition, 'hold_expired', {
    call_id = call_id, number = h.num, funding = funding_of(h), code_id = code_of(h),
    amount_ore = amount, granted_seconds = h.g }))
end

-- Pushes call ids back onto a list, in slices Lua's stack can take.
local function rpush_all(key, ids)
  for i = 1, #ids, 1000 do
    redis.call('RPUSH', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end

-- Expires up to max due holds of a partition (R10; hold.rs Hold::expire),
-- earliest expiry first, ties by call id (the embedded store's order). Safe
-- to run concurrently: each call is one step.
-- KEYS[1] expiry index base   KEYS[2] event stream
-- ARGV: now, max, key_prefix (the partition's "{…}:" tag), retention_ms, partition
-- Hold and payer keys are derived from the prefix and carry the same hash tag.
-- Returns the number of holds expired.
local function expire_due(keys, args)
  local base, stream = keys[1], keys[2]
  local now, max, prefix = tonumber(args[1]), tonumber(args[2]), args[3]
  local retention, partition = tonumber(args[4]), tonumber(args[5])
  local expired = 0
  -- Holds made by version 4, in its sorted set.
  local legacy = legacy_expiry_key(base)
  for _, call_id in ipairs(redis.call('ZRANGEBYSCORE', legacy, '-inf', now, 'LIMIT', 0, max)) do
    redis.call('ZREM', legacy, call_id)
    local h_key = prefix .. 'h:' .. call_id
    local h = load_hold(h_key)
    if h and h.st == HOLD_PENDING and h.exp <= now and not h.xb then
      expire_one(stream, partition, prefix, h_key, h, call_id, now, retention)
      expired = expired + 1
    end
  end
  -- Every second up to now's: in order, so expiries come out in order.
  local seconds = redis.call('ZRANGEBYSCORE', base, '-inf', expiry_second(now))
  for _, second in ipairs(seconds) do
    if expired >= max then break end
    local list = base .. ':' .. second
    local s = tonumber(second)
    local due, keep = {}, {}
    for _, call_id in ipairs(redis.call('LRANGE', list, 0, -1)) do
      local h_key = prefix .. 'h:' .. call_id
      local h = load_hold(h_key)
      -- Entries of ended calls, and those an extension moved to a later
      -- second, are dropped here.
      if h and h.xb == s then
        if h.st ~= HOLD_PENDING then
          -- Ended by a version-4 gateway, which did not count it out.
          redis.call('DECR', base .. 'n')
        elseif h.exp <= now then
          due[#due + 1] = { h.exp, call_id, h_key, h }
        else
          keep[#keep + 1] = call_id
        end
      end
    end
    table.sort(due, function(x, y)
      if x[1] ~= y[1] then return x[1] < y[1] end
      return x[2] < y[2]
    end)
    for _, d in ipairs(due) do
      if expired < max then
        unindex_expiry(base, d[4], d[2])
        expire_one(stream, partition, prefix, d[3], d[4], d[2], now, retention)
        expired = expired + 1
      else
        keep[#keep + 1] = d[2]
      end
    end
    redis.call('DEL', list)
    if #keep > 0 then
      rpush_all(list, keep)
    else
      redis.call('ZREM', base, second)
    end
  end
  return expired
end

-- Records a number-directory entry (R1).
-- KEYS[1] account hash   KEYS[2] event stream
-- ARGV: now, number, registered (0/1), actor, partition
local function put_directory(keys, args)
  local a_key, stream = keys[1], keys[2]
  local now, number, registered, actor, partition = tonumber(args[1]), args[2], args[3], args[4], tonumber(args[5])
  if redis.call('HGET', a_key, 'dir') ~= registered then
    redis.call('HSET', a_key, 'dir', registered)
    local seq = redis.call('HINCRBY', a_key, 'sq_d', 1)
    xadd(stream, event('directory:' .. number .. ':' .. seq, now, partition, 'directory_changed', {
      number = number, holder_registered = (registered == '1'), actor = actor, sequence = seq }))
  end
  return 1
end

-- Adds or lifts a holder or overdue block (R6, R7).
-- KEYS[1] account hash   KEYS[2] event stream
-- ARGV: now, number, field ('bo', 'bd', 'bm:<merchant>', 'bs:<service>'), kind name,
--       target, blocked (0/1), reason, actor, partition
-- Returns 1 when the block changed.
local function set_block(keys, args)
  local a_key, stream = keys[1], keys[2]
  local now, number, field, kind, target = tonumber(args[1]), args[2], args[3], args[4], args[5]
  local blocked, reason, actor, partition = args[6] == '1', args[7], args[8], tonumber(args[9])
  local current = redis.call('HGET', a_key, field) == '1'
  if current == blocked then
    -- Make sure the account exists even when nothing changed.
    redis.call('HSETNX', a_key, 'pd', 0)
    return 0
  end
  if blocked then redis.call('HSET', a_key, field, '1') else redis.call('HDEL', a_key, field) end
  block_event(stream, partition, a_key, number, kind, target, blocked, reason, actor, now)
  return 1
end

-- Changes the limit (R9), then re-evaluates the credit block and the threshold.
-- KEYS[1] account hash   KEYS[2] event stream
-- ARGV: now, number, source (1 default, 2 holder, 3 decision), fixed_limit,
--       first_time_limit, established_limit, threshold_percent, reference, actor, partition
local function set_limit(keys, args)
  local a_key, stream = keys[1], keys[2]
  local now, number, source, fixed = tonumber(args[1]), args[2], args[3], args[4]
  local first_time, established, percent = tonumber(args[5]), tonumber(args[6]), tonumber(args[7])
  local reference, actor, partition = args[8], args[9], tonumber(args[10])
  redis.call('HSET', a_key, 'ls', source, 'lf', fixed)
  limit_changed_event(stream, partition, a_key, number, first_time, established, reference, actor, now)
  after_fall(stream, partition, a_key, number, first_time, established, percent, now)
  after_rise(stream, partition, a_key, number, first_time, established, percent, now)
  return 1
end

-- Applies an invoice (or fees added to one): unbilled -> invoiced-unpaid
-- (account.rs Balances::apply_invoice); idempotent per invoice.
-- KEYS[1] account hash   KEYS[2] applied-invoices set   KEYS[3] event stream
-- ARGV: now, number, invoice_id, usage, fees, first_time_limit, established_limit,
--       threshold_percent, partition
-- Returns 1 applied | 2 already applied | {-1, message} | {-2} no account.
local function apply_invoice(keys, args)
  local a_key, set_key, stream = keys[1], keys[2], keys[3]
  local now, number, invoice_id = tonumber(args[1]), args[2], args[3]
  local usage, fees = tonumber(args[4]), tonumber(args[5])
  local first_time, established, percent = tonumber(args[6]), tonumber(args[7]), tonumber(args[8])
  local partition = tonumber(args[9])
  if redis.call('EXISTS', a_key) == 0 then return { -2 } end
  if redis.call('SISMEMBER', set_key, invoice_id) == 1 then return 2 end
  local unbilled = num(redis.call('HGET', a_key, 'ub'))
  if usage > unbilled then
    return { -1, 'invoice ' .. invoice_id .. ' bills ' .. usage .. ' öre but only ' .. unbilled .. ' öre is unbilled' }
  end
  redis.call('HINCRBY', a_key, 'ub', neg(usage))
  redis.call('HINCRBY', a_key, 'iu', usage + fees)
  redis.call('SADD', set_key, invoice_id)
  xadd(stream, event('invoice:' .. number .. ':' .. invoice_id, now, partition, 'invoice_applied', {
    number = number, invoice_id = invoice_id, usage_ore = usage, fees_ore = fees }))
  after_rise(stream, partition, a_key, number, first_time, established, percent, now)
  return 1
end

-- Applies a payment (R7, R8, R15; account.rs Balances::apply_payment); idempotent per payment.
-- KEYS[1] account hash   KEYS[2] applied-payments set   KEYS[3] event stream
-- ARGV: now, number, payment_id, amount, clear_overdue (0/1), first_invoice_paid (0/1),
--       first_time_limit, established_limit, threshold_percent, partition
-- Returns 1 applied | 2 already applied | {-1, message} | {-2} no account.
local function apply_payment(keys, args)
  local a_key, set_key, stream = keys[1], keys[2], keys[3]
  local now, number, payment_id, amount = tonumber(args[1]), args[2], args[3], tonumber(args[4])
  local clear_overdue, first_paid = args[5] == '1', args[6] == '1'
  local first_time, established, percent = tonumber(args[7]), tonumber(args[8]), tonumber(args[9])
  local partition = tonumber(args[10])
  if redis.call('EXISTS', a_key) == 0 then return { -2 } end
  if redis.call('SISMEMBER', set_key, payment_id) == 1 then return 2 end
  local invoiced = num(redis.call('HGET', a_key, 'iu'))
  if amount > invoiced then
    return { -1, 'payment ' .. payment_id .. ' of ' .. amount .. ' öre exceeds the invoiced-unpaid ' .. invoiced .. ' öre' }
  end
  redis.call('HINCRBY', a_key, 'iu', neg(amount))
  redis.call('SADD', set_key, payment_id)
  xadd(stream, event('payment:' .. number .. ':' .. payment_id, now, partition, 'payment_applied', {
    number = number, payment_id = payment_id, amount_ore = amount,
    overdue_cleared = clear_overdue, first_invoice_paid = first_paid }))
  if clear_overdue and redis.call('HGET', a_key, 'bd') == '1' then
    redis.call('HDEL', a_key, 'bd')
    block_event(stream, partition, a_key, number, 'BLOCK_KIND_OVERDUE', '', false, 'paid', 'settlement', now)
  end
  if first_paid and redis.call('HGET', a_key, 'est') ~= '1' then
    redis.call('HSET', a_key, 'est', '1')
    local source = num(redis.call('HGET', a_key, 'ls'))
    if source == 0 or source == 1 then
      limit_changed_event(stream, partition, a_key, number, first_time, established,
        'first invoice paid', 'settlement', now)
    end
  end
  after_fall(stream, partition, a_key, number, first_time, established, percent, now)
  return 1
end

-- Reconciliation's repair: the ledger's amounts replace the projection's.
-- KEYS[1] account hash   KEYS[2] event stream
-- ARGV: now, number, unbilled, invoiced_unpaid, reason, first_time_limit,
--       established_limit, threshold_percent, partition
local function repair_balances(keys, args)
  local a_key, stream = keys[1], keys[2]
  local now, number, ub, iu, reason = tonumber(args[1]), args[2], tonumber(args[3]), tonumber(args[4]), args[5]
  local first_time, established, percent = tonumber(args[6]), tonumber(args[7]), tonumber(args[8])
  local partition = tonumber(args[9])
  local before = redis.call('HMGET', a_key, 'ub', 'iu')
  redis.call('HSET', a_key, 'ub', ub, 'iu', iu)
  local seq = redis.call('HINCRBY', a_key, 'sq_r', 1)
  xadd(stream, event('repaired:' .. number .. ':' .. seq, now, partition, 'balances_repaired', {
    number = number, unbilled_before_ore = num(before[1]), unbilled_after_ore = ub,
    invoiced_unpaid_before_ore = num(before[2]), invoiced_unpaid_after_ore = iu,
    reason = reason, sequence = seq }))
  after_fall(stream, partition, a_key, number, first_time, established, percent, now)
  after_rise(stream, partition, a_key, number, first_time, established, percent, now)
  return 1
end

-- A payment reference pays for one thing once (R17): its key holds
-- "<p|t>|<code_id>|<amount>" (purchase or top-up).
local REFERENCE_USED = 'is already used for another purchase or top-up'

-- Issues a prepaid code for a purchase (R17); idempotent per purchase reference
-- and amount. The caller chose a code whose partition is the reference's, so
-- both keys share a slot.
-- KEYS[1] reference key   KEYS[2] code hash   KEYS[3] event stream
-- ARGV: now, code_id, amount, purchase_ref, partition
-- Returns {1, code_id} issued | {2, code_id} already issued | {-1, message} reference used |
--         {-2} code id collision (draw again).
local function issue_code(keys, args)
  local ref_key, c_key, stream = keys[1], keys[2], keys[3]
  local now, code_id, amount, ref, partition = tonumber(args[1]), args[2], tonumber(args[3]), args[4], tonumber(args[5])
  local existing = redis.call('GET', ref_key)
  if existing then
    local kind, used_code, used_amount = string.match(existing, '^(%a)|([^|]*)|(%-?%d+)$')
    if kind == 'p' and tonumber(used_amount) == amount then return { 2, used_code } end
    return { -1, 'reference ' .. ref .. ' ' .. REFERENCE_USED }
  end
  if redis.call('EXISTS', c_key) == 1 then return { -2 } end
  redis.call('SET', ref_key, 'p|' .. code_id .. '|' .. amount)
  redis.call('HSET', c_key, 'bal', amount, 'pd', 0, 'iss', now)
  xadd(stream, event('prepaid-credit:' .. code_id .. ':' .. ref, now, partition, 'prepaid_credited', {
    code_id = code_id, reference = ref, amount_ore = amount, balance_after_ore = amount, issued = true }))
  return { 1, code_id }
end

-- Claims a payment reference for a top-up before the top-up itself (the
-- reference and the code live in different slots). A retry of the same top-up
-- finds its own claim.
-- KEYS[1] reference key   ARGV: code_id, amount, topup_ref
-- Returns 1 claimed (now or before, by this top-up) | {-1, message} reference used.
local function claim_reference(keys, args)
  local want = 't|' .. args[1] .. '|' .. args[2]
  local existing = redis.call('GET', keys[1])
  if existing and existing ~= want then
    return { -1, 'reference ' .. args[3] .. ' ' .. REFERENCE_USED }
  end
  if not existing then redis.call('SET', keys[1], want) end
  return 1
end

-- Tops a code up; idempotent per top-up reference (whose claim_reference came first).
-- KEYS[1] code hash   KEYS[2] event stream
-- ARGV: now, code_id, amount, topup_ref, partition
-- Returns 1 | 2 already applied | 0 unknown code.
local function top_up(keys, args)
  local c_key, stream = keys[1], keys[2]
  local now, code_id, amount, ref, partition = tonumber(args[1]), args[2], tonumber(args[3]), args[4], tonumber(args[5])
  if redis.call('EXISTS', c_key) == 0 then return 0 end
  if redis.call('HSETNX', c_key, 'r:' .. ref, 1) == 0 then return 2 end
  local balance = redis.call('HINCRBY', c_key, 'bal', amount)
  xadd(stream, event('prepaid-credit:' .. code_id .. ':' .. ref, now, partition, 'prepaid_credited', {
    code_id = code_id, reference = ref, amount_ore = amount, balance_after_ore = balance, issued = false }))
  return 1
end

-- Replaces the catalogue's records if its version is still `expected`, and bumps it.
-- KEYS[1] version   KEYS[2] merchants hash   KEYS[3] services hash   KEYS[4] terms hash
-- ARGV: expected_version, then triples (kind 'm'|'s'|'t', key, json)
-- Returns the new version, or -1 when another writer changed the catalogue first.
local function catalog_apply(keys, args)
  local version = num(redis.call('GET', keys[1]))
  if version ~= tonumber(args[1]) then return -1 end
  for i = 2, #args, 3 do
    local kind, key, json = args[i], args[i + 1], args[i + 2]
    if kind == 'm' then redis.call('HSET', keys[2], key, json)
    elseif kind == 's' then redis.call('HSET', keys[3], key, json)
    elseif kind == 't' then redis.call('HSETNX', keys[4], key, json)
    end
  end
  return redis.call('INCR', keys[1])
end

-- The whole catalogue in one consistent read.
-- KEYS[1] version   KEYS[2] merchants hash   KEYS[3] services hash   KEYS[4] terms hash
-- Returns {version, merchants flat, services flat, terms flat}.
local function catalog_read(keys, args)
  return { num(redis.call('GET', keys[1])), redis.call('HGETALL', keys[2]),
    redis.call('HGETALL', keys[3]), redis.call('HGETALL', keys[4]) }
end

-- The library version, for readiness checks.
local function version(keys, args)
  return '__V__'
end

redis.register_function('ca_v__V___authorize', authorize)
redis.register_function('ca_v__V___claim_call', claim_call)
redis.register_function{ function_name = 'ca_v__V___replay_code', callback = replay_code, flags = { 'no-writes' } }
redis.register_function{ function_name = 'ca_v__V___hold_parties', callback = hold_parties, flags = { 'no-writes' } }
redis.register_function('ca_v__V___claim_reference', claim_reference)
redis.register_function{ function_name = 'ca_v__V___prepaid_line', callback = prepaid_line, flags = { 'no-writes' } }
redis.register_function('ca_v__V___code_failure', code_failure)
redis.register_function('ca_v__V___authorize_code', authorize_code)
redis.register_function('ca_v__V___extend', extend)
redis.register_function('ca_v__V___release', release)
redis.register_function('ca_v__V___post_usage', post_usage)
redis.register_function('ca_v__V___expire_due', expire_due)
redis.register_function('ca_v__V___put_directory', put_directory)
redis.register_function('ca_v__V___set_block', set_block)
redis.register_function('ca_v__V___set_limit', set_limit)
redis.register_function('ca_v__V___apply_invoice', apply_invoice)
redis.register_function('ca_v__V___apply_payment', apply_payment)
redis.register_function('ca_v__V___repair_balances', repair_balances)
redis.register_function('ca_v__V___issue_code', issue_code)
redis.register_function('ca_v__V___top_up', top_up)
redis.register_function('ca_v__V___catalog_apply', catalog_apply)
redis.register_function{ function_name = 'ca_v__V___catalog_read', callback = catalog_read, flags = { 'no-writes' } }
redis.register_function{ function_name = 'ca_v__V___version', callback = version, flags = { 'no-writes' } }
