//! The partitions' event streams (the outbox, DESIGN invariant 6): the
//! Redis Streams protocol both processes use. The gateway's Functions append
//! (`XADD` inside each step); here are trimming behind the consumer groups,
//! and what the settlement consumer needs — its group, reading new and
//! pending entries, acknowledging, dead letters, claiming the entries of a
//! dead consumer, and removing consumers that are gone.

use super::*;

/// The consumer group settlement reads every partition's stream with.
pub const SETTLEMENT_GROUP: &str = "settlement";

/// KEYS[1] stream; ARGV[1] group, ARGV[2] minimum idle ms, ARGV[3] the
/// consumer running this (never removed). Removes the group's consumers with
/// no pending entries that have been idle at least ARGV[2] ms.
const PRUNE_CONSUMERS_LUA: &str = r#"
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local removed = 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[3] and tonumber(f['pending']) == 0
     and tonumber(f['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed = removed + 1
  end
end
return removed
"#;

/// A stream entry as read by a consumer: its id and its event payload
/// (`None` when the entry was trimmed while it was pending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub payload: Option<String>,
}

/// Where a group read starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The consumer's own delivered but unacknowledged entries.
    Pending,
    /// Entries never delivered to the group.
    New,
}

fn entries(v: &Value) -> Vec<StreamEntry> {
    let items = |v: &Value| -> Vec<Value> {
        match v {
            Value::Array(a) | Value::Set(a) => a.clone(),
            _ => Vec::new(),
        }
    };
    items(v)
        .iter()
        .map(|entry| {
            let parts = items(entry);
            let id = parts.first().map(field_text).unwrap_or_default();
            let fields = parts.get(1).map(flat_map).unwrap_or_default();
            StreamEntry {
                id,
                payload: fields.get("e").cloned(),
            }
        })
        .collect()
}

impl RedisStore {
    /// The dead-letter stream of partition `p` (same hash tag as its events).
    pub fn dead_letter_stream(&self, p: u32) -> String {
        format!("{}events:dead", self.inner.keys.tag_prefix(p))
    }

