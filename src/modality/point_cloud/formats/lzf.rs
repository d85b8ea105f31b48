//! LZF decompression (the format of PCD `binary_compressed` data, liblzf's `lzf_decompress`).
//!
//! Hand-written because the only LZF crate is deprecated; the format is two token kinds:
//! a control byte below 32 starts a literal run of `ctrl + 1` bytes; otherwise the top 3 bits are
//! a length (7 means "add the next byte") and the low 5 bits with the next byte an offset back
//! into the output, copying `length + 2` bytes (overlap allowed).

/// Why a compressed block is invalid.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LzfError {
    /// The input ends inside a token.
    Truncated,
    /// A back reference points before the start of the output.
    BadReference,
    /// The output would not have the declared size.
    WrongSize,
}

/// Decompresses `input` into exactly `size` bytes.
pub(super) fn decompress(input: &[u8], size: usize) -> Result<Vec<u8>, LzfError> {
    let mut out = Vec::with_capacity(size);
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            let literal = input.get(ip..ip + len).ok_or(LzfError::Truncated)?;
            if out.len() + len > size {
                return Err(LzfError::WrongSize);
            }
            out.extend_from_slice(literal);
            ip += len;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(LzfError::Truncated)?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(LzfError::Truncated)?);
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let start = out.len().checked_sub(back).ok_or(LzfError::BadReference)?;
            let len = len + 2;
            if out.len() + len > size {
                return Err(LzfError::WrongSize);
            }
            for i in 0..len {
                let b = out[start + i];
                out.push(b);
            }
        }
    }
    if out.len() == size { Ok(out) } else { Err(LzfError::WrongSize) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_back_references() {
        // "abc" literal, then a 6-byte copy from 3 back (overlapping): "abcabcabc".
        let data = [2, b'a', b'b', b'c', 4 << 5, 2];
        assert_eq!(decompress(&data, 9).unwrap(), b"abcabcabc");
        assert_eq!(decompress(&data, 8), Err(LzfError::WrongSize));
        assert_eq!(decompress(&[2, b'a'], 3), Err(LzfError::Truncated));
        assert_eq!(decompress(&[1 << 5, 0], 3), Err(LzfError::BadReference));
    }
}
