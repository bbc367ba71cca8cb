//! PTX text -> pre-decoded kernels: every register a slot index, every label a
//! program counter, every symbol an offset, so execution does no string work.

use std::collections::HashMap;

/// Scalar types; `Pred` is a 1-bit predicate register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    B8,
    B16,
    B32,
    B64,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    Bf16,
    F32,
    F64,
    Pred,
}

impl Ty {
    pub fn bytes(self) -> u32 {
        use Ty::*;
        match self {
            B8 | U8 | S8 => 1,
            B16 | U16 | S16 | F16 | Bf16 => 2,
            B32 | U32 | S32 | F32 => 4,
            B64 | U64 | S64 | F64 => 8,
            Pred => 1,
        }
    }
    pub fn signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::Bf16 | Ty::F32 | Ty::F64)
    }
    fn parse(s: &str) -> Option<Ty> {
        use Ty::*;
        Some(match s {
            "b8" => B8,
            "b16" => B16,
            "b32" => B32,
            "b64" => B64,
            "u8" => U8,
            "u16" => U16,
            "u32" => U32,
            "u64" => U64,
            "s8" => S8,
            "s16" => S16,
            "s32" => S32,
            "s64" => S64,
            "f16" => F16,
            "bf16" => Bf16,
            "f32" => F32,
            "f64" => F64,
            "pred" => Pred,
            _ => return None,
        })
    }
}

/// Special registers (`%tid.x`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sreg {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
}

/// A source operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    R(u16),
    Imm(u64),
    S(Sreg),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Generic,
    Global,
    Shared,
    Local,
    Param,
    Const,
}

/// `[base + offset]`; `base` is a register or nothing (a symbol already folded into `offset`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Addr {
    pub base: Option<u16>,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    Rn,
    Rz,
    Rm,
    Rp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    Add,
    Sub,
    MulLo,
    MulHi,
    MulWide,
    Div,
    Rem,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Min,
    Max,
    Copysign,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Un {
    Not,
    Neg,
    Abs,
    Popc,
    Clz,
    Brev,
    Sqrt,
    SqrtApprox,
    Rsqrt,
    Rcp,
    RcpApprox,
    Ex2,
    Lg2,
    Tanh,
    Sin,
    Cos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    Exch,
    Cas,
    And,
    Or,
    Xor,
    Inc,
    Dec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

/// Which modifiers a float op carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FMod {
    pub rnd: Rnd,
    pub ftz: bool,
    pub sat: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Mov {
        d: u16,
        a: Src,
    },
    /// `mov.b64 %rd, {%lo, %hi}` / `mov.b32 %r, {%h0, %h1}`.
    Pack {
        d: u16,
        parts: Vec<Src>,
        part_bits: u32,
    },
    /// `mov.b64 {%lo, %hi}, %rd`.
    Unpack {
        ds: Vec<u16>,
        a: Src,
        part_bits: u32,
    },
    Bin {
        op: Bin,
        ty: Ty,
        m: FMod,
        d: u16,
        a: Src,
        b: Src,
    },
    Un {
        op: Un,
        ty: Ty,
        m: FMod,
        d: u16,
        a: Src,
    },
    Mad {
        ty: Ty,
        hi: bool,
        wide: bool,
        d: u16,
        a: Src,
        b: Src,
        c: Src,
    },
    Fma {
        ty: Ty,
        m: FMod,
        d: u16,
        a: Src,
        b: Src,
        c: Src,
    },
    Setp {
        cmp: Cmp,
        ty: Ty,
        ftz: bool,
        d: u16,
        a: Src,
        b: Src,
    },
    Selp {
        ty: Ty,
        d: u16,
        a: Src,
        b: Src,
        p: Src,
    },
    Cvt {
        dty: Ty,
        sty: Ty,
        irnd: Option<Rnd>,
        rnd: Option<Rnd>,
        ftz: bool,
        sat: bool,
        d: u16,
        a: Src,
    },
    Cvta {
        to: bool,
        space: Space,
        d: u16,
        a: Src,
    },
    Bfe {
        ty: Ty,
        d: u16,
        a: Src,
        b: Src,
        c: Src,
    },
    Bfi {
        ty: Ty,
        d: u16,
        a: Src,
        b: Src,
        c: Src,
        e: Src,
    },
    Ld {
        space: Space,
        ty: Ty,
        d: Vec<u16>,
        addr: Addr,
    },
    St {
        space: Space,
        ty: Ty,
        s: Vec<Src>,
        addr: Addr,
    },
    Atom {
        space: Space,
        op: AtomOp,
        ty: Ty,
        d: Option<u16>,
        addr: Addr,
        b: Src,
        c: Src,
    },
    Bra {
        target: u32,
    },
    Bar,
    WarpSync {
        mask: Src,
    },
    Shfl {
        mode: ShflMode,
        d: u16,
        p: Option<u16>,
        a: Src,
        b: Src,
        c: Src,
        mask: Src,
    },
    Vote {
        mode: VoteMode,
        d: u16,
        a: Src,
        negate: bool,
        mask: Src,
    },
    /// `membar.gl`/`fence.*.gpu|sys` (`gpu` true) or CTA-scope fences.
    Fence {
        gpu: bool,
    },
    Exit,
}

