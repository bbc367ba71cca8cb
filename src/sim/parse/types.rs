//! The decoded form of PTX: types, operands, instructions, kernels.

use std::collections::HashMap;

/// Declares an enum of PTX modifiers, each variant with the modifier that
/// names it (variants after `;` have none: the decoder derives them), and
/// `from_ptx` (the variant one modifier names) and `named_in` (the first
/// variant, in declaration order, that a list of modifiers names: the
/// precedence when an instruction writes more than one).
macro_rules! ptx_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $ptx:literal,)*
            $(; $($extra:ident,)*)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            $($($extra,)*)?
        }

        #[allow(dead_code)]
        impl $name {
            pub(super) fn from_ptx(s: &str) -> Option<Self> {
                match s {
                    $($ptx => Some(Self::$variant),)*
                    _ => None,
                }
            }

            pub(super) fn named_in(mods: &[&str]) -> Option<Self> {
                $(if mods.contains(&$ptx) {
                    return Some(Self::$variant);
                })*
                None
            }
        }
    };
}

ptx_enum! {
    /// Scalar types; `Pred` is a 1-bit predicate register.
    Ty {
        B8 = "b8",
        B16 = "b16",
        B32 = "b32",
        B64 = "b64",
        U8 = "u8",
        U16 = "u16",
        U32 = "u32",
        U64 = "u64",
        S8 = "s8",
        S16 = "s16",
        S32 = "s32",
        S64 = "s64",
        F16 = "f16",
        Bf16 = "bf16",
        /// Two f16 in 32 bits, element 0 in the low half.
        F16x2 = "f16x2",
        /// Two bf16 in 32 bits, element 0 in the low half.
        Bf16x2 = "bf16x2",
        F32 = "f32",
        F64 = "f64",
        Pred = "pred",
    }
}

impl Ty {
    #[inline(always)]
    pub fn bytes(self) -> u32 {
        use Ty::*;
        match self {
            B8 | U8 | S8 => 1,
            B16 | U16 | S16 | F16 | Bf16 => 2,
            B32 | U32 | S32 | F32 | F16x2 | Bf16x2 => 4,
            B64 | U64 | S64 | F64 => 8,
            Pred => 1,
        }
    }
    #[inline(always)]
    pub fn signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }
    #[inline(always)]
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Ty::F16 | Ty::Bf16 | Ty::F16x2 | Ty::Bf16x2 | Ty::F32 | Ty::F64
        )
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
    /// `%cluster_ctarank`: the block's rank in its cluster.
    ClusterCtarank,
    /// `%cluster_nctarank`: blocks in a cluster.
    ClusterNctarank,
    /// `%clusterid`: the cluster's index in the grid of clusters.
    ClusterId(u8),
    /// `%nclusterid`: the grid of clusters.
    NclusterId(u8),
    /// `%cluster_ctaid`: the block's index within its cluster.
    ClusterCtaid(u8),
    /// `%cluster_nctaid`: the cluster's shape.
    ClusterNctaid(u8),
    /// `%is_explicit_cluster`: launched with clusters declared.
    IsExplicitCluster,
}

/// A source operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    R(u16),
    Imm(u64),
    S(Sreg),
}

ptx_enum! {
    Space {
        Global = "global",
        Shared = "shared",
        Local = "local",
        Param = "param",
        Const = "const",
        /// `.shared::cluster`: any block's of the cluster, by the addresses
        /// `mapa` returns (the own block's plain shared addresses too).
        Cluster = "shared::cluster",
        /// `.shared::cta`, the same as `.shared`.
        SharedCta = "shared::cta",
        ;
        Generic,
    }
}

/// `[base + offset]`; `base` is a register or nothing (a symbol already folded into `offset`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Addr {
    pub base: Option<u16>,
    pub offset: i64,
}

ptx_enum! {
    /// Rounding modes; rz, rm, rp first: a float op's mode is the first of
    /// them it writes, else rn.
    Rnd {
        Rz = "rz",
        Rm = "rm",
        Rp = "rp",
        Rn = "rn",
    }
}

