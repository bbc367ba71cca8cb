//! Linking: a kernel's body and every `.func` it calls (transitively) decoded
//! into one instruction stream. Each function gets its own register slots and
//! its own per-thread local-memory slots for its parameters, return values and
//! `.local` variables (a static frame: recursion is refused when it happens);
//! the `.param` variables of a call sequence, scoped by `{ }`, become local
//! slots of the caller that `call` copies into the callee's parameter slots.

use std::collections::HashMap;

use super::PResult;
use super::decl::{ModShared, Unit, align_up, parse_var};
use super::lex::{split_operands, statements};
use super::operands::Ctx;
use super::types::*;

/// Directives pass 1 passes over: the launch bounds are read before the
/// body (decl.rs); a `.param` here is a call sequence's, declared in pass 2.
const IGNORED: [&str; 7] = [
    ".pragma",
    ".maxntid",
    ".reqntid",
    ".minnctapersm",
    ".param",
    ".explicitcluster",
    ".reqnctapercluster",
];

/// A symbol declared in a `{ }` scope and what it hid, restored at `}`.
type Shadowed = (String, Option<(Space, i64)>);

struct Linker<'a> {
    sources: &'a HashMap<&'a str, &'a Unit>,
    shared: &'a ModShared,
    insts: Vec<Inst>,
    nregs: usize,
    local_bytes: u32,
    static_shared: u32,
    funcs: Vec<Func>,
    /// Function name -> (index into `funcs`, parameter count, return count).
    func_ix: HashMap<String, (u16, usize, usize)>,
}

/// The callee named by a `call` statement, if `s` is one.
fn callee(s: &str) -> Option<String> {
    let s = match s.strip_prefix('@') {
        Some(r) => r.split_once(char::is_whitespace)?.1.trim(),
        None => s,
    };
    let (opcode, rest) = s.split_once(char::is_whitespace)?;
    if opcode.split('.').next() != Some("call") {
        return None;
    }
    let ops = split_operands(rest);
    let i = usize::from(ops.first()?.starts_with('('));
    ops.get(i).cloned()
}

