//! numpy's `.npy` arrays and `.npz` archives (a zip of `NAME.npy` files), as
//! far as model weights need them.
//!
//! `.npy` (numpy's `format.py`): the magic `\x93NUMPY`, a version byte pair,
//! the header length (u16 for 1.0, u32 for 2.0 / 3.0, little-endian), then
//! an ASCII Python dict literal `{'descr': '<f4', 'fortran_order': False,
//! 'shape': (V, 512), }` padded with spaces and a `\n` so the data starts on
//! a 64-byte boundary, then the raw elements.
//!
//! Written: `<f4` (weights), `<i8` and `|b1` scalars, `<U1` (one character
//! per element, 4-byte code points) for the vocabulary, C order, stored
//! uncompressed (`np.savez`'s choice). Read: those plus `<f8` (a float64
//! model) and any of them in Fortran order (2-D at most), from stored or
//! deflated entries (`np.savez_compressed`). Big-endian and anything else is
//! refused by name rather than misread.
//!
//! The header is parsed by hand (keys and three value kinds): the `npyz`
//! crate would bring a whole Python-literal parser (pest) for ~60 bytes.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::words;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// One array's elements, converted to the widest type we use.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    /// `<f4` or `<f8` (converted to f32 by the caller when needed).
    F64(Vec<f64>),
    /// `<f4` exactly as stored (no rounding trip through f64 needed).
    F32(Vec<f32>),
    /// `<i8` / `<i4`.
    Int(Vec<i64>),
    /// `|b1`.
    Bool(Vec<bool>),
    /// `<U1`: one Unicode scalar value per element.
    Chars(Vec<char>),
}

/// A named array as read from or written to an archive.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Array {
    /// The name `np.load(...)[name]` gives it (the entry without `.npy`).
    pub name: String,
    /// Row-major (C order) shape; `[]` for a scalar.
    pub shape: Vec<usize>,
    /// The elements, C order.
    pub data: Data,
}

impl Array {
    /// The elements as f32 (f64 rounds to nearest), or `None` for other types.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match &self.data {
            Data::F32(v) => Some(v.clone()),
            Data::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }
}

/// `.npz` bytes holding `arrays` in order, uncompressed.
pub(crate) fn write_npz(arrays: &[Array]) -> Result<Vec<u8>, String> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for a in arrays {
        zip.start_file(format!("{}.npy", a.name), options)
            .map_err(|e| e.to_string())?;
        zip.write_all(&encode_npy(a)).map_err(|e| e.to_string())?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

/// Every `.npy` entry of an `.npz`, in archive order (other entries are
/// skipped, as `np.load` does).
pub(crate) fn read_npz(bytes: &[u8]) -> Result<Vec<Array>, String> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a zip archive, so not an .npz ({e})"))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let entry_name = entry.name().map_err(|e| e.to_string())?.into_owned();
        let Some(name) = entry_name.strip_suffix(".npy") else {
            continue;
        };
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("{entry_name}: {e}"))?;
        out.push(decode_npy(name, &data).map_err(|e| format!("{entry_name}: {e}"))?);
    }
    Ok(out)
}

