//! Instruction decoding: opcode, modifiers and operands -> [`Op`]; an
//! unknown or unsupported form is an error naming it.

use super::PResult;
use super::lex::split_operands;
use super::operands::Ctx;
use super::types::*;

impl Ctx {
    pub(super) fn parse_inst(&self, s: &str) -> PResult<(Option<(u16, bool)>, Op)> {
        let mut s = s.trim();
        let mut pred = None;
        if let Some(rest) = s.strip_prefix('@') {
            let (p, r) = rest
                .split_once(char::is_whitespace)
                .ok_or("predicate without instruction")?;
            let (neg, p) = match p.strip_prefix('!') {
                Some(q) => (true, q),
                None => (false, p),
            };
            pred = Some((self.reg(p)?, neg));
            s = r.trim();
        }
        let (opcode, rest) = match s.split_once(char::is_whitespace) {
            Some((o, r)) => (o, r.trim()),
            None => (s, ""),
        };
        let parts: Vec<&str> = opcode.split('.').collect();
        let mods = &parts[1..];
        let has = |m: &str| mods.contains(&m);
        let ty = mods
            .iter()
            .rev()
            .find_map(|m| Ty::from_ptx(m))
            .unwrap_or(Ty::B32);
        let ops = split_operands(rest);
        let need = |n: usize| -> PResult<()> {
            if ops.len() < n {
                Err(format!("`{opcode}` needs {n} operands, got {}", ops.len()))
            } else {
                Ok(())
            }
        };
        let fm = FMod {
            rnd: Rnd::named_in(mods).unwrap_or(Rnd::Rn),
            ftz: has("ftz"),
            sat: has("sat"),
            relu: has("relu"),
        };
        let unknown = || format!("unsupported instruction `{opcode}`");
        let op = match parts[0] {
            "mov" => {
                need(2)?;
                if ops[0].starts_with('{') {
                    Op::Unpack {
                        ds: self.vec_regs(&ops[0])?,
                        a: self.src(&ops[1], ty)?,
                        part_bits: ty.bytes() * 8 / ops[0].split(',').count() as u32,
                    }
                } else if ops[1].starts_with('{') {
                    let parts = self.vec_srcs(&ops[1], ty)?;
                    Op::Pack {
                        d: self.dst(&ops[0])?,
                        part_bits: ty.bytes() * 8 / parts.len() as u32,
                        parts,
                    }
                } else {
                    Op::Mov {
                        d: self.dst(&ops[0])?,
                        a: self.src(&ops[1], ty)?,
                    }
                }
            }
            name if let Some(op) = Bin::from_ptx(name) => {
                need(3)?;
                let op = match (op, has("hi"), has("wide")) {
                    (Bin::MulLo, true, _) => Bin::MulHi,
                    (Bin::MulLo, _, true) => Bin::MulWide,
                    _ => op,
                };
                if has("cc") || has("sat") && !ty.is_float() || has("NaN") || has("xorsign") {
                    return Err(unknown());
                }
                let sty = if matches!(op, Bin::Shl | Bin::Shr) {
                    Ty::U32
                } else {
                    ty
                };
                Op::Bin {
                    op,
                    ty,
                    m: fm,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                    b: self.src(&ops[2], sty)?,
                }
            }
            name if let Some(op) = Un::from_ptx(name) => {
                need(2)?;
                let op = match (op, has("approx")) {
                    (Un::Sqrt, true) => Un::SqrtApprox,
                    (Un::Rcp, true) => Un::RcpApprox,
                    _ => op,
                };
                Op::Un {
                    op,
                    ty,
                    m: fm,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                }
            }
            "mad" | "fma" => {
                need(4)?;
                let (d, a, b, c) = (
                    self.dst(&ops[0])?,
                    self.src(&ops[1], ty)?,
                    self.src(&ops[2], ty)?,
                    self.src(&ops[3], ty)?,
                );
                if ty.is_float() {
                    Op::Fma {
                        ty,
                        m: fm,
                        d,
                        a,
                        b,
                        c,
                    }
                } else {
                    let wide = has("wide");
                    let cty = if wide {
                        if ty.signed() { Ty::S64 } else { Ty::U64 }
                    } else {
                        ty
                    };
                    Op::Mad {
                        ty,
                        hi: has("hi"),
                        wide,
                        d,
                        a,
                        b,
                        c: self.src(&ops[3], cty)?,
                    }
                }
            }
            "setp" => {
                need(3)?;
                let cmp = Cmp::from_ptx(mods[0]).ok_or_else(unknown)?;
                if mods.len() > 2 && !(mods.len() == 3 && has("ftz"))
                    || ops.len() != 3
                    || ops[0].contains('|')
                {
                    return Err(format!("unsupported form of `{opcode}` (combining setp)"));
                }
                Op::Setp {
                    cmp,
                    ty,
                    ftz: has("ftz"),
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                    b: self.src(&ops[2], ty)?,
                }
            }
            "selp" => {
                need(4)?;
                Op::Selp {
                    ty,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                    b: self.src(&ops[2], ty)?,
                    p: self.src(&ops[3], Ty::Pred)?,
                }
            }
            "cvt" => {
                need(2)?;
                let tys: Vec<Ty> = mods.iter().filter_map(|m| Ty::from_ptx(m)).collect();
                if tys.len() != 2 {
                    return Err(unknown());
                }
                // The first integer (`.rni`) and float (`.rn`) rounding written.
                let irnd = mods
                    .iter()
                    .find_map(|m| m.strip_suffix('i').and_then(Rnd::from_ptx));
                let frnd = mods.iter().find_map(|m| Rnd::from_ptx(m));
                Op::Cvt {
                    dty: tys[0],
                    sty: tys[1],
                    irnd,
                    rnd: frnd,
                    ftz: has("ftz"),
                    sat: has("sat"),
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], tys[1])?,
                }
            }
            "cvta" => {
                need(2)?;
                let space = match Space::named_in(mods) {
                    Some(Space::SharedCta) => Space::Shared,
                    Some(s @ (Space::Global | Space::Shared | Space::Local)) => s,
                    _ => return Err(unknown()),
                };
                Op::Cvta {
                    to: has("to"),
                    space,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                }
            }
            "bfe" => {
                need(4)?;
                Op::Bfe {
                    ty,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                    b: self.src(&ops[2], Ty::U32)?,
                    c: self.src(&ops[3], Ty::U32)?,
                }
            }
            "bfi" => {
                need(5)?;
                Op::Bfi {
                    ty,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                    b: self.src(&ops[2], ty)?,
                    c: self.src(&ops[3], Ty::U32)?,
                    e: self.src(&ops[4], Ty::U32)?,
                }
            }
            "ld" | "st" => {
                need(2)?;
                if has("v8") {
                    return Err(unknown());
                }
                let (addr_s, other) = if parts[0] == "ld" {
                    (&ops[1], &ops[0])
                } else {
                    (&ops[0], &ops[1])
                };
                let (sym_space, addr) = self.addr(addr_s)?;
                let space = space_of(mods, sym_space);
                if parts[0] == "ld" {
                    Op::Ld {
                        space,
                        ty,
                        d: self.vec_regs(other)?,
                        addr,
                    }
                } else {
                    Op::St {
                        space,
                        ty,
                        s: self.vec_srcs(other, ty)?,
                        addr,
                    }
                }
            }
            "atom" | "red" => {
                let op = mods
                    .iter()
                    .find_map(|m| AtomOp::from_ptx(m))
                    .ok_or_else(unknown)?;
                if has("v2") || has("v4") || has("noftz") && ty != Ty::F32 {
                    return Err(unknown());
                }
                let (d, o) = if parts[0] == "atom" {
                    need(3)?;
                    (Some(self.dst(&ops[0])?), 1)
                } else {
                    need(2)?;
                    (None, 0)
                };
                let (sym_space, addr) = self.addr(&ops[o])?;
                let space = space_of(mods, sym_space);
                let b = self.src(&ops[o + 1], ty)?;
                let c = if op == AtomOp::Cas {
                    self.src(ops.get(o + 2).ok_or("cas needs 3 operands")?, ty)?
                } else {
                    Src::Imm(0)
                };
                Op::Atom {
                    space,
                    op,
                    ty,
                    d,
                    addr,
                    b,
                    c,
                }
            }
            "bra" => {
                need(1)?;
                Op::Bra {
                    target: *self
                        .labels
                        .get(ops[0].as_str())
                        .ok_or_else(|| format!("unknown label {:?}", ops[0]))?,
                }
            }
            "barrier" if has("cluster") => {
                // A `.relaxed` arrive orders no memory, which the race
                // check's model of the barrier (sched.rs) assumes it does.
                if !ops.is_empty() || has("relaxed") {
                    return Err(unknown());
                }
                match (has("arrive"), has("wait")) {
                    (true, false) => Op::ClusterArrive,
                    (false, true) => Op::ClusterWait,
                    _ => return Err(unknown()),
                }
            }
            "prmt" => {
                need(4)?;
                // The modes (.f4e, .b4e, .rc8, .ecl, .ecr, .rc16) pick bytes
                // by other rules.
                if mods != ["b32"] {
                    return Err(unknown());
                }
                Op::Prmt {
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], Ty::B32)?,
                    b: self.src(&ops[2], Ty::B32)?,
                    c: self.src(&ops[3], Ty::B32)?,
                }
            }
            "mapa" => {
                need(3)?;
                let generic = match Space::named_in(mods) {
                    Some(Space::Cluster) => false,
                    None => true,
                    Some(_) => return Err(unknown()),
                };
                Op::Mapa {
                    generic,
                    d: self.dst(&ops[0])?,
                    a: self.src(&ops[1], ty)?,
                    rank: self.src(&ops[2], Ty::U32)?,
                }
            }
            "bar" | "barrier" => {
                if has("warp") {
                    need(1)?;
                    Op::WarpSync {
                        mask: self.src(&ops[0], Ty::B32)?,
                    }
                } else if (has("sync") || mods.is_empty() || has("aligned"))
                    && !has("arrive")
                    && !has("red")
                {
                    if ops.len() != 1 || self.src(&ops[0], Ty::U32)? != Src::Imm(0) {
                        return Err(format!(
                            "`{opcode}` with a barrier id other than 0 or a thread count is not supported"
                        ));
                    }
                    Op::Bar
                } else {
                    return Err(unknown());
                }
            }
            "shfl" => {
                need(5)?;
                if !has("sync") {
                    return Err(unknown());
                }
                let mode = ShflMode::named_in(mods).ok_or_else(unknown)?;
                let (d, p) = match ops[0].split_once('|') {
                    Some((d, p)) => (self.dst(d)?, Some(self.dst(p)?)),
                    None => (self.dst(&ops[0])?, None),
                };
                Op::Shfl {
                    mode,
                    d,
                    p,
                    a: self.src(&ops[1], Ty::B32)?,
                    b: self.src(&ops[2], Ty::B32)?,
                    c: self.src(&ops[3], Ty::B32)?,
                    mask: self.src(&ops[4], Ty::B32)?,
                }
            }
            "vote" => {
                need(3)?;
                if !has("sync") {
                    return Err(unknown());
                }
                let mode = VoteMode::named_in(mods).ok_or_else(unknown)?;
                let (negate, a) = match ops[1].strip_prefix('!') {
                    Some(r) => (true, r),
                    None => (false, ops[1].as_str()),
                };
                Op::Vote {
                    mode,
                    d: self.dst(&ops[0])?,
                    a: self.src(a, Ty::Pred)?,
                    negate,
                    mask: self.src(&ops[2], Ty::B32)?,
                }
            }
            "membar" | "fence" => Op::Fence {
                gpu: has("gl") || has("sys") || has("gpu"),
            },
            "ret" if self.in_func => Op::Ret,
            "ret" | "exit" => Op::Exit,
            "call" => {
                need(1)?;
                let (rets, name, args) = if ops[0].starts_with('(') {
                    need(2)?;
                    (ops[0].as_str(), ops[1].as_str(), ops.get(2))
                } else {
                    ("", ops[0].as_str(), ops.get(1))
                };
                let &(func, nparams, nrets) = self
                    .funcs
                    .get(name)
                    .ok_or_else(|| format!("call of unknown function {name:?}"))?;
                let slots = |list: &str| -> PResult<Vec<u32>> {
                    list.trim()
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(|n| match self.syms.get(n) {
                            Some((Space::Local, off)) => Ok(*off as u32),
                            _ => Err(format!(
                                "call operand {n:?} is not a `.param` of the call sequence"
                            )),
                        })
                        .collect()
                };
                let args = slots(args.map_or("", String::as_str))?;
                let rets = slots(rets)?;
                if args.len() != nparams || rets.len() != nrets {
                    return Err(format!(
                        "call of {name:?} with {} arguments and {} return values; it declares {nparams} and {nrets}",
                        args.len(),
                        rets.len()
                    ));
                }
                Op::Call { func, args, rets }
            }
            _ => return Err(unknown()),
        };
        Ok((pred, op))
    }
}

/// The state space of an access: the first one `mods` name, else
/// `sym_space` (that of the symbol its address names), else generic; a
/// `.param` access to a symbol in local memory (a call's copy) is local.
fn space_of(mods: &[&str], sym_space: Option<Space>) -> Space {
    match (mods.iter().find_map(|m| Space::from_ptx(m)), sym_space) {
        (None, Some(s)) | (Some(Space::Param), Some(s @ Space::Local)) => s,
        (Some(Space::SharedCta), _) => Space::Shared,
        (s, _) => s.unwrap_or(Space::Generic),
    }
}
