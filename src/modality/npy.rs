//! numpy `.npy` arrays (format versions 1-3) of float32 or float64 in either byte order and in C
//! or Fortran order, read into f32 values in C order, for the modalities that take arrays
//! (depth maps, IMU series). The format is numpy's own ("NEP 1"); no maintained crate reads
//! it from memory without pulling in an ndarray stack.

/// Why an NPY file cannot be read; the message names the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    /// The file ends before its header or data does.
    #[error("truncated NPY file: {0}")]
    Truncated(String),
    /// The header is not numpy's.
    #[error("malformed NPY file: {0}")]
    Malformed(String),
    /// A dtype or version bindery does not read.
    #[error("unsupported NPY file: {0}")]
    Unsupported(String),
    /// More values than the caller allows.
    #[error("NPY array of shape {shape:?} has {values} values, more than the limit of {limit}")]
    TooLarge {
        /// The declared shape.
        shape: Vec<u64>,
        /// Its number of values.
        values: u128,
        /// The caller's limit.
        limit: u64,
    },
}

/// An array read from an NPY file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The shape, outermost axis first.
    pub shape: Vec<usize>,
    /// The values in C (row-major) order, as f32 (float64 values are rounded).
    pub values: Vec<f32>,
}

/// Whether `data` starts with numpy's magic string.
pub fn is_npy(data: &[u8]) -> bool {
    data.starts_with(b"\x93NUMPY")
}

/// The value of `'key':` in the header dictionary, up to the next top-level comma or brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted.iter().find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end =
        if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim())
}

/// An NPY file's header: the array's shape and how its data is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// The shape, outermost axis first.
    pub shape: Vec<u64>,
    /// The shape as the header wrote it, for messages.
    pub shape_text: String,
    big_endian: bool,
    value_size: usize,
    fortran: bool,
    data_start: usize,
}

impl NpyHeader {
    /// Reads the header of an NPY file.
    pub fn parse(data: &[u8]) -> Result<Self, NpyError> {
        let truncated = |reason: &str| NpyError::Truncated(reason.to_string());
        if data.len() < 10 {
            return Err(truncated("the header is incomplete"));
        }
        if !is_npy(data) {
            return Err(NpyError::Malformed("the file does not start with numpy's magic string".into()));
        }
        let (len, start): (usize, usize) = match data[6] {
            1 => (usize::from(u16::from_le_bytes([data[8], data[9]])), 10),
            2 | 3 => {
                let bytes = data.get(8..12).ok_or_else(|| truncated("the header is incomplete"))?;
                (u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize, 12)
            }
            v => return Err(NpyError::Unsupported(format!("format version {v}"))),
        };
        let header = data
            .get(start..start.saturating_add(len))
            .ok_or_else(|| truncated("the header is incomplete"))?;
        let header =
            std::str::from_utf8(header).map_err(|_| NpyError::Malformed("the header is not text".into()))?;
        let descr = dict_value(header, "descr")
            .ok_or_else(|| NpyError::Malformed("the header has no 'descr'".into()))?
            .trim_matches(|c| c == '\'' || c == '"');
        let (big_endian, value_size) = match descr {
            "<f4" | "=f4" | "|f4" => (false, 4),
            "<f8" | "=f8" | "|f8" => (false, 8),
            ">f4" => (true, 4),
            ">f8" => (true, 8),
            other => {
                return Err(NpyError::Unsupported(format!(
                    "dtype {other:?} (only float32 and float64 arrays are read)"
                )));
            }
        };
        let fortran = match dict_value(header, "fortran_order") {
            Some("True") => true,
            Some("False") => false,
            _ => return Err(NpyError::Malformed("the header has no valid 'fortran_order'".into())),
        };
        let shape_text = dict_value(header, "shape")
            .ok_or_else(|| NpyError::Malformed("the header has no 'shape'".into()))?;
        let shape: Vec<u64> = shape_text
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse::<u64>)
            .collect::<Result<_, _>>()
            .map_err(|_| NpyError::Malformed(format!("bad shape {shape_text}")))?;
        Ok(NpyHeader {
            shape,
            shape_text: shape_text.to_string(),
            big_endian,
            value_size,
            fortran,
            data_start: start + len,
        })
    }

    /// Number of values the shape declares.
    pub fn count(&self) -> u128 {
        self.shape.iter().fold(1u128, |n, &d| n.saturating_mul(u128::from(d)))
    }

    /// The values of `data` (the whole file this header was read from), in C order. Check
    /// [`count`](Self::count) against a limit first: this allocates that many values.
    pub fn values(&self, data: &[u8]) -> Result<Vec<f32>, NpyError> {
        let count = self.count();
        let body = data.get(self.data_start..).unwrap_or_default();
        let need = count * self.value_size as u128;
        if (body.len() as u128) < need {
            return Err(NpyError::Truncated(format!(
                "shape {} needs {need} bytes of data but {} follow",
                self.shape_text,
                body.len()
            )));
        }
        let count = count as usize;
        let (size, big) = (self.value_size, self.big_endian);
        let value = |i: usize| -> f32 {
            let b = &body[i * size..(i + 1) * size];
            if size == 4 {
                let a = [b[0], b[1], b[2], b[3]];
                if big { f32::from_be_bytes(a) } else { f32::from_le_bytes(a) }
            } else {
                let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                (if big { f64::from_be_bytes(a) } else { f64::from_le_bytes(a) }) as f32
            }
        };
        let shape: Vec<usize> = self.shape.iter().map(|&d| d as usize).collect();
        if !self.fortran || shape.len() < 2 {
            return Ok((0..count).map(value).collect());
        }
        // Fortran order: the first axis varies fastest; map each C-order index to its place.
        let mut strides = vec![1usize; shape.len()];
        for axis in 1..shape.len() {
            strides[axis] = strides[axis - 1] * shape[axis - 1];
        }
        Ok((0..count)
            .map(|mut c_index| {
                let mut f_index = 0;
                for axis in (0..shape.len()).rev() {
                    f_index += (c_index % shape[axis]) * strides[axis];
                    c_index /= shape[axis];
                }
                value(f_index)
            })
            .collect())
    }
}

