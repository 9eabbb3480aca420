//! Recipient choice: uniform, or Zipf-skewed so a few accounts are hot (a merchant,
//! a popular friend) and the engine's one-writer-per-account design is tested where
//! it hurts. Rank `k` (0-based) is drawn with probability proportional to
//! `1 / (k + 1)^s`; `s = 0` is uniform, `s = 1` is classic Zipf.
//!
//! The sampler precomputes the cumulative weights once (one `f64` per account, so
//! a million accounts cost 8 MB) and draws by binary search: exact for any `s`,
//! `O(log n)` per draw, and deterministic for a seeded RNG, which keeps a run
//! reproducible from its `--seed`.

use rand::Rng;

/// Draws ranks in `0..n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// `cumulative[k]` = sum of the weights of ranks `0..=k`. Empty when uniform.
    cumulative: Vec<f64>,
    n: usize,
}

impl Zipf {
    /// A sampler over `n >= 1` ranks with exponent `s >= 0` (finite).
    pub fn new(n: usize, s: f64) -> anyhow::Result<Zipf> {
        anyhow::ensure!(n >= 1, "the Zipf sampler needs at least one rank");
        anyhow::ensure!(
            s.is_finite() && s >= 0.0,
            "--zipf must be a finite number >= 0, got {s}"
        );
        if s == 0.0 {
            return Ok(Zipf {
                cumulative: Vec::new(),
                n,
            });
        }
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect();
        Ok(Zipf { cumulative, n })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// One rank in `0..n`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let Some(&total) = self.cumulative.last() else {
            return rng.gen_range(0..self.n);
        };
        let u = rng.gen::<f64>() * total;
        // The first rank whose cumulative weight exceeds u; clamped because
        // floating-point rounding could in principle put u at `total`.
        self.cumulative.partition_point(|&c| c <= u).min(self.n - 1)
    }

    /// The exact probability of rank `k` (for tests and the summary).
    pub fn probability(&self, k: usize) -> f64 {
        match self.cumulative.last() {
            None => 1.0 / self.n as f64,
            Some(&total) => {
                let below = if k == 0 { 0.0 } else { self.cumulative[k - 1] };
                (self.cumulative[k] - below) / total
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn histogram(z: &Zipf, draws: usize, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0; z.len()];
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn zipf_one_matches_the_harmonic_weights() {
        let n = 100;
        let z = Zipf::new(n, 1.0).unwrap();
        let draws = 200_000;
        let counts = histogram(&z, draws, 7);
        // H(100) ≈ 5.187: rank 0 gets ~19.3 %, rank 1 ~9.6 %, rank 9 ~1.9 %.
        for k in [0, 1, 2, 9, 49] {
            let expected = z.probability(k) * draws as f64;
            let got = counts[k] as f64;
            let tolerance = 5.0 * expected.sqrt() + 1.0;
            assert!(
                (got - expected).abs() < tolerance,
                "rank {k}: got {got}, expected {expected:.0}"
            );
        }
        assert!((z.probability(0) - 1.0 / 5.187_377_517_639_621).abs() < 1e-9);
        // Rank 0 is about twice as popular as rank 1.
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn zero_exponent_is_uniform() {
        let z = Zipf::new(10, 0.0).unwrap();
        let counts = histogram(&z, 100_000, 3);
        for (k, &c) in counts.iter().enumerate() {
            assert!((9_000..11_000).contains(&c), "rank {k}: {c}");
            assert!((z.probability(k) - 0.1).abs() < 1e-12);
        }
    }

    #[test]
    fn every_draw_is_in_range_and_seeds_reproduce() {
        let z = Zipf::new(3, 2.5).unwrap();
        let a = histogram(&z, 10_000, 11);
        assert_eq!(a.iter().sum::<usize>(), 10_000);
        assert_eq!(a, histogram(&z, 10_000, 11));
        let one = Zipf::new(1, 1.0).unwrap();
        assert_eq!(histogram(&one, 100, 1), vec![100]);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, -1.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
    }
}
