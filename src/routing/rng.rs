//! The seeded generator behind every random draw of a training run (epoch orders, pair
//! choices, bootstrap resamples).
//!
//! Why not `rand`'s `SliceRandom::shuffle` and `gen_range`: their algorithms are not part of
//! `rand`'s stability promise and have changed between releases, which would change every
//! training run's draws (and break `--resume`, which replays them) on a dependency update.
//! A fixed generator (xoshiro256++) with a Fisher–Yates written here draws the same sequence
//! for a seed forever.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};

/// The seeded generator every random choice of a run draws from.
pub type Rng = Xoshiro256PlusPlus;

pub fn rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// A uniform index below `n` (n > 0), without modulo bias.
pub fn below(rng: &mut Rng, n: usize) -> usize {
    let n = n as u64;
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return (x % n) as usize;
        }
    }
}

/// Fisher–Yates.
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(rng, i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_fixed_by_the_seed() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut rng(3));
        shuffle(&mut b, &mut rng(3));
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
    }
}
