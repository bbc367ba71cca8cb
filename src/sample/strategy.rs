//! How the next character is picked from a probability vector.
//!
//! The notebook's `sample(preds, temperature)`:
//!
//! ```python
//! preds = np.asarray(preds).astype('float64')
//! preds = np.log(preds) / temperature
//! exp_preds = np.exp(preds)
//! preds = exp_preds / np.sum(exp_preds)
//! probas = np.random.multinomial(1, preds, 1)
//! return np.argmax(probas)
//! ```
//!
//! [`reweight`] is the first four lines, in the same f64 arithmetic. The
//! multinomial draw is replaced by an inverse-CDF walk over one uniform `u`
//! (the same distribution, one random number per character). That makes the
//! draw a pure function of `(probs, strategy, u)`, and `u` is
//! `Philox::uniform_f32(Purpose::Sample, stream, index)`: a counter-based
//! value with 24 random bits that a GPU thread computes from the same
//! `(seed, stream, index)` without any shared RNG state. 24 bits are exact in
//! f32 and f64, so host and device compare the *same* number against the
//! cumulative sum; the cumulative walk is a plain left-to-right f64 sum that a
//! single device thread reproduces in the same order. The only residual
//! difference is the last-ulp accuracy of the device's `log`/`exp`, which can
//! change the index only when `u` lies within ~1e-16 of a cumulative boundary.
//!
//! # Command-line form
//!
//! One comma-separated list names every sequence to generate, e.g.
//! `--temperature 0.2,0.5,1.0,1.2,greedy` (see [`Strategy::parse_list`]):
//! each item is a temperature (`0.5` or `temperature=0.5`), `greedy` or
//! `uniform`. All of them are generated together, as one batch.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The name errors give a temperature (the command line shows its flag).
const FLAG: &str = "temperature";

/// A sampling strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// The notebook's `sample(preds, temperature)`. f64 like the notebook's
    /// Python float: `0.2_f32` is not `0.2`, and the reweighting is in f64.
    /// Must be finite and > 0 (see [`Strategy::validate`]).
    Temperature(f64),
    /// Always the most probable character (the limit T -> 0).
    Greedy,
    /// Every character equally likely (a baseline).
    Uniform,
}

impl Strategy {
    /// The four temperatures the notebook samples after every epoch.
    pub const KERAS: [Strategy; 4] = [
        Strategy::Temperature(0.2),
        Strategy::Temperature(0.5),
        Strategy::Temperature(1.0),
        Strategy::Temperature(1.2),
    ];

    /// A validated temperature strategy.
    pub fn temperature(t: f64) -> Result<Strategy> {
        let s = Strategy::Temperature(t);
        s.validate()?;
        Ok(s)
    }

    /// Checks that a temperature is finite and > 0; the other strategies are
    /// always valid.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Strategy::Temperature(t) if !(t.is_finite() && t > 0.0) => {
                Err(Error::InvalidArgument {
                    name: FLAG,
                    what: format!(
                        "{t} (a temperature must be a finite number > 0; use `greedy` for the T -> 0 limit)"
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// Parses a comma-separated list such as `0.2,0.5,1.0,1.2,greedy`.
    /// Blanks around items are ignored; an empty list or item is an error.
    pub fn parse_list(s: &str) -> Result<Vec<Strategy>> {
        if s.trim().is_empty() {
            return Err(Error::InvalidArgument {
                name: FLAG,
                what: "an empty list (give e.g. `0.2,0.5,1.0,1.2` or `greedy`)".into(),
            });
        }
        s.split(',').map(str::parse).collect()
    }
}

impl FromStr for Strategy {
    type Err = Error;

    /// `greedy`, `uniform`, a temperature `0.5`, or `temperature=0.5`
    /// (case-insensitive words, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Strategy> {
        let item = s.trim();
        let lower = item.to_ascii_lowercase();
        match lower.as_str() {
            "greedy" | "argmax" => return Ok(Strategy::Greedy),
            "uniform" => return Ok(Strategy::Uniform),
            _ => {}
        }
        let number = lower
            .strip_prefix("temperature=")
            .or_else(|| lower.strip_prefix("t="))
            .unwrap_or(&lower)
            .trim();
        match number.parse::<f64>() {
            Ok(t) => Strategy::temperature(t),
            Err(_) => Err(Error::InvalidArgument {
                name: FLAG,
                what: format!(
                    "{item:?} (expected a temperature such as `0.5`, `greedy` or `uniform`)"
                ),
            }),
        }
    }
}

impl fmt::Display for Strategy {
    /// The form [`FromStr`] reads back: `temperature=0.5`, `greedy`, `uniform`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Temperature(t) => write!(f, "temperature={t}"),
            Strategy::Greedy => f.write_str("greedy"),
            Strategy::Uniform => f.write_str("uniform"),
        }
    }
}

