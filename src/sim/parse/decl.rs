//! Module structure: `.entry` headers and parameter layout, module- and
//! kernel-scope variables (`.shared`, `.local`), register declarations and
//! labels; instructions are handed to [`Ctx::parse_inst`].

use std::collections::HashMap;

use super::PResult;
use super::lex::{statements, strip_comments};
use super::operands::Ctx;
use super::types::*;

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
    let stmts = statements(body)?;
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
