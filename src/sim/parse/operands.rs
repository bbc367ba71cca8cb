//! Operands: registers, special registers, immediates (integer and
//! `0f`/`0d` float literals), symbols and `[base+offset]` addresses.

use std::collections::HashMap;

use super::PResult;
use super::lex::parse_int;
use super::types::*;

pub(super) struct Ctx {
    pub(super) regs: HashMap<String, u16>,
    /// The next free register slot (functions of a kernel get disjoint ranges).
    pub(super) next_reg: usize,
    /// Callees: name -> (function index, parameter count, return count).
    pub(super) funcs: HashMap<String, (u16, usize, usize)>,
    /// Decoding a `.func` (`ret` returns) rather than a kernel (`ret` exits).
    pub(super) in_func: bool,
    pub(super) syms: HashMap<String, (Space, i64)>,
    pub(super) labels: HashMap<String, u32>,
}

impl Ctx {
    pub(super) fn new(first_reg: usize, in_func: bool) -> Ctx {
        Ctx {
            regs: HashMap::new(),
            next_reg: first_reg,
            funcs: HashMap::new(),
            in_func,
            syms: HashMap::new(),
            labels: HashMap::new(),
        }
    }

    pub(super) fn add_reg(&mut self, n: String) {
        if !self.regs.contains_key(&n) {
            self.regs.insert(n, self.next_reg as u16);
            self.next_reg += 1;
        }
    }

    pub(super) fn reg(&self, s: &str) -> PResult<u16> {
        self.regs
            .get(s)
            .copied()
            .ok_or_else(|| format!("undeclared register {s:?}"))
    }

    pub(super) fn src(&self, s: &str, ty: Ty) -> PResult<Src> {
        let s = s.trim();
        if let Some(dim) = s.strip_prefix('%') {
            let d = |x: &str| match x {
                "x" => Some(0),
                "y" => Some(1),
                "z" => Some(2),
                _ => None,
            };
            let sp = match dim.split_once('.') {
                Some(("tid", x)) => d(x).map(Sreg::Tid),
                Some(("ntid", x)) => d(x).map(Sreg::Ntid),
                Some(("ctaid", x)) => d(x).map(Sreg::Ctaid),
                Some(("nctaid", x)) => d(x).map(Sreg::Nctaid),
                Some(("clusterid", x)) => d(x).map(Sreg::ClusterId),
                Some(("nclusterid", x)) => d(x).map(Sreg::NclusterId),
                Some(("cluster_ctaid", x)) => d(x).map(Sreg::ClusterCtaid),
                Some(("cluster_nctaid", x)) => d(x).map(Sreg::ClusterNctaid),
                _ => match dim {
                    "laneid" => Some(Sreg::LaneId),
                    "warpid" => Some(Sreg::WarpId),
                    "cluster_ctarank" => Some(Sreg::ClusterCtarank),
                    "cluster_nctarank" => Some(Sreg::ClusterNctarank),
                    "is_explicit_cluster" => Some(Sreg::IsExplicitCluster),
                    _ => None,
                },
            };
            if let Some(sp) = sp {
                return Ok(Src::S(sp));
            }
            return Ok(Src::R(self.reg(s)?));
        }
        if let Some(h) = s.strip_prefix("0f").or_else(|| s.strip_prefix("0F")) {
            let bits = u32::from_str_radix(h, 16).map_err(|_| format!("bad f32 literal {s:?}"))?;
            return Ok(Src::Imm(if ty == Ty::F64 {
                (f32::from_bits(bits) as f64).to_bits()
            } else {
                bits as u64
            }));
        }
        if let Some(h) = s.strip_prefix("0d").or_else(|| s.strip_prefix("0D")) {
            let bits = u64::from_str_radix(h, 16).map_err(|_| format!("bad f64 literal {s:?}"))?;
            return Ok(Src::Imm(bits));
        }
        if let Some(v) = parse_int(s) {
            if ty.is_float() {
                return Ok(Src::Imm(match ty {
                    Ty::F64 => (v as f64).to_bits(),
                    _ => (v as f32).to_bits() as u64,
                }));
            }
            return Ok(Src::Imm(v as u64));
        }
        // Registers named without `%` (inline asm's scoped `.reg .pred p;`).
        if let Some(&r) = self.regs.get(s) {
            return Ok(Src::R(r));
        }
        if let Some((sp, off)) = self.syms.get(s) {
            if *sp == Space::Param {
                return Err(format!(
                    "a parameter's address {s:?} used as a value is not supported"
                ));
            }
            return Ok(Src::Imm(*off as u64));
        }
        Err(format!("bad operand {s:?}"))
    }

    pub(super) fn dst(&self, s: &str) -> PResult<u16> {
        self.reg(s.trim())
    }

    pub(super) fn addr(&self, s: &str) -> PResult<(Option<Space>, Addr)> {
        let inner = s
            .trim()
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .ok_or_else(|| format!("expected an address `[...]`, got {s:?}"))?
            .replace(' ', "");
        let (base, off) = match inner.find(['+', '-']).filter(|&p| p > 0) {
            Some(p) => (
                &inner[..p],
                parse_int(inner[p..].trim_start_matches('+')).ok_or("bad address offset")?,
            ),
            None => (inner.as_str(), 0),
        };
        if base.starts_with('%') {
            return Ok((
                None,
                Addr {
                    base: Some(self.reg(base)?),
                    offset: off,
                },
            ));
        }
        if let Some((sp, o)) = self.syms.get(base) {
            return Ok((
                Some(*sp),
                Addr {
                    base: None,
                    offset: o + off,
                },
            ));
        }
        if let Some(v) = parse_int(base) {
            return Ok((
                None,
                Addr {
                    base: None,
                    offset: v + off,
                },
            ));
        }
        Err(format!("unknown symbol {base:?} in address"))
    }

    pub(super) fn vec_regs(&self, s: &str) -> PResult<Vec<u16>> {
        match s.trim().strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(inner) => inner.split(',').map(|r| self.dst(r)).collect(),
            None => Ok(vec![self.dst(s)?]),
        }
    }

    pub(super) fn vec_srcs(&self, s: &str, ty: Ty) -> PResult<Vec<Src>> {
        match s.trim().strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(inner) => inner.split(',').map(|r| self.src(r, ty)).collect(),
            None => Ok(vec![self.src(s, ty)?]),
        }
    }
}
