//! Reading and normalising text.

use crate::error::Result;
use std::path::Path;

/// Reads a UTF-8 text file; errors name invalid UTF-8 (with the byte offset) and empty files.
pub fn read_text(path: &Path) -> Result<String> {
    let _ = path;
    todo!()
}

/// Lower-cases like Python's `str.lower()` when asked, else returns the text unchanged.
pub fn normalize(text: &str, lowercase: bool) -> String {
    let _ = (text, lowercase);
    todo!()
}