    /// Creates `group` on partition `p`'s stream, reading from its
    /// beginning (so nothing written before the first start is missed).
    pub async fn create_group(&self, p: u32, group: &str) -> StoreResult<()> {
        let mut cmd = ::redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(self.inner.keys.events(p))
            .arg(group)
            .arg("0")
            .arg("MKSTREAM");
        match self.inner.conn.query::<Value>(&cmd).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Up to `count` entries of partition `p` for `consumer` of `group`.
    pub async fn read_group(
        &self,
        p: u32,
        group: &str,
        consumer: &str,
        from: ReadFrom,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.inner.keys.events(p))
            .arg(match from {
                ReadFrom::Pending => "0",
                ReadFrom::New => ">",
            });
        let v: Value = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        // [[stream, [entries…]]] or nil.
        Ok(match v {
            Value::Array(streams) => streams
                .first()
                .map(|s| match s {
                    Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
                    _ => Vec::new(),
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    /// The id of the newest entry of partition `p`'s stream (None when the
    /// stream is empty or missing), as (milliseconds, sequence).
    pub async fn last_entry_id(&self, p: u32) -> StoreResult<Option<(u64, u64)>> {
        let mut cmd = ::redis::cmd("XREVRANGE");
        cmd.arg(self.inner.keys.events(p))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let v: Value = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(entries(&v).first().map(|e| parse_stream_id(&e.id)))
    }

    /// Acknowledges entries of partition `p` for `group`.
    pub async fn ack(&self, p: u32, group: &str, ids: &[String]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(self.inner.keys.events(p)).arg(group).arg(ids);
        self.inner
            .conn
            .query::<i64>(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// Moves an entry to the partition's dead-letter stream (with the error)
    /// and acknowledges it, in one transaction (both keys share the slot).
    pub async fn dead_letter(
        &self,
        p: u32,
        group: &str,
        id: &str,
        payload: &str,
        error: &str,
    ) -> StoreResult<()> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(self.dead_letter_stream(p))
            .arg("*")
            .arg("id")
            .arg(id)
            .arg("e")
            .arg(payload)
            .arg("error")
            .arg(error)
            .ignore()
            .cmd("XACK")
            .arg(self.inner.keys.events(p))
            .arg(group)
            .arg(id)
            .ignore();
        self.inner
            .conn
            .query_pipeline::<()>(&pipe)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// Takes over for `consumer` up to `count` entries of partition `p` that
    /// another consumer of `group` left pending for at least `idle`.
    pub async fn claim_idle(
        &self,
        p: u32,
        group: &str,
        consumer: &str,
        idle: std::time::Duration,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        let mut cmd = ::redis::cmd("XAUTOCLAIM");
        cmd.arg(self.inner.keys.events(p))
            .arg(group)
            .arg(consumer)
            .arg(idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count);
        let v: Value = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(match v {
            Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    /// Removes from `group` on partition `p` the consumers (other than
    /// `keep`) that hold no pending entries and have not read for `idle`.
    /// One script, so the check and the removal are one atomic step:
    /// `XGROUP DELCONSUMER` would drop a consumer's pending entries, and none
    /// can arrive between the two. Returns the number removed.
    pub async fn prune_consumers(
        &self,
        p: u32,
        group: &str,
        keep: &str,
        idle: std::time::Duration,
    ) -> StoreResult<usize> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(PRUNE_CONSUMERS_LUA)
            .arg(1)
            .arg(self.inner.keys.events(p))
            .arg(group)
            .arg(idle.as_millis() as u64)
            .arg(keep);
        let removed: i64 = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(removed.max(0) as usize)
    }

    /// Trims each partition's stream behind its slowest consumer group
    /// (`XTRIM MINID`): entries a group has not acknowledged are never
    /// deleted. A stream without any group is capped at `cap_without_groups`
    /// entries (approximate `MAXLEN`), and a warning says settlement is not
    /// consuming. Returns the entries removed.
    pub async fn trim_streams(&self, cap_without_groups: u64) -> StoreResult<u64> {
        let mut removed = 0u64;
        for p in 0..self.inner.policy.partitions {
            let stream = self.inner.keys.events(p);
            let groups = self.stream_groups(p).await?;
            let mut cmd = ::redis::cmd("XTRIM");
            if groups.is_empty() {
                cmd.arg(&stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(cap_without_groups);
            } else {
                // The oldest entry still needed: the oldest pending one, or
                // the one after the last delivered, over all groups.
                let mut min_needed: Option<(u64, u64)> = None;
                for g in &groups {
                    let needed = match g.oldest_pending {
                        Some(id) => id,
                        None => next_id(g.last_delivered),
                    };
                    min_needed = Some(min_needed.map_or(needed, |m| m.min(needed)));
                }
                let (ms, seq) = min_needed.expect("at least one group");
                cmd.arg(&stream)
                    .arg("MINID")
                    .arg("~")
                    .arg(format!("{ms}-{seq}"));
            }
            removed += self
                .inner
                .conn
                .query::<i64>(&cmd)
                .await
                .map_err(|e| self.unavailable(e))?
                .max(0) as u64;
        }
        Ok(removed)
    }

    /// The consumer groups of one partition's stream.
    pub async fn stream_groups(&self, partition: u32) -> StoreResult<Vec<GroupInfo>> {
        let stream = self.inner.keys.events(partition);
        let mut cmd = ::redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&stream);
        let v: Value = match self.inner.conn.query(&cmd).await {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(vec![]),
            Err(e) => return Err(self.unavailable(e)),
        };
        let mut out = Vec::new();
        for g in array(v)? {
            let info = flat_map(&g);
            let name = info.get("name").cloned().unwrap_or_default();
            let last_delivered = parse_stream_id(
                info.get("last-delivered-id")
                    .map(String::as_str)
                    .unwrap_or("0-0"),
            );
            let lag = info.get("lag").and_then(|l| l.parse::<u64>().ok());
            let pending = info
                .get("pending")
                .and_then(|l| l.parse::<u64>().ok())
                .unwrap_or(0);
            let oldest_pending = if pending > 0 {
                let mut x = ::redis::cmd("XPENDING");
                x.arg(&stream).arg(&name);
                let summary = array(
                    self.inner
                        .conn
                        .query::<Value>(&x)
                        .await
                        .map_err(|e| self.unavailable(e))?,
                )?;
                summary.get(1).map(field_text).map(|s| parse_stream_id(&s))
            } else {
                None
            };
            out.push(GroupInfo {
                name,
                last_delivered,
                pending,
                lag,
                oldest_pending,
            });
        }
        Ok(out)
    }

    /// The consumers of `group` on one partition's stream (empty when the
    /// stream or the group does not exist yet).
    pub async fn stream_consumers(
        &self,
        partition: u32,
        group: &str,
    ) -> StoreResult<Vec<ConsumerInfo>> {
        let mut cmd = ::redis::cmd("XINFO");
        cmd.arg("CONSUMERS")
            .arg(self.inner.keys.events(partition))
            .arg(group);
        let v: Value = match self.inner.conn.query(&cmd).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                return Ok(vec![])
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        Ok(array(v)?
            .iter()
            .map(|c| {
                let info = flat_map(c);
                let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok());
                ConsumerInfo {
                    name: info.get("name").cloned().unwrap_or_default(),
                    pending: num("pending").unwrap_or(0),
                    idle_ms: num("idle").unwrap_or(u64::MAX),
                }
            })
            .collect())
    }
}

pub(super) fn parse_stream_id(s: &str) -> (u64, u64) {
    let mut it = s.splitn(2, '-');
    let ms = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let seq = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (ms, seq)
}

pub(super) fn next_id((ms, seq): (u64, u64)) -> (u64, u64) {
    if seq == u64::MAX {
        (ms + 1, 0)
    } else {
        (ms, seq + 1)
    }
}

/// A consumer group of a partition's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub last_delivered: (u64, u64),
    pub pending: u64,
    /// Entries not yet delivered to the group (Redis 7: `lag`).
    pub lag: Option<u64>,
    pub oldest_pending: Option<(u64, u64)>,
}

/// A consumer of a group on a partition's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    /// Milliseconds since it last read (`XINFO CONSUMERS` `idle`).
    pub idle_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids() {
        assert_eq!(parse_stream_id("1700-3"), (1700, 3));
        assert_eq!(next_id((5, 1)), (5, 2));
    }
}
