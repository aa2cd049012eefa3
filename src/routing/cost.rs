//! The routing-time cost penalty's sweep: the λ at which a router's choices change, and the
//! grid of λ a cost–quality curve or a calibration is computed on (`docs/method.md`, "Costs").

/// The λ at which each query's choice changes as the penalty grows from 0: for each query, the
/// breakpoints of the upper envelope of the lines `s_t − λ c_t` (its choice moves to cheaper and
/// cheaper LLMs until the cheapest).
///
/// `costs_of(i)` gives query i's cost per LLM: a router charges every query its expected costs,
/// the oracle each query's own.
fn breakpoints<'a>(scores: &[Vec<f64>], costs_of: impl Fn(usize) -> &'a [f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for (index, row) in scores.iter().enumerate() {
        let costs = costs_of(index);
        let (mut lambda, mut choice) = (0.0f64, super::first_argmax(row));
        loop {
            // The next LLM, cheaper than the current choice, whose line overtakes it first.
            let next = (0..costs.len())
                .filter(|&t| costs[t] < costs[choice])
                .map(|t| ((row[choice] - row[t]) / (costs[choice] - costs[t]), t))
                .filter(|(at, _)| at.is_finite())
                .min_by(|a, b| a.0.total_cmp(&b.0).then(costs[a.1].total_cmp(&costs[b.1])));
            let Some((at, t)) = next else { break };
            lambda = lambda.max(at);
            out.push(lambda);
            choice = t;
        }
    }
    out
}

/// The λ grid of a router's cost sweep on one table, chosen from the data: 0 (cost ignored),
/// then λ just past evenly spaced quantiles (48 of them) of the values at which some query's
/// choice changes ([`breakpoints`]), and just past the largest, where every query goes to the
/// LLM with the least expected cost. Just `[0]` when no choice ever changes.
pub fn lambda_grid(scores: &[Vec<f64>], costs: &[f64]) -> Vec<f64> {
    lambda_grid_of(scores, costs, 48)
}

/// [`lambda_grid`] with `steps` quantiles (calibration takes a finer grid than the figure).
pub fn lambda_grid_of(scores: &[Vec<f64>], costs: &[f64], steps: usize) -> Vec<f64> {
    grid_of(breakpoints(scores, |_| costs), steps)
}

/// [`lambda_grid`] for scores charged each query's own `costs[i]` (the oracle's curve).
pub fn lambda_grid_per_query(scores: &[Vec<f64>], costs: &[&[f64]]) -> Vec<f64> {
    grid_of(breakpoints(scores, |i| costs[i]), 48)
}

/// 0, `steps` quantiles of `changes` (each taken just past), and just past the largest.
fn grid_of(changes: Vec<f64>, steps: usize) -> Vec<f64> {
    let mut changes: Vec<f64> = changes.into_iter().filter(|l| *l > 0.0).collect();
    changes.sort_by(f64::total_cmp);
    let mut grid = vec![0.0];
    let Some(&last) = changes.last() else { return grid };
    let steps = steps.max(1);
    for i in 1..=steps {
        let at = changes[((i as f64 / steps as f64) * (changes.len() - 1) as f64).round() as usize];
        grid.push(at * (1.0 + 1e-9));
    }
    grid.push(last * 1.01);
    grid.dedup();
    grid
}
