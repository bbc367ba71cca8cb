//! `call` and `ret` for `.func`s: a per-thread stack of (call site, function);
//! arguments and return values are copied between the caller's call-sequence
//! slots and the callee's parameter slots in the thread's local memory, with
//! their initialised-ness, so an unset argument is still caught when read.

use super::Launch;
use super::parse::Op;
use crate::error::Result;

impl<'k> Launch<'k> {
    /// Copies `n` bytes (data and initialised flags) within thread `t`'s local memory.
    fn copy_local(&mut self, t: usize, from: u32, to: u32, n: u32) {
        let r = &mut self.local[t];
        let (f, o, n) = (from as usize, to as usize, n as usize);
        r.data.copy_within(f..f + n, o);
        r.init.copy_within(f..f + n, o);
    }

    /// Enters function `func` from the call at `pc`; returns the callee's entry.
    #[inline(never)]
    pub(super) fn call(&mut self, t: usize, pc: u32, func: u16, args: &[u32]) -> Result<u32> {
        let f = &self.k.funcs[func as usize];
        if self.frames[t].iter().any(|&(_, g)| g == func) {
            return Err(self.fail(
                t,
                format!("recursive call of `{}` is not supported", f.name),
            ));
        }
        for (&from, &(to, n)) in args.iter().zip(&f.params) {
            self.copy_local(t, from, to, n);
        }
        self.frames[t].push((pc, func));
        Ok(f.entry)
    }

    /// Leaves the current function; returns the instruction after its call.
    #[inline(never)]
    pub(super) fn ret(&mut self, t: usize) -> Result<u32> {
        let Some((pc, func)) = self.frames[t].pop() else {
            return Err(self.fail(t, "`ret` with no call to return from".into()));
        };
        let k = self.k;
        let Op::Call { rets, .. } = &k.insts[pc as usize].op else {
            unreachable!("a frame's call site is a call")
        };
        for (&to, &(from, n)) in rets.iter().zip(&k.funcs[func as usize].rets) {
            self.copy_local(t, from, to, n);
        }
        Ok(pc + 1)
    }
}
