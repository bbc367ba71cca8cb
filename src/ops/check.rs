//! The checks every [`Lstm`] call runs before touching a value: each bad
//! argument is an [`Error`] naming it, its length, what its shape needs and
//! the fix, never a panic.

use super::lstm::{LayerWeights, Lstm};
use crate::error::{Error, Result};

/// `Ok` when a slice has the length its shape needs, else [`Error::Shape`].
pub(crate) fn len(
    name: &str,
    got: usize,
    shape: impl FnOnce() -> String,
    want: usize,
) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape {
            name: name.into(),
            shape: shape(),
            got,
            want,
        })
    }
}

/// A count that must be at least 1 (N, In, H, T, B).
pub(crate) fn positive(name: &'static str, value: usize, what: &str) -> Result<()> {
    if value == 0 {
        return Err(Error::InvalidArgument {
            name,
            what: format!("0 {what}; an LSTM call needs at least 1"),
        });
    }
    Ok(())
}

/// `Ok` when the product of `factors` fits a `usize`, so that no length
/// computed from them overflows; else an error saying `what`.
fn product_fits(
    name: &'static str,
    factors: &[usize],
    what: impl FnOnce() -> String,
) -> Result<()> {
    match factors.iter().try_fold(1usize, |p, &f| p.checked_mul(f)) {
        Some(_) => Ok(()),
        None => Err(Error::InvalidArgument { name, what: what() }),
    }
}

/// N, In, H whose weights' lengths (In·4H, H·4H, N of them) are sizes.
pub(crate) fn sizes(layers: usize, input: usize, hidden: usize) -> Result<()> {
    product_fits(
        "lstm.hidden",
        &[layers, 4, hidden, input.max(hidden)],
        || {
            format!(
                "N = {layers} layers of H = {hidden} units over In = {input} inputs have more \
             weights than the address space holds; use smaller sizes"
            )
        },
    )
}

/// T·B·W for every width W the call's buffers have (T + 1 slots of states,
/// 4H gates, In inputs), below `usize::MAX`.
pub(crate) fn fits(lstm: &Lstm, (t, b): (usize, usize)) -> Result<()> {
    let widest = lstm.input().max(4 * lstm.hidden());
    product_fits("x", &[t.saturating_add(1), b, widest], || {
        format!(
            "T = {t} steps of B = {b} rows of up to {widest} values overflow the address \
             space; split the sequence or the batch into smaller calls"
        )
    })
}

/// Every layer's weights against the stack's sizes.
pub(crate) fn weights<F>(lstm: &Lstm, weights: &[LayerWeights<'_, F>]) -> Result<()> {
    if weights.len() != lstm.layers() {
        return Err(Error::InvalidArgument {
            name: "weights",
            what: format!(
                "{} layers' weights for an Lstm of {} layers; pass one LayerWeights per layer, \
                 layer 0 first",
                weights.len(),
                lstm.layers()
            ),
        });
    }
    let (h, g) = (lstm.hidden(), 4 * lstm.hidden());
    for (l, w) in weights.iter().enumerate() {
        let (i, dim) = (lstm.layer_input(l), if l == 0 { "In" } else { "H" });
        let name = |t: &str| format!("weights[{l}].{t}");
        let kernel = || format!("[{dim}, 4H] = [{i}, {g}]");
        len(&name("kernel"), w.kernel.len(), kernel, i * g)?;
        let recurrent = || format!("[H, 4H] = [{h}, {g}]");
        len(
            &name("recurrent_kernel"),
            w.recurrent_kernel.len(),
            recurrent,
            h * g,
        )?;
        len(&name("bias"), w.bias.len(), || format!("[4H] = [{g}]"), g)?;
    }
    Ok(())
}

/// An optional state or state gradient `[N, B, H]`.
pub(crate) fn state<F>(lstm: &Lstm, name: &str, s: Option<&[F]>, batch: usize) -> Result<()> {
    let (n, h) = (lstm.layers(), lstm.hidden());
    match s {
        None => Ok(()),
        Some(s) => len(
            name,
            s.len(),
            || format!("[N, B, H] = [{n}, {batch}, {h}]"),
            n * batch * h,
        ),
    }
}

/// Class indices `[T, B]`, each below In.
pub(crate) fn classes(lstm: &Lstm, c: &[u32], (t, b): (usize, usize)) -> Result<()> {
    len("x", c.len(), || format!("[T, B] = [{t}, {b}]"), t * b)?;
    let i = lstm.input();
    match c.iter().position(|&v| v as usize >= i) {
        None => Ok(()),
        Some(k) => Err(Error::InvalidArgument {
            name: "x",
            what: format!(
                "class {} at t = {}, b = {} is not below {}",
                c[k],
                k / b,
                k % b,
                class_limit(i)
            ),
        }),
    }
}

/// What a class index must stay below, and the fix: the end of the error
/// for a bad index, on the host or (`gpu::op`) found on the device.
pub(crate) fn class_limit(inputs: usize) -> String {
    format!(
        "In = {inputs}, the number of classes the Lstm was made for; pass indices in \
         0..{inputs} or make the Lstm with a larger input"
    )
}
