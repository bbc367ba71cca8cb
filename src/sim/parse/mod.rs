//! PTX text -> pre-decoded kernels: every register a slot index, every label a
//! program counter, every symbol an offset, so execution does no string work.
//!
//! `lex` cuts text into statements, `decl` reads the module's directives,
//! `link` a kernel's (and its callees') declarations and body, `operands` resolves registers, symbols and addresses, and
//! `inst` decodes one instruction into an [`Op`].

mod decl;
mod inst;
mod lex;
mod link;
mod operands;
mod types;

pub use decl::parse_module;
pub use types::*;

pub type PResult<T> = std::result::Result<T, String>;
