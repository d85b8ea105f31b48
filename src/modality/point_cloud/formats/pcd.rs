//! Point Cloud Library PCD (v0.5-0.7): `DATA ascii`, `binary` and `binary_compressed`; fields
//! `x y z` and an optional packed `rgb`/`rgba` (float or uint32 holding 0x00RRGGBB).

use super::lzf;
use super::{byte_color, check_points, text_f32};
use crate::modality::point_cloud::{Cloud, PointCloudError, PointCloudLimits};

const NAME: &str = "PCD";

fn malformed(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Malformed { format: NAME, reason: reason.into() }
}

fn truncated(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Truncated { format: NAME, reason: reason.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    Ascii,
    Binary,
    Compressed,
}

#[derive(Debug)]
struct Field {
    name: String,
    size: usize,
    kind: u8,
    count: usize,
}

impl Field {
    fn bytes(&self) -> usize {
        self.size * self.count
    }

    /// One little-endian value of this field from `b` (exactly `size` bytes), widened to f64.
    fn value(&self, b: &[u8]) -> f64 {
        macro_rules! num {
            ($t:ty, $n:literal) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[..$n]);
                <$t>::from_le_bytes(a) as f64
            }};
        }
        match (self.kind, self.size) {
            (b'I', 1) => f64::from(b[0] as i8),
            (b'U', 1) => f64::from(b[0]),
            (b'I', 2) => num!(i16, 2),
            (b'U', 2) => num!(u16, 2),
            (b'I', 4) => num!(i32, 4),
            (b'U', 4) => num!(u32, 4),
            (b'I', 8) => num!(i64, 8),
            (b'U', 8) => num!(u64, 8),
            (b'F', 4) => num!(f32, 4),
            _ => num!(f64, 8),
        }
    }

    /// The 0x00RRGGBB bits of a packed colour field.
    fn packed_bits(&self, b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

struct Header {
    fields: Vec<Field>,
    points: u64,
    data: Data,
    body: usize,
}

fn parse_header(bytes: &[u8]) -> Result<Header, PointCloudError> {
    let mut pos = 0;
    let (mut names, mut sizes, mut types, mut counts) = (None, None, None, None);
    let (mut width, mut height, mut points) = (None, None, None);
    let data = loop {
        let rest = &bytes[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(truncated("the header has no DATA line"));
        };
        let line =
            std::str::from_utf8(&rest[..nl]).map_err(|_| malformed("the header is not ASCII text"))?.trim();
        pos += nl + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default().to_ascii_uppercase();
        let values: Vec<&str> = words.collect();
        let number = |what: &str| -> Result<u64, PointCloudError> {
            values
                .first()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| malformed(format!("bad {what} line {line:?}")))
        };
        let list = |what: &str| -> Result<Vec<usize>, PointCloudError> {
            values
                .iter()
                .map(|v| v.parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| malformed(format!("bad {what} line {line:?}")))
        };
        match key.as_str() {
            "VERSION" | "VIEWPOINT" => {}
            "FIELDS" => names = Some(values.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "SIZE" => sizes = Some(list("SIZE")?),
            "COUNT" => counts = Some(list("COUNT")?),
            "TYPE" => {
                let t: Vec<u8> =
                    values.iter().map(|v| v.bytes().next().unwrap_or(b'?').to_ascii_uppercase()).collect();
                types = Some(t);
            }
            "WIDTH" => width = Some(number("WIDTH")?),
            "HEIGHT" => height = Some(number("HEIGHT")?),
            "POINTS" => points = Some(number("POINTS")?),
            "DATA" => {
                break match values.first().map(|v| v.to_ascii_lowercase()).as_deref() {
                    Some("ascii") => Data::Ascii,
                    Some("binary") => Data::Binary,
                    Some("binary_compressed") => Data::Compressed,
                    other => return Err(malformed(format!("unknown DATA kind {other:?}"))),
                };
            }
            other => return Err(malformed(format!("unknown header keyword {other:?}"))),
        }
    };
    let names = names.ok_or_else(|| malformed("the header has no FIELDS line"))?;
    let n = names.len();
    let sizes = sizes.unwrap_or_else(|| vec![4; n]);
    let types = types.unwrap_or_else(|| vec![b'F'; n]);
    let counts = counts.unwrap_or_else(|| vec![1; n]);
    if sizes.len() != n || types.len() != n || counts.len() != n {
        return Err(malformed(format!(
            "FIELDS has {n} entries but SIZE {}, TYPE {} and COUNT {}",
            sizes.len(),
            types.len(),
            counts.len()
        )));
    }
    let mut fields = Vec::with_capacity(n);
    for (((name, size), kind), count) in names.into_iter().zip(sizes).zip(types).zip(counts) {
        let valid = matches!((kind, size), (b'I' | b'U', 1 | 2 | 4 | 8) | (b'F', 4 | 8));
        if !valid || count == 0 || count > 1 << 20 {
            return Err(malformed(format!(
                "field {name:?} has an invalid type {} / size {size} / count {count}",
                kind as char
            )));
        }
        fields.push(Field { name, size, kind, count });
    }
    let points = match (points, width, height) {
        (Some(p), _, _) => p,
        (None, Some(w), Some(h)) => w.saturating_mul(h),
        (None, Some(w), None) => w,
        _ => return Err(malformed("the header has neither POINTS nor WIDTH")),
    };
    Ok(Header { fields, points, data, body: pos })
}

/// Which field holds what.
struct Layout {
    xyz: [usize; 3],
    rgb: Option<usize>,
}

fn layout(fields: &[Field]) -> Result<Layout, PointCloudError> {
    let find = |name: &str| fields.iter().position(|f| f.name == name);
    let (Some(x), Some(y), Some(z)) = (find("x"), find("y"), find("z")) else {
        return Err(malformed("the fields do not include x, y and z"));
    };
    let rgb = find("rgb").or_else(|| find("rgba")).filter(|&i| fields[i].size == 4 && fields[i].kind != b'I');
    Ok(Layout { xyz: [x, y, z], rgb })
}

/// Parses a PCD file.
pub(super) fn parse(bytes: &[u8], limits: &PointCloudLimits) -> Result<Cloud, PointCloudError> {
    let header = parse_header(bytes)?;
    check_points(header.points, limits)?;
    let layout = layout(&header.fields)?;
    let body = &bytes[header.body..];
    let n = header.points as usize;
    let record: usize = header.fields.iter().map(Field::bytes).sum();
    let mut offsets = Vec::with_capacity(header.fields.len());
    let mut off = 0;
    for f in &header.fields {
        offsets.push(off);
        off += f.bytes();
    }
    let fields = &header.fields;
    match header.data {
        Data::Ascii => parse_ascii(body, fields, &layout, n),
        Data::Binary => {
            if (n as u128) * (record as u128) > body.len() as u128 {
                return Err(truncated(format!(
                    "the header declares {n} points of {record} bytes but {} bytes follow",
                    body.len()
                )));
            }
            Ok(gather(n, &layout, fields, |field, point| {
                let at = point * record + offsets[field];
                &body[at..at + fields[field].size]
            }))
        }
        Data::Compressed => {
            if body.len() < 8 {
                return Err(truncated("the compressed block sizes are missing"));
            }
            let compressed = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
            let size = u32::from_le_bytes([body[4], body[5], body[6], body[7]]) as usize;
            if (size as u128) != (n as u128) * (record as u128) {
                return Err(malformed(format!(
                    "the compressed block holds {size} bytes, but {n} points of {record} bytes \
                     need {}",
                    n as u128 * record as u128
                )));
            }
            let data = body[8..].get(..compressed).ok_or_else(|| {
                truncated(format!("the compressed block is {compressed} bytes but {} follow", body.len() - 8))
            })?;
            let raw =
                lzf::decompress(data, size).map_err(|e| malformed(format!("invalid LZF data ({e:?})")))?;
            // Decompressed data is stored field by field: all x, then all y, ...
            let mut starts = Vec::with_capacity(fields.len());
            let mut at = 0;
            for f in fields {
                starts.push(at);
                at += n * f.bytes();
            }
            Ok(gather(n, &layout, fields, |field, point| {
                let at = starts[field] + point * fields[field].bytes();
                &raw[at..at + fields[field].size]
            }))
        }
    }
}

/// Builds the cloud from a byte accessor `(field, point) -> first element of the field`.
fn gather<'a>(n: usize, layout: &Layout, fields: &[Field], at: impl Fn(usize, usize) -> &'a [u8]) -> Cloud {
    let mut xyz = Vec::with_capacity(n * 3);
    let mut rgb = layout.rgb.map(|_| Vec::with_capacity(n * 3));
    for p in 0..n {
        for &f in &layout.xyz {
            xyz.push(fields[f].value(at(f, p)) as f32);
        }
        if let (Some(f), Some(out)) = (layout.rgb, rgb.as_mut()) {
            push_packed(out, fields[f].packed_bits(at(f, p)));
        }
    }
    Cloud { xyz, rgb }
}

