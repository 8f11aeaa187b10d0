//! The Function library (`callauth.lua`): its versioned source, loading it,
//! and calling its Functions (`FCALL`) with the arguments every step shares.
//!
//! The library is loaded with `FUNCTION LOAD REPLACE` under a versioned name,
//! so that gateways of two versions can share a Redis during a rolling
//! upgrade; bump [`LIBRARY_VERSION`] whenever the Lua changes its behaviour
//! or its calling convention.

use super::*;

pub const LIBRARY_VERSION: &str = "5";

/// The Function library source with its version and code tables filled in.
pub fn library_source() -> String {
    include_str!("callauth.lua")
        .replace("__V__", LIBRARY_VERSION)
        .replace("__CONSTANTS__", &lua_constants())
}

/// The Lua's code tables, generated from the Rust enums so that the two
/// cannot disagree: the reason codes of `callauth.v1.Reason`
/// (`decision::code`), the usage rejections (`UsageReject`), the hold states
/// (`HoldState::CODES`) and the extensions remembered per call.
pub fn lua_constants() -> String {
    use crate::domain::decision::code;
    use crate::domain::hold::{HoldState, UsageReject, MAX_EXTENSIONS};
    let mut out = String::from("-- Generated from the Rust enums (functions.rs lua_constants).\n");
    for (name, value) in code::ALL {
        out.push_str(&format!("local {name} = {value}\n"));
    }
    for r in UsageReject::ALL {
        out.push_str(&format!("local {} = {}\n", r.lua_name(), r.code()));
    }
    for (name, value) in HoldState::CODES {
        out.push_str(&format!("local {name} = '{value}'\n"));
    }
    out.push_str(&format!("local MAX_EXTENSIONS = {MAX_EXTENSIONS}\n"));
    out
}

pub(super) fn fname(name: &str) -> String {
    format!("ca_v{LIBRARY_VERSION}_{name}")
}

/// `FCALL <function> <n> <keys…> [call-index key]`; the arguments follow.
pub(super) fn fcall_cmd(
    function: &str,
    keys: &[String; 4],
    index: Option<&IndexClaim>,
) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("FCALL");
    cmd.arg(fname(function))
        .arg(keys.len() + usize::from(index.is_some()))
        .arg(&keys[..]);
    if let Some(i) = index {
        cmd.arg(&i.key);
    }
    cmd
}

pub(super) fn lua_safe(m: Money, what: &str) -> StoreResult<i64> {
    if m.ore().abs() >= LUA_SAFE {
        return Err(StoreError::Rejected(format!("{what} is too large")));
    }
    Ok(m.ore())
}

impl RedisStore {
    /// Loads (or replaces) this version's Function library on every primary.
    pub async fn load_functions(&self) -> anyhow::Result<()> {
        let mut cmd = ::redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(library_source());
        self.inner
            .conn
            .query::<Value>(&cmd)
            .await
            .map_err(|e| anyhow::anyhow!("FUNCTION LOAD failed: {e}"))?;
        self.check_version().await?;
        self.inner.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(super) async fn check_version(&self) -> anyhow::Result<()> {
        let mut cmd = ::redis::cmd("FCALL_RO");
        cmd.arg(fname("version")).arg(0);
        // The readiness connection (issue 10): never behind business traffic.
        let v: String = self.inner.probe.query(&cmd).await?;
        if v != LIBRARY_VERSION {
            anyhow::bail!("library version {v} loaded, {LIBRARY_VERSION} expected");
        }
        Ok(())
    }

    pub(super) async fn fcall(
        &self,
        name: &str,
        keys: &[String],
        args: Vec<String>,
    ) -> StoreResult<Value> {
        crate::store::budget::check_write()?;
        let mut cmd = ::redis::cmd("FCALL");
        cmd.arg(fname(name)).arg(keys.len()).arg(keys).arg(args);
        let wait = crate::store::budget::write_wait(self.inner.conn.timeout());
        self.inner
            .conn
            .query_write(&cmd, wait)
            .await
            .map_err(|e| self.unavailable(e))
    }

    pub(super) async fn fcall_ro(
        &self,
        name: &str,
        keys: &[String],
        args: Vec<String>,
    ) -> StoreResult<Value> {
        crate::store::budget::check()?;
        let mut cmd = ::redis::cmd("FCALL_RO");
        cmd.arg(fname(name)).arg(keys.len()).arg(keys).arg(args);
        self.inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))
    }

    pub(super) fn grant_args(&self) -> [String; 4] {
        let pol = &self.inner.policy;
        [
            pol.grant.quota_seconds.to_string(),
            pol.grant.max_call_seconds.to_string(),
            pol.hold_grace_ms.to_string(),
            pol.hold_retention_ms.to_string(),
        ]
    }

    pub(super) fn limit_args(&self) -> StoreResult<[String; 3]> {
        let c = self.credit();
        Ok([
            lua_safe(c.first_time_limit, "first-time limit")?.to_string(),
            lua_safe(c.established_limit, "established limit")?.to_string(),
            c.threshold_percent.to_string(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every upper-case name the Lua uses is a local it defines or one the
    /// generated tables define: a misspelt code would otherwise be a nil at
    /// run time, not an error at load.
    #[test]
    fn every_constant_the_lua_uses_is_defined() {
        let src = library_source();
        let mut defined = std::collections::HashSet::new();
        for line in src.lines() {
            if let Some(rest) = line.strip_prefix("local ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                defined.insert(name);
            }
        }
        let code: String = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        // Strings are not code: drop '…' and "…" literals.
        let mut stripped = String::new();
        let mut quote: Option<char> = None;
        for c in code.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '\'' || c == '"' => quote = Some(c),
                None => stripped.push(c),
            }
        }
        let mut word = String::new();
        for c in stripped.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            let is_constant = word.len() > 1
                && word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_constant {
                assert!(
                    defined.contains(&word),
                    "the Lua uses {word}, which nothing defines"
                );
            }
            word.clear();
        }
        assert!(src.contains("local CALL_ENDED = 61\n"));
        assert!(src.contains("local USAGE_UNKNOWN_CALL = 1\n"));
        assert!(src.contains("local HOLD_PENDING = 'P'\n"));
    }

    #[test]
    fn library_is_versioned() {
        let src = library_source();
        assert!(src.starts_with(&format!("#!lua name=callauth_v{LIBRARY_VERSION}\n")));
        assert!(!src.contains("__V__"));
        assert!(src.contains(&format!("'ca_v{LIBRARY_VERSION}_authorize'")));
    }
}
