//! The gateways' traffic counters as the control protocol carries them (`ServiceTraffic` in
//! control.proto): the open-time buckets both ends agree on, and quantiles over them.

/// Upper bounds (ms) of the open-time buckets; one more bucket holds everything above.
pub const OPEN_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// The open time (ms) below which `q` (0..=1) of the counted opens fall, from bucket counts: the
/// upper bound of the bucket holding that rank (the last bucket reports the last bound).
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(OPEN_BUCKETS_MS.get(i).copied().unwrap_or(OPEN_BUCKETS_MS[OPEN_BUCKETS_MS.len() - 1]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut b = [0u64; 11];
        b[2] = 50;
        b[6] = 50;
        assert_eq!(quantile_ms(&b, 0.5), Some(5));
        assert_eq!(quantile_ms(&b, 0.99), Some(100));
        b[10] = 1000;
        assert_eq!(quantile_ms(&b, 0.99), Some(1000), "past the last bound");
        assert_eq!(quantile_ms(&[0; 11], 0.99), None);
    }
}
