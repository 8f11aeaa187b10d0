-- Issue 13.3: the event log keeps a payload only where no table holds the
-- fact (0007 did it for consents). A usage_posted event's fields were all in
-- its `usage` row except three: the authorization instant, the caller's
-- exposure after the call and the amount a capped prepaid debit did not
-- collect. They become columns of `usage`, so from now on a usage event's
-- row in `events` keeps only what idempotency and ordering need (event_id,
-- partition, stream_id, kind, at) and its payload is NULL.
--
-- Rows written before this migration take the three facts from their
-- event's payload where it still has them (not erased or redacted by
-- retention); their payloads are left as they are, like the consent
-- payloads before 0007, and go with retention.
alter table usage
    add column authorized_at      timestamptz,
    add column exposure_after_ore bigint,
    add column uncollected_ore    bigint;

update usage u
   set authorized_at = timestamptz 'epoch' + (e.payload->'usage_posted'->>'authorized_at_ms')::bigint * interval '1 millisecond',
       exposure_after_ore = (e.payload->'usage_posted'->>'exposure_after_ore')::bigint,
       uncollected_ore = coalesce((e.payload->'usage_posted'->>'uncollected_ore')::bigint, 0)
  from events e
 where e.event_id = 'usage:' || u.call_id
   and e.payload ? 'usage_posted';
