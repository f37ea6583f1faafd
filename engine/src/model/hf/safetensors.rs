//! The safetensors container: an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the data.
//!
//! Parsed by hand rather than through the `safetensors` crate so that every
//! rejection can name the file and the tensor, and so that a hostile header
//! is bounded before anything is allocated for it. The same layout is written
//! back by [`write_header`] for the GGUF converter (the crate is used in the
//! tests as an independent check of what we write).

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use super::error::HfError;
use crate::model::gguf::GgmlType;

/// Headers larger than this are refused before parsing. The `safetensors`
/// crate uses the same bound; real headers are kilobytes.
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// One tensor entry of a parsed header, with absolute file offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StTensor {
    pub name: String,
    /// The dtype as written (`"F32"`, `"I64"`...).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    pub len: usize,
}

impl StTensor {
    /// The engine type for this tensor, if it can run it.
    pub fn ggml_type(&self) -> Option<GgmlType> {
        engine_type(&self.dtype)
    }

    /// (rows, cols) with `cols` the contiguous (last) dimension; vectors are
    /// one row.
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.shape.split_last() {
            None => (1, 1),
            Some((&cols, lead)) => (lead.iter().product(), cols),
        }
    }
}

/// The dtypes the engine runs directly.
pub fn engine_type(dtype: &str) -> Option<GgmlType> {
    match dtype {
        "F32" => Some(GgmlType::F32),
        "F16" => Some(GgmlType::F16),
        "BF16" => Some(GgmlType::BF16),
        _ => None,
    }
}

/// The safetensors name for an engine type the converter writes.
pub fn dtype_name(t: GgmlType) -> Option<&'static str> {
    match t {
        GgmlType::F32 => Some("F32"),
        GgmlType::F16 => Some("F16"),
        GgmlType::BF16 => Some("BF16"),
        _ => None,
    }
}

/// Bytes per element of every whole-byte safetensors dtype, so that headers
/// holding tensors the engine ignores (integer buffers, fp8) still validate.
fn element_bytes(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Parses and validates the header of a whole safetensors file.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<StTensor>, HfError> {
    let bad = |problem: String| HfError::Header {
        path: path.to_path_buf(),
        problem,
    };
    let file_len = bytes.len() as u64;
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            bad(format!(
                "file is {file_len} bytes, shorter than the 8-byte header length"
            ))
        })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    let data_start = 8 + header_len;
    if data_start > file_len {
        return Err(bad(format!(
            "header length {header_len} runs past the end of the file ({file_len} bytes)"
        )));
    }
    // Both bounds checked just above, so the conversions and slice hold.
    let data_start = data_start as usize;
    let data_len = bytes.len() - data_start;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;

    let mut out = Vec::with_capacity(header.len());
    for (name, entry) in &header {
        if name == "__metadata__" {
            continue;
        }
        let t = parse_entry(name, entry, data_len).map_err(|p| HfError::tensor(path, name, p))?;
        out.push(StTensor {
            start: data_start + t.0,
            len: t.1,
            name: name.clone(),
            dtype: t.2,
            shape: t.3,
        });
    }
    Ok(out)
}

/// One entry: returns (offset into data, byte length, dtype, shape).
fn parse_entry(
    name: &str,
    entry: &Value,
    data_len: usize,
) -> Result<(usize, usize, String, Vec<usize>), String> {
    let obj = entry
        .as_object()
        .ok_or_else(|| format!("entry for '{name}' is not an object"))?;
    let dtype = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("missing or non-string 'dtype'")?;
    let elem = element_bytes(dtype).ok_or_else(|| format!("unknown dtype '{dtype}'"))?;
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("missing or non-array 'shape'")?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| format!("shape entry {d} is not a non-negative integer"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or("missing or non-array 'data_offsets'")?;
    let [begin, end] = offsets.as_slice() else {
        return Err(format!(
            "'data_offsets' has {} entries, expected 2",
            offsets.len()
        ));
    };
    let (Some(begin), Some(end)) = (begin.as_u64(), end.as_u64()) else {
        return Err("'data_offsets' are not non-negative integers".into());
    };
    if begin > end {
        return Err(format!("data_offsets [{begin}, {end}] run backwards"));
    }
    if end > data_len as u64 {
        return Err(format!(
            "data_offsets [{begin}, {end}] run past the end of the data section ({data_len} bytes)"
        ));
    }
    let want = shape
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    // end <= data_len, so both fit in usize.
    let (begin, end) = (begin as usize, end as usize);
    if want != end - begin {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {want} bytes, but data_offsets [{begin}, {end}] hold {}",
            end - begin
        ));
    }
    Ok((begin, end - begin, dtype.to_string(), shape))
}