ptx_enum! {
    Bin {
        Add = "add",
        Sub = "sub",
        MulLo = "mul",
        Div = "div",
        Rem = "rem",
        And = "and",
        Or = "or",
        Xor = "xor",
        Shl = "shl",
        Shr = "shr",
        Min = "min",
        Max = "max",
        Copysign = "copysign",
        ;
        MulHi,
        MulWide,
    }
}

ptx_enum! {
    Un {
        Not = "not",
        Neg = "neg",
        Abs = "abs",
        Popc = "popc",
        Clz = "clz",
        Brev = "brev",
        Sqrt = "sqrt",
        Rsqrt = "rsqrt",
        Rcp = "rcp",
        Ex2 = "ex2",
        Lg2 = "lg2",
        Tanh = "tanh",
        Sin = "sin",
        Cos = "cos",
        ;
        SqrtApprox,
        RcpApprox,
    }
}

ptx_enum! {
    Cmp {
        Eq = "eq",
        Ne = "ne",
        Lt = "lt",
        Le = "le",
        Gt = "gt",
        Ge = "ge",
        Lo = "lo",
        Ls = "ls",
        Hi = "hi",
        Hs = "hs",
        Equ = "equ",
        Neu = "neu",
        Ltu = "ltu",
        Leu = "leu",
        Gtu = "gtu",
        Geu = "geu",
        Num = "num",
        Nan = "nan",
    }
}

ptx_enum! {
    AtomOp {
        Add = "add",
        Min = "min",
        Max = "max",
        Exch = "exch",
        Cas = "cas",
        And = "and",
        Or = "or",
        Xor = "xor",
        Inc = "inc",
        Dec = "dec",
    }
}

ptx_enum! {
    ShflMode {
        Up = "up",
        Down = "down",
        Bfly = "bfly",
        Idx = "idx",
    }
}

ptx_enum! {
    VoteMode {
        All = "all",
        Any = "any",
        Uni = "uni",
        Ballot = "ballot",
    }
}

/// Which modifiers a float op carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FMod {
    pub rnd: Rnd,
    pub ftz: bool,
    pub sat: bool,
    /// `.relu` (f16/bf16 `fma`): negative results become +0, NaN stays NaN.
    pub relu: bool,
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
    /// `mapa.shared::cluster` (`generic` false) or `mapa` on generic
    /// addresses: `a` as it is in block `rank` of the cluster.
    Mapa {
        generic: bool,
        d: u16,
        a: Src,
        rank: Src,
    },
    /// `prmt.b32` (the default mode): bytes of {b, a} picked by c's nibbles.
    Prmt {
        d: u16,
        a: Src,
        b: Src,
        c: Src,
    },
    /// `barrier.cluster.arrive` (`.release`, `.aligned`).
    ClusterArrive,
    /// `barrier.cluster.wait` (`.acquire`, `.aligned`).
    ClusterWait,
    /// `membar.gl`/`fence.*.gpu|sys` (`gpu` true) or CTA-scope fences.
    Fence {
        gpu: bool,
    },
    /// `call (rets), f, (args)`: `args`/`rets` are the caller's local slots of
    /// the call sequence's `.param` variables; `func` indexes [`Kernel::funcs`].
    Call {
        func: u16,
        args: Vec<u32>,
        rets: Vec<u32>,
    },
    /// `ret` in a `.func`.
    Ret,
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
    /// The `.func`s this kernel calls, their bodies appended to `insts`.
    pub funcs: Vec<Func>,
    /// `.maxntid` (`__launch_bounds__`): the most threads a block may have.
    pub maxntid: Option<u32>,
    /// `.reqntid`: the only block shape the kernel may be launched with.
    pub reqntid: Option<[u32; 3]>,
    /// `.reqnctapercluster` (`__cluster_dims__`): blocks per thread-block
    /// cluster; without it every block is a cluster of one, as on a GPU.
    pub cluster: Option<[u32; 3]>,
}

/// A linked device function: entry point and the per-thread local slots
/// `(offset, bytes)` of its parameters and return values.
#[derive(Clone, Debug)]
pub struct Func {
    pub name: String,
    pub entry: u32,
    pub params: Vec<(u32, u32)>,
    pub rets: Vec<(u32, u32)>,
}

#[derive(Clone, Debug, Default)]
pub struct Module {
    pub kernels: HashMap<String, Kernel>,
}
