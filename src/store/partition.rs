//! Partitions (DESIGN invariant 7): every key of one number — account, holds,
//! blocks, lockout — and that partition's event stream share one partition,
//! so that each atomic step touches one Redis Cluster slot. Prepaid codes are
//! partitioned by their id, call ids (for the call index) by themselves.
//!
//! The function is FNV-1a (64 bit) of the key's bytes modulo the partition
//! count: stable across versions, languages and machines. The partition count
//! is fixed per deployment; changing it moves every key.

/// The partition of `key` among `partitions`.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: changing these moves every key of a running deployment.
        assert_eq!(
            partition_of("+46701234567", 16),
            partition_of("+46701234567", 16)
        );
        assert_eq!(partition_of("", 16), (0xcbf2_9ce4_8422_2325u64 % 16) as u32);
        assert_eq!(
            partition_of("a", 1000),
            (0xaf63_dc4c_8601_ec8cu64 % 1000) as u32
        );
    }

    #[test]
    fn spreads_numbers() {
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[partition_of(&format!("+4670{:07}", i), 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
    }
}