fn push_packed(out: &mut Vec<f32>, bits: u32) {
    out.extend([byte_color((bits >> 16) as u8), byte_color((bits >> 8) as u8), byte_color(bits as u8)]);
}

fn parse_ascii(body: &[u8], fields: &[Field], layout: &Layout, n: usize) -> Result<Cloud, PointCloudError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("the ascii data is not text"))?;
    let columns: usize = fields.iter().map(|f| f.count).sum();
    let mut column_of = Vec::with_capacity(fields.len());
    let mut c = 0;
    for f in fields {
        column_of.push(c);
        c += f.count;
    }
    let cap = n.min(body.len() / (2 * columns).max(1) + 1);
    let mut xyz = Vec::with_capacity(cap * 3);
    let mut rgb = layout.rgb.map(|_| Vec::with_capacity(cap * 3));
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let mut tokens = Vec::with_capacity(columns);
    for p in 0..n {
        let Some((line_no, line)) = lines.next() else {
            return Err(truncated(format!("the header declares {n} points but the data has {p}")));
        };
        tokens.clear();
        tokens.extend(line.split_whitespace());
        if tokens.len() != columns {
            return Err(malformed(format!(
                "data line {} has {} values, expected {columns}",
                line_no + 1,
                tokens.len()
            )));
        }
        let bad = |t: &str| malformed(format!("{t:?} is not a number (data line {})", line_no + 1));
        for &f in &layout.xyz {
            let t = tokens[column_of[f]];
            xyz.push(text_f32(t).ok_or_else(|| bad(t))?);
        }
        if let (Some(f), Some(out)) = (layout.rgb, rgb.as_mut()) {
            let t = tokens[column_of[f]];
            let bits = if fields[f].kind == b'F' {
                text_f32(t).ok_or_else(|| bad(t))?.to_bits()
            } else {
                t.parse::<u32>().map_err(|_| bad(t))?
            };
            push_packed(out, bits);
        }
    }
    Ok(Cloud { xyz, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\n\
COUNT 1 1 1 1\nWIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\n";

    #[test]
    fn ascii_and_binary_agree() {
        let red = f32::from_bits(0x00ff_0000);
        let ascii = format!("{HEAD}DATA ascii\n1 2 3 {red:e}\n4 5 nan {red:e}\n");
        let a = parse(ascii.as_bytes(), &PointCloudLimits::default()).unwrap();
        let mut bin = format!("{HEAD}DATA binary\n").into_bytes();
        for v in [1.0f32, 2.0, 3.0, red, 4.0, 5.0, f32::NAN, red] {
            bin.extend(v.to_le_bytes());
        }
        let b = parse(&bin, &PointCloudLimits::default()).unwrap();
        assert_eq!(a.rgb, Some(vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]));
        assert_eq!(a.rgb, b.rgb);
        assert_eq!(a.xyz[..5], b.xyz[..5]);
        assert!(a.xyz[5].is_nan() && b.xyz[5].is_nan());
        bin.truncate(bin.len() - 1);
        assert!(matches!(parse(&bin, &PointCloudLimits::default()), Err(PointCloudError::Truncated { .. })));
    }

    #[test]
    fn compressed_is_field_major() {
        let head = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\n\
HEIGHT 1\nPOINTS 2\nDATA binary_compressed\n";
        let mut raw = Vec::new();
        for v in [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0] {
            raw.extend(v.to_le_bytes());
        }
        // Stored as one literal run (no compression).
        let mut data = head.as_bytes().to_vec();
        data.extend(25u32.to_le_bytes());
        data.extend(24u32.to_le_bytes());
        data.push(23);
        data.extend(&raw);
        let c = parse(&data, &PointCloudLimits::default()).unwrap();
        assert_eq!(c.xyz, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