/// Reads an NPY file holding at most `max_values` values; the shape is checked against the limit
/// before any data is read.
pub fn read(data: &[u8], max_values: u64) -> Result<NpyArray, NpyError> {
    let header = NpyHeader::parse(data)?;
    let count = header.count();
    if count > u128::from(max_values) {
        return Err(NpyError::TooLarge { shape: header.shape, values: count, limit: max_values });
    }
    let values = header.values(data)?;
    Ok(NpyArray { shape: header.shape.iter().map(|&d| d as usize).collect(), values })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An NPY version 1 file with `descr`, `fortran_order` and `shape` as written by numpy.
    pub(crate) fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn c_and_fortran_order_give_the_same_c_order_values() {
        let c = read(&npy("<f4", false, "(2, 3)", &f32s(&[1., 2., 3., 4., 5., 6.])), 100).unwrap();
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(c.values, vec![1., 2., 3., 4., 5., 6.]);
        // The same matrix stored column by column.
        let f = read(&npy("<f4", true, "(2, 3)", &f32s(&[1., 4., 2., 5., 3., 6.])), 100).unwrap();
        assert_eq!(f, c);
        let doubles: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(read(&npy(">f8", false, "(2,)", &doubles), 100).unwrap().values, vec![1.5, -2.0]);
    }

    #[test]
    fn limits_truncation_and_dtypes_are_named() {
        let body = f32s(&[0.0; 6]);
        assert!(matches!(read(&npy("<f4", false, "(2, 3)", &body), 5), Err(NpyError::TooLarge { .. })));
        assert!(matches!(read(&npy("<f4", false, "(2, 3)", &body[..20]), 100), Err(NpyError::Truncated(_))));
        let err = read(&npy("<i2", false, "(3,)", &body), 100).unwrap_err();
        assert!(err.to_string().contains("\"<i2\""), "{err}");
        assert!(matches!(read(b"not a numpy file at all", 100), Err(NpyError::Malformed(_))));
    }
}
