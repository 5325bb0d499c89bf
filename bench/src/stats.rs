//! Summaries of per-player samples (min / median / percentiles / max).

/// Order statistics of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample (0 when empty).
    pub min: f64,
    /// Median, nearest-rank (0 when empty).
    pub median: f64,
    /// 99th percentile, nearest-rank (0 when empty).
    pub p99: f64,
    /// Largest sample (0 when empty).
    pub max: f64,
    /// Arithmetic mean (0 when empty).
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples` (NaNs are ignored).
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = samples.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let sum: f64 = v.iter().sum();
        Summary {
            count: v.len(),
            min: v.first().copied().unwrap_or_default(),
            median: percentile_sorted(&v, 50.0),
            p99: percentile_sorted(&v, 99.0),
            max: v.last().copied().unwrap_or_default(),
            mean: sum / v.len() as f64,
        }
    }
}

/// Nearest-rank percentile `p` (0..=100) of an ascending slice; 0 when empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(idx).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let s = Summary::of((1..=100).map(f64::from));
        assert_eq!(s.count, 100);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.median, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert!((s.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn summary_ignores_nan_and_handles_empty() {
        assert_eq!(Summary::of([]), Summary::default());
        let s = Summary::of([f64::NAN, 3.0]);
        assert_eq!((s.count, s.min, s.max), (1, 3.0, 3.0));
    }
}