/// One array as `.npy` bytes, format version 1.0, C order.
pub(crate) fn encode_npy(a: &Array) -> Vec<u8> {
    let descr = match a.data {
        Data::F32(_) => "<f4",
        Data::F64(_) => "<f8",
        Data::Int(_) => "<i8",
        Data::Bool(_) => "|b1",
        Data::Chars(_) => "<U1",
    };
    let shape = match a.shape.as_slice() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that magic (6) + version (2) + length (2) + header is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * a.shape.iter().product::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &a.data {
        Data::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::Int(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Data::Chars(v) => v
            .iter()
            .for_each(|&c| out.extend_from_slice(&u32::from(c).to_le_bytes())),
    }
    out
}

/// Parses one `.npy` file.
pub(crate) fn decode_npy(name: &str, bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("the .npy header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let (descr, fortran, shape) = parse_header(header)?;
    let body = &bytes[start + header_len..];
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("the shape overflows")?;
    let width = match descr.as_str() {
        "<f4" | "<i4" | "<U1" => 4,
        "<f8" | "<i8" => 8,
        "|b1" => 1,
        other => {
            return Err(format!(
                "dtype {other:?} is not supported (float32/float64 weights, little-endian)"
            ));
        }
    };
    if body.len() != count * width {
        return Err(format!(
            "shape {shape:?} of {descr} needs {} data bytes, the file has {}",
            count * width,
            body.len()
        ));
    }
    let mut data = match descr.as_str() {
        "<f4" => Data::F32(words(body).map(f32::from_le_bytes).collect()),
        "<f8" => Data::F64(words(body).map(f64::from_le_bytes).collect()),
        "<i4" => Data::Int(words(body).map(|w| i32::from_le_bytes(w).into()).collect()),
        "<i8" => Data::Int(words(body).map(i64::from_le_bytes).collect()),
        "|b1" => Data::Bool(body.iter().map(|&b| b != 0).collect()),
        _ => Data::Chars(
            words(body)
                .map(|w| {
                    let cp = u32::from_le_bytes(w);
                    char::from_u32(cp).ok_or(format!("{cp:#x} is not a Unicode scalar value"))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    if fortran && shape.len() == 2 {
        data = transpose(data, shape[1], shape[0]);
    } else if fortran && shape.len() > 2 {
        return Err("Fortran-order arrays of more than 2 dimensions are not supported".into());
    }
    Ok(Array {
        name: name.to_string(),
        shape,
        data,
    })
}

/// Fortran order stores an [R, C] array column by column, which is the
/// C-order [C, R] transpose; `rows_stored` x `cols_stored` is that stored
/// shape (C x R), and the result is the [R, C] array in C order.
fn transpose(data: Data, rows_stored: usize, cols_stored: usize) -> Data {
    fn t<T: Copy>(v: &[T], r: usize, c: usize) -> Vec<T> {
        (0..c)
            .flat_map(|j| (0..r).map(move |i| v[i * c + j]))
            .collect()
    }
    let (r, c) = (rows_stored, cols_stored);
    match data {
        Data::F32(v) => Data::F32(t(&v, r, c)),
        Data::F64(v) => Data::F64(t(&v, r, c)),
        Data::Int(v) => Data::Int(t(&v, r, c)),
        Data::Bool(v) => Data::Bool(t(&v, r, c)),
        Data::Chars(v) => Data::Chars(t(&v, r, c)),
    }
}

/// `descr`, `fortran_order` and `shape` from the header dict literal.
fn parse_header(header: &str) -> Result<(String, bool, Vec<usize>), String> {
    let bad = |what: &str| format!("unreadable .npy header ({what}): {:?}", header.trim_end());
    let value_after = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(&format!("no '{key}'")))?;
        let rest = &header[at + key.len() + 2..];
        let colon = rest.find(':').ok_or_else(|| bad("no ':'"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = value_after("descr")?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"');
    let quote = quote.ok_or_else(|| bad("descr is not a string"))?;
    let end = descr[1..]
        .find(quote)
        .ok_or_else(|| bad("unterminated descr"))?;
    let descr = descr[1..1 + end].to_string();
    let fortran = match value_after("fortran_order")? {
        v if v.starts_with("True") => true,
        v if v.starts_with("False") => false,
        _ => return Err(bad("fortran_order is not True or False")),
    };
    let shape = value_after("shape")?;
    let close = shape.find(')').ok_or_else(|| bad("shape is not a tuple"))?;
    if !shape.starts_with('(') {
        return Err(bad("shape is not a tuple"));
    }
    let shape = shape[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("shape holds a non-integer"))?;
    Ok((descr, fortran, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(name: &str, shape: &[usize], data: Data) -> Array {
        Array {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    #[test]
    fn every_written_type_round_trips() {
        let arrays = vec![
            array(
                "w",
                &[2, 3],
                Data::F32(vec![1.0, -2.5, 3.0, 0.0, 1e-7, 8.0]),
            ),
            array("d", &[2], Data::F64(vec![0.1, -0.2])),
            array("n", &[], Data::Int(vec![60])),
            array("b", &[], Data::Bool(vec![true])),
            array("vocab", &[3], Data::Chars(vec![' ', 'a', 'é'])),
        ];
        let bytes = write_npz(&arrays).unwrap();
        assert_eq!(read_npz(&bytes).unwrap(), arrays);
    }

    #[test]
    fn compressed_archives_are_read() {
        // np.savez_compressed deflates every entry.
        let a = array("w", &[3], Data::F32(vec![1.0, 2.0, 3.0]));
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        zip.start_file("w.npy", options).unwrap();
        zip.write_all(&encode_npy(&a)).unwrap();
        zip.start_file("notes.txt", options).unwrap();
        zip.write_all(b"skipped, as np.load skips it").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert_eq!(read_npz(&bytes).unwrap(), vec![a]);
    }

    #[test]
    fn header_is_aligned_and_numpy_shaped() {
        let npy = encode_npy(&array("x", &[4], Data::F32(vec![0.0; 4])));
        let header_end = npy.len() - 16;
        assert_eq!(header_end % 64, 0);
        let header = std::str::from_utf8(&npy[10..header_end]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }"));
        assert!(header.ends_with('\n'));
    }

    #[test]
    fn fortran_order_is_transposed() {
        // np.asfortranarray([[1, 2, 3], [4, 5, 6]]) stores 1 4 2 5 3 6.
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
        let mut npy = MAGIC.to_vec();
        npy.extend_from_slice(&[1, 0]);
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        for x in [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0] {
            npy.extend_from_slice(&x.to_le_bytes());
        }
        let a = decode_npy("x", &npy).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, Data::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(read_npz(b"not a zip").unwrap_err().contains("not a zip"));
        let mut npy = encode_npy(&array("x", &[2], Data::F32(vec![1.0, 2.0])));
        npy.truncate(npy.len() - 1);
        assert!(
            decode_npy("x", &npy)
                .unwrap_err()
                .contains("needs 8 data bytes")
        );
        let mut be = encode_npy(&array("x", &[1], Data::F32(vec![1.0])));
        let at = be.windows(3).position(|w| w == b"<f4").unwrap();
        be[at] = b'>';
        assert!(decode_npy("x", &be).unwrap_err().contains(">f4"));
    }
}
