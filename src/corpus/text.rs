//! Reading and normalising text.
//!
//! The Keras example reads its corpus with `open(path).read().lower()`. Two
//! things happen there besides decoding, and [`read_text`] does them too, so a
//! file gives the same characters here as in Python:
//!
//! - text mode translates newlines: `"\r\n"` and a lone `"\r"` become `"\n"`;
//! - a leading byte-order mark is dropped (Python keeps it only with the plain
//!   `utf-8` codec; it is an encoding marker, not a character of the text, and
//!   would otherwise become a vocabulary symbol that never appears in samples).

use crate::error::{Error, Result};
use crate::io::{Input, Limit};
use std::borrow::Cow;
use std::path::Path;

/// Reads a UTF-8 text file; errors name invalid UTF-8 (with the byte offset) and empty files.
///
/// A NUL byte is valid UTF-8 but never occurs in real text; a file with one is
/// reported as binary, since that is what it almost always is (or UTF-16).
/// Whichever problem comes first in the file is the one reported.
///
/// The file is opened and read once, so a pipe or FIFO works; both problems
/// are caught as the bytes arrive (`/dev/zero` fails at its first byte), and
/// a text over [`crate::io::TEXT_LIMIT`] bytes is refused
/// ([`Error::InputTooLarge`]; a regular file before anything is read).
pub fn read_text(path: &Path) -> Result<String> {
    text_from_input(Input::open(path)?)
}

/// [`read_text`] of an opened file, continuing after whatever was peeked.
pub(crate) fn text_from_input(input: Input) -> Result<String> {
    let path = input.path().to_path_buf();
    let mut checked = 0;
    let bytes = input.read_to_end(Limit::TEXT, |b| {
        check_arriving(&path, b, &mut checked).map(|()| None)
    })?;
    text_from_bytes(bytes, &path)
}

/// The check of [`decode`] on the bytes that arrived since `checked`, which
/// it advances; a UTF-8 sequence cut at the end waits for the next bytes.
fn check_arriving(path: &Path, bytes: &[u8], checked: &mut usize) -> Result<()> {
    let new = &bytes[*checked..];
    let (valid, invalid) = match std::str::from_utf8(new) {
        Ok(_) => (new.len(), false),
        Err(e) => (e.valid_up_to(), e.error_len().is_some()),
    };
    if let Some(i) = new[..valid].iter().position(|&b| b == 0) {
        return Err(Error::BinaryText {
            path: path.into(),
            offset: *checked + i,
        });
    }
    if invalid {
        return Err(Error::InvalidUtf8 {
            path: path.into(),
            offset: *checked + valid,
        });
    }
    *checked += valid;
    Ok(())
}

/// [`read_text`] for bytes already in memory; `path` only names the source in errors.
pub fn text_from_bytes(bytes: Vec<u8>, path: &Path) -> Result<String> {
    let text = decode(path, bytes)?;
    let text = text
        .strip_prefix('\u{feff}')
        .map(str::to_owned)
        .unwrap_or(text);
    if text.is_empty() {
        return Err(Error::EmptyText { path: path.into() });
    }
    Ok(match translate_newlines(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(t) => t,
    })
}

/// Checks UTF-8 and NULs in one pass over the bytes, reporting the earlier problem.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String> {
    let valid_up_to = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    if let Some(offset) = bytes[..valid_up_to].iter().position(|&b| b == 0) {
        return Err(Error::BinaryText {
            path: path.into(),
            offset,
        });
    }
    String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        path: path.into(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Python's universal-newline translation (`"\r\n"` and `"\r"` -> `"\n"`).
fn translate_newlines(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            chars.next_if_eq(&'\n');
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Lower-cases like Python's `str.lower()` when asked, else returns the text unchanged.
///
/// Both apply Unicode's full lower-case mapping (so `'İ'` becomes two chars,
/// `"i\u{307}"`) and the context rule for final sigma (`"ΣΑΣ"` -> `"σας"`).
/// They can differ only where the two implementations ship different Unicode
/// versions, i.e. for characters assigned in between; none of them occur in
/// ordinary text.
pub fn normalize(text: &str, lowercase: bool) -> String {
    if lowercase {
        text.to_lowercase()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_follow_python_text_mode() {
        assert_eq!(translate_newlines("a\r\nb\rc\n\r\r\nd"), "a\nb\nc\n\n\nd");
        assert!(matches!(translate_newlines("plain\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn arriving_bytes_report_what_decode_reports() {
        let path = Path::new("t");
        // A sequence cut between two chunks waits for its end.
        let text = "aé\u{20ac}b".as_bytes();
        let mut checked = 0;
        for end in 1..=text.len() {
            check_arriving(path, &text[..end], &mut checked).unwrap();
        }
        assert_eq!(checked, text.len());
        // The earlier of a NUL and invalid UTF-8 is the one named, at its offset.
        for (bytes, nul, offset) in [
            (&b"ab\0c\xff"[..], true, 2),
            (&b"ab\xffc\0"[..], false, 2),
            (&b"\0"[..], true, 0),
        ] {
            let mut checked = 0;
            let mut first = None;
            for end in 1..=bytes.len() {
                if let Err(e) = check_arriving(path, &bytes[..end], &mut checked) {
                    first = Some(e);
                    break;
                }
            }
            match first.expect("an error") {
                Error::BinaryText { offset: o, .. } if nul => assert_eq!(o, offset),
                Error::InvalidUtf8 { offset: o, .. } if !nul => assert_eq!(o, offset),
                e => panic!("{e}"),
            }
        }
    }

    #[test]
    fn lowercase_handles_special_cases() {
        assert_eq!(normalize("ΣΑΣ Ab", true), "σας ab");
        assert_eq!(normalize("İ", true), "i\u{307}");
        assert_eq!(normalize("AbC", false), "AbC");
    }
}