#[derive(Clone, Debug)]
pub struct Inst {
    pub pred: Option<(u16, bool)>,
    pub op: Op,
    pub line: u32,
}

#[derive(Clone, Debug)]
pub struct ParamDecl {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub align: u32,
    pub ty: String,
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub params: Vec<ParamDecl>,
    pub param_bytes: u32,
    pub insts: Vec<Inst>,
    pub nregs: usize,
    /// Static shared bytes (kernel + module `.shared`); dynamic shared starts after it (aligned to 16).
    pub static_shared: u32,
    pub local_bytes: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Module {
    pub kernels: HashMap<String, Kernel>,
}

pub type PResult<T> = std::result::Result<T, String>;

fn strip_comments(src: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in src.lines().enumerate() {
        let mut s = String::new();
        let mut chars = line.chars().peekable();
        let mut in_str = false;
        while let Some(c) = chars.next() {
            if in_block {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    in_block = false;
                }
                continue;
            }
            if c == '"' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if !in_str && c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                in_block = true;
                continue;
            }
            s.push(c);
        }
        out.push((i as u32 + 1, s));
    }
    out
}

/// A variable declared with `.shared`/`.local`/`.global`: returns (name, bytes, align); `bytes` 0 for `name[]`.
fn parse_var(decl: &str) -> PResult<(String, u32, u32)> {
    let toks: Vec<&str> = decl.split_whitespace().collect();
    let mut align = 0;
    let mut elem = 0;
    let mut name_tok = None;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if t == ".align" {
            align = toks
                .get(i + 1)
                .and_then(|a| a.parse().ok())
                .ok_or("bad .align")?;
            i += 2;
            continue;
        }
        if let Some(ty) = t.strip_prefix('.').and_then(Ty::parse) {
            elem = ty.bytes();
        } else if !t.starts_with('.') {
            name_tok = Some(toks[i..].join(""));
            break;
        }
        i += 1;
    }
    let name_tok = name_tok.ok_or("missing variable name")?;
    let name_tok = name_tok.split('=').next().unwrap_or("").to_string();
    if elem == 0 {
        return Err(format!("missing type in {decl:?}"));
    }
    let (name, count) = match name_tok.find('[') {
        Some(p) => {
            let inner = name_tok[p + 1..].trim_end_matches(']');
            let n: u32 = if inner.is_empty() {
                0
            } else {
                inner
                    .parse()
                    .map_err(|_| format!("bad array size {inner:?}"))?
            };
            (name_tok[..p].to_string(), n)
        }
        None => (name_tok, 1),
    };
    Ok((name, count * elem, align.max(elem)))
}

