//! Lexing: comments stripped, a body cut into `;`-terminated statements and
//! `label:` markers, operands split at top-level commas, integer literals.

use super::PResult;

pub(super) fn strip_comments(src: &str) -> Vec<(u32, String)> {
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

/// Joins a body's lines into statements (`;` stripped) and `label:` markers, each with its first line.
pub(super) fn statements(body: &[(u32, String)]) -> PResult<Vec<(u32, String)>> {
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
                // Call-sequence scopes: `{` and `}` are statements of their own.
                if let Some(b) = rt.get(..1).filter(|b| *b == "{" || *b == "}") {
                    stmts.push((*ln, b.to_string()));
                    rest = &rt[1..];
                    continue;
                }
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
    Ok(stmts)
}

pub(super) fn split_operands(s: &str) -> Vec<String> {
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

pub(super) fn parse_int(s: &str) -> Option<i64> {
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