impl Linker<'_> {
    fn local(&mut self, bytes: u32, align: u32) -> u32 {
        let off = align_up(self.local_bytes, align);
        self.local_bytes = off + bytes;
        off
    }

    fn func_ref(&mut self, name: &str) -> PResult<(u16, usize, usize)> {
        if let Some(v) = self.func_ix.get(name) {
            return Ok(*v);
        }
        let u = *self.sources.get(name).ok_or_else(|| {
            format!("call of {name:?}, which has no `.func` definition in the module (indirect calls are not supported)")
        })?;
        let params = u
            .params
            .iter()
            .map(|p| (self.local(p.size, p.align), p.size))
            .collect();
        let rets = u
            .rets
            .iter()
            .map(|p| (self.local(p.size, p.align), p.size))
            .collect();
        let v = (self.funcs.len() as u16, u.params.len(), u.rets.len());
        self.funcs.push(Func {
            name: name.to_string(),
            entry: 0,
            params,
            rets,
        });
        self.func_ix.insert(name.to_string(), v);
        Ok(v)
    }

    /// Appends the instructions of a kernel (`func` None) or of function `func`.
    fn unit(&mut self, u: &Unit, func: Option<u16>) -> PResult<()> {
        let mut cx = Ctx::new(self.nregs, func.is_some());
        match func {
            Some(f) => {
                let f = &mut self.funcs[f as usize];
                f.entry = self.insts.len() as u32;
                for (p, (off, _)) in u.params.iter().zip(&f.params) {
                    cx.syms.insert(p.name.clone(), (Space::Local, *off as i64));
                }
                for (p, (off, _)) in u.rets.iter().zip(&f.rets) {
                    cx.syms.insert(p.name.clone(), (Space::Local, *off as i64));
                }
            }
            None => {
                for p in &u.params {
                    cx.syms
                        .insert(p.name.clone(), (Space::Param, p.offset as i64));
                }
            }
        }
        for (n, off) in &self.shared.vars {
            cx.syms.insert(n.clone(), (Space::Shared, *off as i64));
        }
        let stmts = statements(&u.body)?;
        let base = self.insts.len() as u32;
        // Pass 1: labels -> instruction indices, registers, variables, callees.
        let mut n_inst = 0u32;
        let mut shared_bytes = self.shared.bytes;
        for (ln, s) in &stmts {
            if let Some(l) = s.strip_suffix(':') {
                cx.labels.insert(l.to_string(), base + n_inst);
            } else if let Some(d) = s.strip_prefix(".reg") {
                let toks: Vec<&str> = d.split_whitespace().collect();
                for names in toks
                    .iter()
                    .skip(1)
                    .flat_map(|t| t.split(','))
                    .filter(|t| !t.is_empty())
                {
                    if let Some((base, n)) = names.split_once('<') {
                        let n: u32 = n
                            .trim_end_matches('>')
                            .parse()
                            .map_err(|_| format!("line {ln}: bad register range {names:?}"))?;
                        for k in 0..n {
                            cx.add_reg(format!("{base}{k}"));
                        }
                    } else {
                        cx.add_reg(names.to_string());
                    }
                }
            } else if s.starts_with(".shared") {
                if func.is_some() {
                    return Err(format!(
                        "line {ln}: `.shared` variables inside a `.func` are not supported"
                    ));
                }
                let (n, bytes, align) = parse_var(s).map_err(|e| format!("line {ln}: {e}"))?;
                let off = align_up(shared_bytes, align);
                cx.syms.insert(n, (Space::Shared, off as i64));
                shared_bytes = off + bytes;
            } else if s.starts_with(".local") {
                let (n, bytes, align) = parse_var(s).map_err(|e| format!("line {ln}: {e}"))?;
                let off = self.local(bytes, align);
                cx.syms.insert(n, (Space::Local, off as i64));
            } else if IGNORED.iter().any(|d| s.starts_with(d)) || s == "{" || s == "}" {
            } else if s.starts_with('.') {
                return Err(format!("line {ln}: unsupported directive {s:?}"));
            } else {
                if let Some(name) = callee(s) {
                    let v = self
                        .func_ref(&name)
                        .map_err(|e| format!("line {ln}: {e}"))?;
                    cx.funcs.insert(name, v);
                }
                n_inst += 1;
            }
        }
        if func.is_none() {
            self.static_shared = align_up(shared_bytes, 16);
        }
        if let Some(d) = &self.shared.dynamic {
            cx.syms
                .insert(d.clone(), (Space::Shared, self.static_shared as i64));
        }
        // Pass 2: scoped call-sequence parameters, instructions.
        let mut scopes: Vec<Vec<Shadowed>> = Vec::new();
        for (ln, s) in &stmts {
            if s == "{" {
                scopes.push(Vec::new());
            } else if s == "}" {
                let scope = scopes
                    .pop()
                    .ok_or_else(|| format!("line {ln}: `}}` without `{{`"))?;
                for (n, old) in scope.into_iter().rev() {
                    match old {
                        Some(v) => cx.syms.insert(n, v),
                        None => cx.syms.remove(&n),
                    };
                }
            } else if s.starts_with(".param") {
                let (n, bytes, align) = parse_var(s).map_err(|e| format!("line {ln}: {e}"))?;
                let off = self.local(bytes, align);
                let old = cx.syms.insert(n.clone(), (Space::Local, off as i64));
                if let Some(scope) = scopes.last_mut() {
                    scope.push((n, old));
                }
            } else if !s.ends_with(':') && !s.starts_with('.') {
                let (pred, op) = cx
                    .parse_inst(s)
                    .map_err(|e| format!("line {ln}: {e} (in `{s}`)"))?;
                self.insts.push(Inst {
                    pred,
                    op,
                    line: *ln,
                });
            }
        }
        self.insts.push(Inst {
            pred: None,
            op: if func.is_some() { Op::Ret } else { Op::Exit },
            line: u.body.last().map(|b| b.0).unwrap_or(0),
        });
        self.nregs = cx.next_reg;
        Ok(())
    }
}

/// Decodes kernel `u` and the functions it calls into one [`Kernel`].
pub(super) fn link_kernel(
    u: &Unit,
    sources: &HashMap<&str, &Unit>,
    shared: &ModShared,
) -> PResult<Kernel> {
    let mut l = Linker {
        sources,
        shared,
        insts: Vec::new(),
        nregs: 0,
        local_bytes: 0,
        static_shared: 0,
        funcs: Vec::new(),
        func_ix: HashMap::new(),
    };
    l.unit(u, None)?;
    let mut done = 0;
    while done < l.funcs.len() {
        let src = sources[l.funcs[done].name.as_str()];
        l.unit(src, Some(done as u16))?;
        done += 1;
    }
    Ok(Kernel {
        params: u.params.clone(),
        param_bytes: u.param_bytes,
        insts: l.insts,
        nregs: l.nregs,
        static_shared: l.static_shared,
        local_bytes: l.local_bytes,
        funcs: l.funcs,
        maxntid: u.bounds.maxntid.map(|d| d.iter().product()),
        reqntid: u.bounds.reqntid,
        cluster: u.bounds.cluster,
    })
}
