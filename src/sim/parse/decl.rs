//! Module structure: `.entry` and `.func` headers with their parameter
//! layout, module-scope `.shared` variables and function bodies cut out of the
//! text; [`super::link`] turns each kernel (and the functions it calls) into
//! instructions.

use std::collections::HashMap;

use super::PResult;
use super::lex::strip_comments;
use super::link::link_kernel;
use super::types::*;

/// A variable declared with `.shared`/`.local`/`.global`: returns (name, bytes, align); `bytes` 0 for `name[]`.
pub(super) fn parse_var(decl: &str) -> PResult<(String, u32, u32)> {
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
        if let Some(ty) = t.strip_prefix('.').and_then(Ty::from_ptx) {
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

pub(super) fn align_up(x: u32, a: u32) -> u32 {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// A `.entry` or `.func` definition before decoding.
pub(super) struct Unit {
    pub(super) is_func: bool,
    pub(super) params: Vec<ParamDecl>,
    pub(super) param_bytes: u32,
    /// A function's return parameters (`.func (.param .b32 func_retval0) f(...)`).
    pub(super) rets: Vec<ParamDecl>,
    pub(super) body: Vec<(u32, String)>,
    /// `.maxntid` / `.reqntid` between the parameter list and the body.
    pub(super) bounds: Bounds,
}

/// A kernel's launch-bound directives, which the driver enforces at launch.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Bounds {
    pub(super) maxntid: Option<[u32; 3]>,
    pub(super) reqntid: Option<[u32; 3]>,
    /// `.reqnctapercluster` (`__cluster_dims__`): blocks per cluster.
    pub(super) cluster: Option<[u32; 3]>,
}

impl Bounds {
    /// Reads `.maxntid x[, y[, z]]`, `.reqntid ...` or `.reqnctapercluster
    /// ...` (missing dimensions are 1) and `.explicitcluster` (which
    /// `.reqnctapercluster` implies); other lines are not bounds.
    /// `.maxclusterrank` (a cluster shape chosen at launch) is refused: the
    /// simulator's launch takes no cluster attribute.
    pub(super) fn read(&mut self, line: &str, ln: u32) -> std::result::Result<bool, String> {
        if line.starts_with(".explicitcluster") {
            return Ok(true);
        }
        if line.starts_with(".maxclusterrank") {
            return Err(format!(
                "line {ln}: {line:?}: clusters sized at launch are not supported; give the \
                 kernel `__cluster_dims__` (`.reqnctapercluster`)"
            ));
        }
        let (slot, rest) = if let Some(r) = line.strip_prefix(".maxntid") {
            (&mut self.maxntid, r)
        } else if let Some(r) = line.strip_prefix(".reqntid") {
            (&mut self.reqntid, r)
        } else if let Some(r) = line.strip_prefix(".reqnctapercluster") {
            (&mut self.cluster, r)
        } else {
            return Ok(false);
        };
        let mut dims = [1u32; 3];
        let parts: Vec<&str> = rest.trim().trim_end_matches(';').split(',').collect();
        if parts.len() > 3 {
            return Err(format!("line {ln}: {line:?} has more than 3 dimensions"));
        }
        for (d, p) in dims.iter_mut().zip(&parts) {
            *d = p
                .trim()
                .parse()
                .map_err(|_| format!("line {ln}: bad dimension in {line:?}"))?;
        }
        *slot = Some(dims);
        Ok(true)
    }
}

/// Module-scope shared variables: `(name, offset)`, their total size, and the dynamic (`extern`) one.
pub(super) struct ModShared {
    pub(super) vars: Vec<(String, u32)>,
    pub(super) bytes: u32,
    pub(super) dynamic: Option<String>,
}

/// Lays out a `.param` list (`.param .u64 a, .param .align 4 .b8 b[8]`).
fn param_list(inner: &str, ln: u32) -> PResult<(Vec<ParamDecl>, u32)> {
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
    Ok((params, off))
}

/// The text inside the first balanced `( ... )` of `s`, and what follows it.
fn parens(s: &str) -> Option<(&str, &str)> {
    let open = s.find('(')?;
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[open + 1..open + i], &s[open + i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Parses a whole PTX module.
pub fn parse_module(src: &str) -> PResult<Module> {
    let lines = strip_comments(src);
    let mut module = Module::default();
    let mut shared = ModShared {
        vars: Vec::new(),
        bytes: 0,
        dynamic: None,
    };
    let mut units: Vec<(String, Unit)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (ln, raw) = &lines[i];
        let ln = *ln;
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
                shared.dynamic = Some(name);
            } else {
                let off = align_up(shared.bytes, align);
                shared.vars.push((name, off));
                shared.bytes = off + bytes;
            }
            continue;
        }
        let is_func = line.split_whitespace().any(|t| t == ".func");
        if line.split_whitespace().any(|t| t == ".entry") || is_func {
            // Header: up to the `)` closing the parameter list (a function's
            // return list comes first, in its own parentheses).
            let mut header = line.to_string();
            let lists = |h: &str| {
                let has_rets = is_func
                    && h.split(".func")
                        .nth(1)
                        .is_some_and(|r| r.trim_start().starts_with('('));
                let closed = h.matches(')').count();
                h.ends_with(';') || closed == h.matches('(').count() && closed > has_rets as usize
            };
            while !lists(&header) {
                let (_, more) = lines.get(i).ok_or("unterminated .entry/.func header")?;
                header.push(' ');
                header.push_str(more.trim());
                i += 1;
            }
            let kw = if is_func { ".func" } else { ".entry" };
            let mut after = header.split(kw).nth(1).unwrap_or("").trim();
            let mut rets = (Vec::new(), 0);
            if is_func && after.starts_with('(') {
                let (r, rest) = parens(after).ok_or(format!("line {ln}: bad return list"))?;
                rets = param_list(r, ln)?;
                after = rest.trim();
            }
            let name = after
                .split(|c: char| c == '(' || c == ';' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string();
            let (inner, rest) = parens(after).unwrap_or(("", after));
            let (params, param_bytes) = param_list(inner, ln)?;
            // A prototype (`.func f(...);`) has no body.
            let mut proto = rest.trim().ends_with(';');
            let mut bounds = Bounds::default();
            if !proto {
                while let Some((bl, l)) = lines.get(i) {
                    let l = l.trim();
                    // Directives between the parameter list and the body:
                    // `__launch_bounds__` emits `.maxntid` (checked at launch,
                    // as the driver does) and `.minnctapersm`, which like
                    // `.maxnreg` only steers register allocation.
                    let perf = [".minnctapersm", ".maxnreg"];
                    if l.is_empty() || bounds.read(l, *bl)? || perf.iter().any(|d| l.starts_with(d))
                    {
                        i += 1;
                        continue;
                    }
                    proto = l == ";";
                    if proto {
                        i += 1;
                    }
                    break;
                }
            }
            if proto {
                continue;
            }
            // Body: from `{` to the matching `}`; inner scopes (call
            // sequences, `{ ... }` from inline asm or nvcc's own, which may
            // open on one line and close at the end of another:
            // `{ .reg .b64 %tmp;` ... `cvta.shared.u64 %rd, %tmp; }`) stay
            // in it.
            let mut depth = 0usize;
            let mut body = Vec::new();
            while i < lines.len() {
                let (bl, braw) = &lines[i];
                i += 1;
                let t = braw.trim();
                let code = t.split("//").next().unwrap_or("");
                let (opens, closes) = (code.matches('{').count(), code.matches('}').count());
                if depth == 0 && t == "{" {
                    depth = 1;
                    continue;
                }
                depth = (depth + opens).saturating_sub(closes);
                if depth == 0 {
                    break;
                }
                body.push((*bl, t.to_string()));
            }
            units.push((
                name,
                Unit {
                    is_func,
                    params,
                    param_bytes,
                    rets: rets.0,
                    body,
                    bounds,
                },
            ));
            continue;
        }
        if line.starts_with(".global") || line.starts_with(".const") {
            return Err(format!(
                "line {ln}: module-scope `{}` variables are not supported by the simulator yet",
                line.split_whitespace().next().unwrap_or("")
            ));
        }
        return Err(format!("line {ln}: unexpected {line:?}"));
    }
    let funcs: HashMap<&str, &Unit> = units
        .iter()
        .filter(|(_, u)| u.is_func)
        .map(|(n, u)| (n.as_str(), u))
        .collect();
    for (name, u) in units.iter().filter(|(_, u)| !u.is_func) {
        let k = link_kernel(u, &funcs, &shared)?;
        module.kernels.insert(name.clone(), k);
    }
    Ok(module)
}
