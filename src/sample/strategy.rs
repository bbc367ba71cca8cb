//! How the next character is picked from a probability vector.

/// A sampling strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// The notebook's `sample(preds, temperature)`.
    Temperature(f32),
    /// Always the most probable character.
    Greedy,
    /// Every character equally likely (a baseline).
    Uniform,
}

/// The notebook's re-weighting: `log(p) / T`, `exp`, normalise.
pub fn reweight(probs: &[f32], temperature: f32) -> Vec<f64> {
    let _ = (probs, temperature);
    todo!()
}

/// Picks an index from `probs` with `strategy`, using the uniform `u` in [0, 1).
pub fn draw(probs: &[f32], strategy: Strategy, u: f32) -> usize {
    let _ = (probs, strategy, u);
    todo!()
}
