//! The training choices of the two contrastive losses, made in plain Rust so that the model
//! code only does arithmetic on them (`docs/method.md`, "Losses").

use super::rng::{Rng, below};

/// The sample-LLM loss's choices for a batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmChoice {
    /// `[B × top_k]`: the i-th best LLM of each query.
    pub positives: Vec<i64>,
    /// `[B × top_k]`: 1 when that positive scored > 0.
    pub positive_mask: Vec<f32>,
    /// `[B × last_k]`: the lowest-scoring LLMs.
    pub negatives: Vec<i64>,
    /// `[B × last_k]`: true when that negative scored > 0.5 (left out).
    pub negative_excluded: Vec<bool>,
}

/// Rank each query's LLMs by target, best first (ties: lower index first).
pub fn choose_llms(targets: &[&[f64]], top_k: usize, last_k: usize) -> LlmChoice {
    let mut choice =
        LlmChoice { positives: vec![], positive_mask: vec![], negatives: vec![], negative_excluded: vec![] };
    for row in targets {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &p in &order[..top_k] {
            choice.positives.push(p as i64);
            choice.positive_mask.push(if row[p] > 0.0 { 1.0 } else { 0.0 });
        }
        // The last_k lowest, lowest first (ties: lower index first).
        let mut ascending: Vec<usize> = (0..row.len()).collect();
        ascending.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
        for &n in &ascending[..last_k] {
            choice.negatives.push(n as i64);
            choice.negative_excluded.push(row[n] > 0.5);
        }
    }
    choice
}

/// The sample-sample loss's choices for a batch: for each kept anchor, one positive of its
/// group and `h` negatives of other groups. Anchors with fewer than `h` candidates for
/// negatives are skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairChoice {
    pub anchors: Vec<i64>,
    pub positives: Vec<i64>,
    /// `[anchors × h]`.
    pub negatives: Vec<i64>,
}

pub fn choose_pairs(groups: &[i64], h: usize, exclude_self: bool, rng: &mut Rng) -> PairChoice {
    let mut choice = PairChoice::default();
    for (q, &group) in groups.iter().enumerate() {
        let same: Vec<usize> = (0..groups.len()).filter(|&j| groups[j] == group && !(exclude_self && j == q)).collect();
        let mut other: Vec<usize> = (0..groups.len()).filter(|&j| groups[j] != group).collect();
        if other.len() < h || same.is_empty() {
            continue;
        }
        let positive = same[below(rng, same.len())];
        // h draws without replacement: a partial Fisher–Yates.
        for i in 0..h {
            let j = i + below(rng, other.len() - i);
            other.swap(i, j);
        }
        choice.anchors.push(q as i64);
        choice.positives.push(positive as i64);
        choice.negatives.extend(other[..h].iter().map(|&j| j as i64));
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::rng;

    #[test]
    fn llm_choice_orders_by_score_and_excludes_good_negatives() {
        let rows: [&[f64]; 2] = [&[0.2, 0.9, 0.0, 0.6, 0.0], &[0.0, 0.0, 0.0, 0.0, 0.0]];
        let choice = choose_llms(&rows, 2, 2);
        assert_eq!(choice.positives, vec![1, 3, 0, 1]);
        assert_eq!(choice.positive_mask, vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(choice.negatives, vec![2, 4, 0, 1]);
        assert_eq!(choice.negative_excluded, vec![false, false, false, false]);
        let high: [&[f64]; 1] = [&[0.9, 0.8, 0.7]];
        assert_eq!(choose_llms(&high, 1, 2).negative_excluded, vec![true, true]);
    }

    #[test]
    fn pairs_respect_groups_and_skip_anchors_without_enough_negatives() {
        let groups = [0, 0, 1, 1, 2, 0];
        let mut rng = rng(7);
        for _ in 0..50 {
            let choice = choose_pairs(&groups, 3, true, &mut rng);
            for (i, &a) in choice.anchors.iter().enumerate() {
                let a = a as usize;
                let p = choice.positives[i] as usize;
                assert!(groups[p] == groups[a] && p != a);
                let negs = &choice.negatives[i * 3..i * 3 + 3];
                assert!(negs.iter().all(|&n| groups[n as usize] != groups[a]));
                let mut unique = negs.to_vec();
                unique.dedup();
                assert_eq!(unique.len(), 3);
            }
            // Group 0 has 3 others; groups 1 and 2 have 4 and 5 candidates; query 4 has no partner.
            assert!(!choice.anchors.contains(&4));
        }
        let with_self = choose_pairs(&[0, 1, 1, 1], 3, false, &mut rng);
        assert_eq!(with_self.anchors, vec![0], "query 0 is its own positive");
        assert_eq!(with_self.positives, vec![0]);
    }
}