fn align_up(x: u32, a: u32) -> u32 {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// Parses a whole PTX module.
pub fn parse_module(src: &str) -> PResult<Module> {
    let lines = strip_comments(src);
    let mut module = Module::default();
    // Module-scope shared variables: (name, offset); laid out before each kernel's own.
    let mut mod_shared: Vec<(String, u32)> = Vec::new();
    let mut mod_shared_bytes = 0u32;
    let mut has_dynamic: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let (ln, raw) = &lines[i];
        let line = raw.trim();
        i += 1;
        if line.is_empty()
            || line.starts_with(".version")
            || line.starts_with(".target")
            || line.starts_with(".address_size")
        {
            continue;
        }
        if line.starts_with(".extern .shared") || line.starts_with(".shared") {
            let (name, bytes, align) =
                parse_var(line.trim_end_matches(';')).map_err(|e| format!("line {ln}: {e}"))?;
            if line.starts_with(".extern") || bytes == 0 {
                has_dynamic = Some(name);
            } else {
                let off = align_up(mod_shared_bytes, align);
                mod_shared.push((name, off));
                mod_shared_bytes = off + bytes;
            }
            continue;
        }
        if line.contains(".entry") {
            let is_entry = true;
            let mut header = line.to_string();
            while !header.contains(')') {
                let (_, more) = lines.get(i).ok_or("unterminated .entry header")?;
                header.push(' ');
                header.push_str(more.trim());
                i += 1;
            }
            let _ = is_entry;
            let after = header.split(".entry").nth(1).unwrap_or("").trim();
            let name = after.split('(').next().unwrap_or("").trim().to_string();
            let inner = after.split_once('(').map(|x| x.1).unwrap_or("");
            let inner = inner.rsplit_once(')').map(|x| x.0).unwrap_or("");
            let mut params = Vec::new();
            let mut off = 0u32;
            for p in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (pname, size, align) =
                    parse_var(p).map_err(|e| format!("line {ln}: parameter {p:?}: {e}"))?;
                off = align_up(off, align);
                let ty = p
                    .split_whitespace()
                    .filter(|t| t.starts_with('.') && *t != ".param" && *t != ".align")
                    .collect::<Vec<_>>()
                    .join(" ");
                params.push(ParamDecl {
                    name: pname,
                    offset: off,
                    size,
                    align,
                    ty,
                });
                off += size;
            }
            // Body: from `{` to the matching `}`.
            let start = i;
            let mut depth = 0;
            let mut body = Vec::new();
            while i < lines.len() {
                let (bl, braw) = &lines[i];
                i += 1;
                let t = braw.trim();
                if t.starts_with('{') && depth == 0 && body.is_empty() && i - 1 == start {
                    depth = 1;
                    continue;
                }
                if t == "{" && depth == 0 {
                    depth = 1;
                    continue;
                }
                if t.starts_with('}') {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                if t.starts_with('{') {
                    return Err(format!(
                        "line {bl}: nested block `{{` (a call sequence?) is not supported by the simulator"
                    ));
                }
                body.push((*bl, t.to_string()));
            }
            let k = parse_body(
                params,
                off,
                &body,
                &mod_shared,
                mod_shared_bytes,
                has_dynamic.as_deref(),
            )?;
            module.kernels.insert(name, k);
            continue;
        }
        if line.contains(".func") {
            return Err(format!(
                "line {ln}: `.func` (device function calls) is not supported by the simulator yet; mark it __forceinline__"
            ));
        }
        if line.starts_with(".global") || line.starts_with(".const") {
            return Err(format!(
                "line {ln}: module-scope `{}` variables are not supported by the simulator yet",
                line.split_whitespace().next().unwrap_or("")
            ));
        }
        return Err(format!("line {ln}: unexpected {line:?}"));
    }
    Ok(module)
}

struct Ctx {
    regs: HashMap<String, u16>,
    reg_names: Vec<String>,
    syms: HashMap<String, (Space, i64)>,
    labels: HashMap<String, u32>,
}

