//! The wrong-code lockout of a calling line (R17): `max_failures` wrong
//! prepaid codes within `window_ms` lock the line for `lockout_ms`. One pure
//! rule; the embedded store runs it under the line's entry, the Redis
//! Function `code_failure` runs the same steps in Lua.

/// How wrong codes are counted and punished.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window_ms: i64,
    pub lockout_ms: i64,
}

/// A line's wrong-code count.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LineState {
    pub failures: u32,
    pub window_start_ms: i64,
    pub locked_until_ms: i64,
}

impl LineState {
    /// Counts one wrong code at `now_ms`; true when the line is (now) locked.
    /// A line already locked counts nothing more; a window that has passed
    /// starts again; reaching `max_failures` locks the line and resets the
    /// count.
    pub fn record_failure(&mut self, now_ms: i64, policy: &LockoutPolicy) -> bool {
        if self.locked_until_ms > now_ms {
            return true;
        }
        if self.window_start_ms + policy.window_ms <= now_ms {
            self.failures = 0;
            self.window_start_ms = now_ms;
        }
        self.failures += 1;
        if self.failures >= policy.max_failures {
            self.failures = 0;
            self.window_start_ms = now_ms;
            self.locked_until_ms = now_ms + policy.lockout_ms;
            true
        } else {
            false
        }
    }

    /// Whether anything about the line is still worth remembering at `now_ms`.
    pub fn is_current(&self, now_ms: i64, policy: &LockoutPolicy) -> bool {
        self.locked_until_ms > now_ms || self.window_start_ms + policy.window_ms > now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 5,
        window_ms: 900_000,
        lockout_ms: 900_000,
    };

    #[test]
    fn five_wrong_codes_in_fifteen_minutes_lock_the_line() {
        let mut l = LineState::default();
        for t in 1..=4 {
            assert!(!l.record_failure(t * 1000, &POLICY));
        }
        assert!(l.record_failure(5000, &POLICY));
        assert_eq!(l.locked_until_ms, 5000 + 900_000);
        // Locked: counting more changes nothing.
        assert!(l.record_failure(6000, &POLICY));
        assert_eq!(l.locked_until_ms, 905_000);
    }

    #[test]
    fn a_passed_window_starts_again() {
        let mut l = LineState::default();
        for t in 1..=4 {
            l.record_failure(t, &POLICY);
        }
        // The window began at 1 ms; at 900 001 ms it has passed.
        assert!(!l.record_failure(900_001, &POLICY));
        assert_eq!(l.failures, 1);
    }
}