/// One tensor to be written: its data follows the previous one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StEntry {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub len: u64,
}

/// Writes the length prefix and JSON header for `entries`, laid out back to
/// back in order. The header is padded with spaces to a multiple of 8 bytes,
/// as the reference writer does, so the data section starts aligned.
pub fn write_header(w: &mut impl Write, entries: &[StEntry]) -> std::io::Result<()> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0u64;
    for e in entries {
        header.insert(
            e.name.clone(),
            serde_json::json!({
                "dtype": e.dtype,
                "shape": e.shape,
                "data_offsets": [offset, offset + e.len],
            }),
        );
        offset += e.len;
    }
    let mut json = serde_json::to_vec(&Value::Object(header))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)
}

/// A whole small file in memory, for tests that build directories by hand.
#[cfg(test)]
pub(crate) fn file_bytes(tensors: &[(&str, &'static str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<StEntry> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| StEntry {
            name: name.to_string(),
            dtype,
            shape: shape.clone(),
            len: data.len() as u64,
        })
        .collect();
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    write_header(&mut out, &entries).unwrap();
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn round_trips_through_our_writer_and_the_reference_crate() {
        let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = vec![0u8; 4 * 2];
        let bytes = file_bytes(&[
            ("a", "F32", vec![2, 3], a.clone()),
            ("b", "BF16", vec![4], b),
        ]);
        let parsed = parse_header(Path::new("x.safetensors"), &bytes).unwrap();
        let a_t = parsed.iter().find(|t| t.name == "a").unwrap();
        assert_eq!(a_t.rows_cols(), (2, 3));
        assert_eq!(&bytes[a_t.start..a_t.start + a_t.len], &a[..]);
        assert_eq!(a_t.ggml_type(), Some(GgmlType::F32));
        assert_eq!((a_t.start - 8) % 8, 0, "header padded to 8 bytes");

        let reference = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let view = reference.tensor("a").unwrap();
        assert_eq!(view.shape(), &[2, 3]);
        assert_eq!(view.data(), &a[..]);
        assert_eq!(
            reference.tensor("b").unwrap().dtype(),
            ::safetensors::Dtype::BF16
        );
    }

    fn header_only(json: &str, data: usize) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data));
        out
    }

    fn err(bytes: &[u8]) -> String {
        parse_header(Path::new("/m/model.safetensors"), bytes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rejects_a_short_file_and_an_oversized_header_length() {
        assert!(err(&[1, 2, 3]).contains("shorter than the 8-byte header"));
        let mut b = 1000u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        let e = err(&b);
        assert!(
            e.contains("/m/model.safetensors") && e.contains("past the end"),
            "{e}"
        );
        let b = (MAX_HEADER_BYTES + 1).to_le_bytes();
        assert!(err(&b).contains("limit"));
        assert!(err(&header_only("[1,2]", 0)).contains("not a JSON object"));
    }

    #[test]
    fn rejects_bad_entries_naming_the_tensor() {
        let cases = [
            (
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#,
                8,
                "past the end",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                "needs 12 bytes",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                8,
                "backwards",
            ),
            (
                r#"{"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                "unknown dtype 'Q9'",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
                8,
                "shape entry",
            ),
            (r#"{"w":{"dtype":"F32","shape":[2]}}"#, 8, "data_offsets"),
            (
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                8,
                "overflows",
            ),
        ];
        for (json, data, want) in cases {
            let e = err(&header_only(json, data));
            assert!(e.contains("tensor 'w'") && e.contains(want), "{json}: {e}");
            assert!(e.contains("/m/model.safetensors"), "{e}");
        }
    }

    #[test]
    fn integer_tensors_validate_but_have_no_engine_type() {
        let json = r#"{"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#;
        let t = parse_header(Path::new("m"), &header_only(json, 16)).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].ggml_type(), None);
        assert_eq!(t[0].start, 8 + json.len());
    }
}