fn parse_body(
    params: Vec<ParamDecl>,
    param_bytes: u32,
    body: &[(u32, String)],
    mod_shared: &[(String, u32)],
    mut shared_bytes: u32,
    dynamic: Option<&str>,
) -> PResult<Kernel> {
    let mut cx = Ctx {
        regs: HashMap::new(),
        reg_names: Vec::new(),
        syms: HashMap::new(),
        labels: HashMap::new(),
    };
    for p in &params {
        cx.syms
            .insert(p.name.clone(), (Space::Param, p.offset as i64));
    }
    for (n, off) in mod_shared {
        cx.syms.insert(n.clone(), (Space::Shared, *off as i64));
    }
    let mut local_bytes = 0u32;
    // Join statements across lines; record labels with their instruction index.
    let mut stmts: Vec<(u32, String)> = Vec::new();
    let mut acc = String::new();
    let mut acc_line = 0;
    for (ln, t) in body {
        let mut rest = t.as_str();
        loop {
            let rt = rest.trim();
            if rt.is_empty() {
                break;
            }
            if acc.is_empty() {
                acc_line = *ln;
                if let Some(lbl) = rt
                    .strip_suffix(':')
                    .filter(|l| !l.contains(char::is_whitespace))
                {
                    stmts.push((*ln, format!("{lbl}:")));
                    break;
                }
            }
            match rt.find(';') {
                Some(p) => {
                    acc.push(' ');
                    acc.push_str(&rt[..p]);
                    stmts.push((acc_line, std::mem::take(&mut acc).trim().to_string()));
                    rest = &rt[p + 1..];
                }
                None => {
                    acc.push(' ');
                    acc.push_str(rt);
                    break;
                }
            }
        }
    }
    if !acc.trim().is_empty() {
        return Err(format!(
            "line {acc_line}: statement without `;`: {:?}",
            acc.trim()
        ));
    }
    // Declarations first, labels -> instruction indices.
    let mut n_inst = 0u32;
    let mut inst_stmts = Vec::new();
    for (ln, s) in &stmts {
        if let Some(l) = s.strip_suffix(':') {
            cx.labels.insert(l.to_string(), n_inst);
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
            let (n, bytes, align) = parse_var(s).map_err(|e| format!("line {ln}: {e}"))?;
            let off = align_up(shared_bytes, align);
            cx.syms.insert(n, (Space::Shared, off as i64));
            shared_bytes = off + bytes;
        } else if s.starts_with(".local") {
            let (n, bytes, align) = parse_var(s).map_err(|e| format!("line {ln}: {e}"))?;
            let off = align_up(local_bytes, align);
            cx.syms.insert(n, (Space::Local, off as i64));
            local_bytes = off + bytes;
        } else if s.starts_with(".pragma")
            || s.starts_with(".maxntid")
            || s.starts_with(".reqntid")
            || s.starts_with(".minnctapersm")
        {
        } else if s.starts_with('.') {
            return Err(format!("line {ln}: unsupported directive {s:?}"));
        } else {
            inst_stmts.push((*ln, s.clone()));
            n_inst += 1;
        }
    }
    let static_shared = align_up(shared_bytes, 16);
    if let Some(d) = dynamic {
        cx.syms
            .insert(d.to_string(), (Space::Shared, static_shared as i64));
    }
    let mut insts = Vec::with_capacity(inst_stmts.len() + 1);
    for (ln, s) in &inst_stmts {
        let inst = cx
            .parse_inst(s)
            .map_err(|e| format!("line {ln}: {e} (in `{s}`)"))?;
        insts.push(Inst {
            pred: inst.0,
            op: inst.1,
            line: *ln,
        });
    }
    insts.push(Inst {
        pred: None,
        op: Op::Exit,
        line: body.last().map(|b| b.0).unwrap_or(0),
    });
    Ok(Kernel {
        params,
        param_bytes,
        insts,
        nregs: cx.reg_names.len(),
        static_shared,
        local_bytes,
    })
}