/// The notebook's re-weighting, in f64: `w_i = exp(log(p_i) / T)`, then
/// `w / sum(w)`.
///
/// A probability of 0 gets weight 0, as `log(0) = -inf` does in numpy;
/// negative and non-finite entries are treated as 0 too (never produced by a
/// softmax; the generator rejects them before they get here).
///
/// Two cases where the notebook's formula breaks down get its mathematical
/// limit instead of NaN: if every `exp` underflows (a tiny T, say 0.001), the
/// weights are computed as `exp((log p_i - log p_max) / T)`, which is the same
/// distribution shifted by a constant; and a temperature that is not finite
/// and > 0 (which [`Strategy::validate`] rejects) gives the T -> 0 limit, all
/// weight on the first maximum. With no positive entry at all the result is
/// all zeros.
pub fn reweight(probs: &[f32], temperature: f64) -> Vec<f64> {
    let log_p: Vec<f64> = probs
        .iter()
        .map(|&p| {
            if p > 0.0 && p.is_finite() {
                f64::from(p).ln()
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    if !(temperature.is_finite() && temperature > 0.0) {
        let mut w = vec![0.0; probs.len()];
        if let Some(i) = argmax(probs) {
            w[i] = 1.0;
        }
        return w;
    }
    // Exactly the notebook's arithmetic first.
    let mut w: Vec<f64> = log_p.iter().map(|&l| (l / temperature).exp()).collect();
    let mut sum: f64 = w.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        // Every weight underflowed (or there is no positive probability).
        let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            return vec![0.0; probs.len()];
        }
        w = log_p
            .iter()
            .map(|&l| ((l - max) / temperature).exp())
            .collect();
        sum = w.iter().sum();
    }
    for x in &mut w {
        *x /= sum;
    }
    w
}

/// Picks an index from `probs` with `strategy`, using the uniform `u` in [0, 1).
///
/// - `Temperature(T)`: [`reweight`], then the first index whose cumulative
///   weight (summed left to right in f64) exceeds `u`. An index of zero weight
///   is never returned: if rounding leaves `u` at or beyond the total, the last
///   index with non-zero weight is.
/// - `Greedy`: the index of the largest probability (the first on ties); `u`
///   is unused.
/// - `Uniform`: `floor(u * V)`, clamped to `V - 1`.
///
/// `probs` should hold V >= 1 finite, non-negative values with at least one
/// positive (the generator checks this). Degenerate input never panics: it
/// returns 0.
pub fn draw(probs: &[f32], strategy: Strategy, u: f32) -> usize {
    match strategy {
        Strategy::Greedy => argmax(probs).unwrap_or(0),
        Strategy::Uniform => {
            let v = probs.len();
            // u has 24 bits and V is small: the product is exact in f64.
            let i = (f64::from(u) * v as f64).floor();
            if i > 0.0 {
                (i as usize).min(v.saturating_sub(1))
            } else {
                0
            }
        }
        Strategy::Temperature(t) => inverse_cdf(&reweight(probs, t), u),
    }
}

/// First index whose running sum exceeds `u`; never an index of zero weight.
fn inverse_cdf(weights: &[f64], u: f32) -> usize {
    let u = f64::from(u);
    let mut acc = 0.0;
    let mut last_positive = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w;
            last_positive = Some(i);
            // A zero weight leaves `acc` unchanged, so it can never be the
            // first index where `u < acc` holds; the `w > 0` guard says so.
            if u < acc {
                return i;
            }
        }
    }
    last_positive.unwrap_or(0)
}

/// Index of the first largest finite value, if any.
fn argmax(probs: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &p) in probs.iter().enumerate() {
        if p.is_nan() {
            continue;
        }
        if best.is_none_or(|b| p > probs[b]) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!("greedy".parse::<Strategy>().unwrap(), Strategy::Greedy);
        assert_eq!(" Uniform ".parse::<Strategy>().unwrap(), Strategy::Uniform);
        assert_eq!(
            "0.5".parse::<Strategy>().unwrap(),
            Strategy::Temperature(0.5)
        );
        assert_eq!(
            "temperature=1.2".parse::<Strategy>().unwrap(),
            Strategy::Temperature(1.2)
        );
        assert_eq!(
            Strategy::parse_list("0.2, 0.5,1.0,1.2").unwrap(),
            Strategy::KERAS.to_vec()
        );
        for s in Strategy::KERAS
            .iter()
            .chain(&[Strategy::Greedy, Strategy::Uniform])
        {
            assert_eq!(s.to_string().parse::<Strategy>().unwrap(), *s);
        }
    }

    #[test]
    fn bad_temperatures_name_the_flag() {
        for bad in ["0", "-1", "nan", "inf", "hot", "", "0.5,,1", "temperature="] {
            let e = Strategy::parse_list(bad).unwrap_err();
            match e {
                Error::InvalidArgument { name, .. } => assert_eq!(name, "temperature", "{bad:?}"),
                other => panic!("{bad:?}: {other}"),
            }
        }
        assert!(Strategy::Temperature(f64::NAN).validate().is_err());
        assert!(Strategy::Greedy.validate().is_ok());
    }

    #[test]
    fn degenerate_input_does_not_panic() {
        assert_eq!(draw(&[], Strategy::Temperature(1.0), 0.5), 0);
        assert_eq!(draw(&[], Strategy::Greedy, 0.5), 0);
        assert_eq!(draw(&[], Strategy::Uniform, 0.5), 0);
        assert_eq!(draw(&[0.0, 0.0], Strategy::Temperature(1.0), 0.5), 0);
        assert_eq!(draw(&[f32::NAN, 1.0], Strategy::Greedy, 0.5), 1);
        // Tiny temperature: the limit, not NaN.
        assert_eq!(reweight(&[0.001, 0.002, 0.001], 1e-6), vec![0.0, 1.0, 0.0]);
        assert_eq!(reweight(&[0.3, 0.7], 0.0), vec![0.0, 1.0]);
    }

    #[test]
    fn rounding_past_the_total_returns_last_positive() {
        // Weights that sum to less than u: the last positive index, not the zero one.
        assert_eq!(inverse_cdf(&[0.25, 0.25, 0.0], 0.75), 1);
        assert_eq!(inverse_cdf(&[0.0, 0.5, 0.5], 0.0), 1);
    }
}