fn split_operands(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let s = s.trim_end_matches('U');
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()? as i64
    } else {
        s.parse::<u64>().ok()? as i64
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

impl Ctx {
    fn add_reg(&mut self, n: String) {
        if !self.regs.contains_key(&n) {
            self.regs.insert(n.clone(), self.reg_names.len() as u16);
            self.reg_names.push(n);
        }
    }

    fn reg(&self, s: &str) -> PResult<u16> {
        self.regs
            .get(s)
            .copied()
            .ok_or_else(|| format!("undeclared register {s:?}"))
    }

    fn src(&self, s: &str, ty: Ty) -> PResult<Src> {
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
                _ => match dim {
                    "laneid" => Some(Sreg::LaneId),
                    "warpid" => Some(Sreg::WarpId),
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

    fn dst(&self, s: &str) -> PResult<u16> {
        self.reg(s.trim())
    }

    fn addr(&self, s: &str) -> PResult<(Option<Space>, Addr)> {
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

    fn vec_regs(&self, s: &str) -> PResult<Vec<u16>> {
        match s.trim().strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(inner) => inner.split(',').map(|r| self.dst(r)).collect(),
            None => Ok(vec![self.dst(s)?]),
        }
    }

    fn vec_srcs(&self, s: &str, ty: Ty) -> PResult<Vec<Src>> {
        match s.trim().strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(inner) => inner.split(',').map(|r| self.src(r, ty)).collect(),
            None => Ok(vec![self.src(s, ty)?]),
        }
    }

    fn parse_inst(&self, s: &str) -> PResult<(Option<(u16, bool)>, Op)> {
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
            .find_map(|m| Ty::parse(m))
            .unwrap_or(Ty::B32);
        let ops = split_operands(rest);
        let need = |n: usize| -> PResult<()> {
            if ops.len() < n {
                Err(format!("`{opcode}` needs {n} operands, got {}", ops.len()))
            } else {
                Ok(())
            }
        };
        let rnd = if has("rz") {
            Rnd::Rz
        } else if has("rm") {
            Rnd::Rm
        } else if has("rp") {
            Rnd::Rp
        } else {
            Rnd::Rn
        };
        let fm = FMod {
            rnd,
            ftz: has("ftz"),
            sat: has("sat"),
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
            "add" | "sub" | "mul" | "div" | "rem" | "and" | "or" | "xor" | "shl" | "shr"
            | "min" | "max" | "copysign" => {
                need(3)?;
                let op = match (parts[0], has("hi"), has("wide")) {
                    ("add", ..) => Bin::Add,
                    ("sub", ..) => Bin::Sub,
                    ("mul", true, _) => Bin::MulHi,
                    ("mul", _, true) => Bin::MulWide,
                    ("mul", ..) => Bin::MulLo,
                    ("div", ..) => Bin::Div,
                    ("rem", ..) => Bin::Rem,
                    ("and", ..) => Bin::And,
                    ("or", ..) => Bin::Or,
                    ("xor", ..) => Bin::Xor,
                    ("shl", ..) => Bin::Shl,
                    ("shr", ..) => Bin::Shr,
                    ("min", ..) => Bin::Min,
                    ("max", ..) => Bin::Max,
                    _ => Bin::Copysign,
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
            "not" | "neg" | "abs" | "popc" | "clz" | "brev" | "sqrt" | "rsqrt" | "rcp" | "ex2"
            | "lg2" | "tanh" | "sin" | "cos" | "cnot" => {
                need(2)?;
                let approx = has("approx");
                let op = match parts[0] {
                    "not" => Un::Not,
                    "neg" => Un::Neg,
                    "abs" => Un::Abs,
                    "popc" => Un::Popc,
                    "clz" => Un::Clz,
                    "brev" => Un::Brev,
                    "sqrt" if approx => Un::SqrtApprox,
                    "sqrt" => Un::Sqrt,
                    "rsqrt" => Un::Rsqrt,
                    "rcp" if approx => Un::RcpApprox,
                    "rcp" => Un::Rcp,
                    "ex2" => Un::Ex2,
                    "lg2" => Un::Lg2,
                    "tanh" => Un::Tanh,
                    "sin" => Un::Sin,
                    "cos" => Un::Cos,
                    _ => return Err(unknown()),
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
                let cmp = match mods[0] {
                    "eq" => Cmp::Eq,
                    "ne" => Cmp::Ne,
                    "lt" => Cmp::Lt,
                    "le" => Cmp::Le,
                    "gt" => Cmp::Gt,
                    "ge" => Cmp::Ge,
                    "lo" => Cmp::Lo,
                    "ls" => Cmp::Ls,
                    "hi" => Cmp::Hi,
                    "hs" => Cmp::Hs,
                    "equ" => Cmp::Equ,
                    "neu" => Cmp::Neu,
                    "ltu" => Cmp::Ltu,
                    "leu" => Cmp::Leu,
                    "gtu" => Cmp::Gtu,
                    "geu" => Cmp::Geu,
                    "num" => Cmp::Num,
                    "nan" => Cmp::Nan,
                    _ => return Err(unknown()),
                };
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
                let tys: Vec<Ty> = mods.iter().filter_map(|m| Ty::parse(m)).collect();
                if tys.len() != 2 {
                    return Err(unknown());
                }
                let irnd = mods.iter().find_map(|m| match *m {
                    "rni" => Some(Rnd::Rn),
                    "rzi" => Some(Rnd::Rz),
                    "rmi" => Some(Rnd::Rm),
                    "rpi" => Some(Rnd::Rp),
                    _ => None,
                });
                let frnd = mods.iter().find_map(|m| match *m {
                    "rn" => Some(Rnd::Rn),
                    "rz" => Some(Rnd::Rz),
                    "rm" => Some(Rnd::Rm),
                    "rp" => Some(Rnd::Rp),
                    _ => None,
                });
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
                let space = if has("global") {
                    Space::Global
                } else if has("shared") {
                    Space::Shared
                } else if has("local") {
                    Space::Local
                } else {
                    return Err(unknown());
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
                let space = space_of(mods);
                if has("v8") {
                    return Err(unknown());
                }
                let (asym, addr_s, other) = if parts[0] == "ld" {
                    (1, &ops[1], &ops[0])
                } else {
                    (0, &ops[0], &ops[1])
                };
                let _ = asym;
                let (sym_space, addr) = self.addr(addr_s)?;
                let space = match (space, sym_space) {
                    (Space::Generic, Some(s)) => s,
                    (s, _) => s,
                };
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
                let space = space_of(mods);
                let op = mods
                    .iter()
                    .find_map(|m| {
                        Some(match *m {
                            "add" => AtomOp::Add,
                            "min" => AtomOp::Min,
                            "max" => AtomOp::Max,
                            "exch" => AtomOp::Exch,
                            "cas" => AtomOp::Cas,
                            "and" => AtomOp::And,
                            "or" => AtomOp::Or,
                            "xor" => AtomOp::Xor,
                            "inc" => AtomOp::Inc,
                            "dec" => AtomOp::Dec,
                            _ => return None,
                        })
                    })
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
                let space = match (space, sym_space) {
                    (Space::Generic, Some(s)) => s,
                    (s, _) => s,
                };
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
                let mode = if has("up") {
                    ShflMode::Up
                } else if has("down") {
                    ShflMode::Down
                } else if has("bfly") {
                    ShflMode::Bfly
                } else if has("idx") {
                    ShflMode::Idx
                } else {
                    return Err(unknown());
                };
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
                let mode = if has("all") {
                    VoteMode::All
                } else if has("any") {
                    VoteMode::Any
                } else if has("uni") {
                    VoteMode::Uni
                } else if has("ballot") {
                    VoteMode::Ballot
                } else {
                    return Err(unknown());
                };
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
            "ret" | "exit" => Op::Exit,
            _ => return Err(unknown()),
        };
        Ok((pred, op))
    }
}

fn space_of(mods: &[&str]) -> Space {
    for m in mods {
        match *m {
            "global" => return Space::Global,
            "shared" => return Space::Shared,
            "local" => return Space::Local,
            "param" => return Space::Param,
            "const" => return Space::Const,
            _ => {}
        }
    }
    Space::Generic
}
