//! Stanford PLY: ascii, binary little- and big-endian; every scalar type; vertex colours;
//! faces (the file is then a mesh); other elements, properties and comments skipped.

use super::{Parsed, byte_color, check_points};
use crate::modality::point_cloud::mesh::{Mesh, fan};
use crate::modality::point_cloud::{Cloud, PointCloudError, PointCloudLimits};

const NAME: &str = "PLY";

fn malformed(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Malformed { format: NAME, reason: reason.into() }
}

fn truncated(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Truncated { format: NAME, reason: reason.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "char" | "int8" => Scalar::I8,
            "uchar" | "uint8" => Scalar::U8,
            "short" | "int16" => Scalar::I16,
            "ushort" | "uint16" => Scalar::U16,
            "int" | "int32" => Scalar::I32,
            "uint" | "uint32" => Scalar::U32,
            "float" | "float32" => Scalar::F32,
            "double" | "float64" => Scalar::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }

    /// Divisor that maps an integer colour channel to [0, 1]; floats are used as they are.
    fn color_scale(self) -> Option<f32> {
        match self {
            Scalar::I8 => Some(127.0),
            Scalar::U8 => Some(255.0),
            Scalar::I16 => Some(32767.0),
            Scalar::U16 => Some(65535.0),
            Scalar::I32 => Some(2_147_483_647.0),
            Scalar::U32 => Some(4_294_967_295.0),
            Scalar::F32 | Scalar::F64 => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Ascii,
    Little,
    Big,
}

#[derive(Debug)]
enum Kind {
    Scalar(Scalar),
    List { count: Scalar, item: Scalar },
}

#[derive(Debug)]
struct Property {
    name: String,
    kind: Kind,
}

#[derive(Debug)]
struct Element {
    name: String,
    count: u64,
    props: Vec<Property>,
}

impl Element {
    /// Bytes per record when every property is a scalar.
    fn fixed_size(&self) -> Option<usize> {
        self.props
            .iter()
            .map(|p| match p.kind {
                Kind::Scalar(s) => Some(s.size()),
                Kind::List { .. } => None,
            })
            .sum()
    }

    /// Fewest bytes one binary record can take (lists empty).
    fn min_size(&self) -> usize {
        self.props
            .iter()
            .map(|p| match p.kind {
                Kind::Scalar(s) => s.size(),
                Kind::List { count, .. } => count.size(),
            })
            .sum()
    }

    fn find(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.props.iter().position(|p| p.name == *n))
    }
}

struct Header {
    encoding: Encoding,
    elements: Vec<Element>,
    body: usize,
}

fn parse_header(data: &[u8]) -> Result<Header, PointCloudError> {
    let mut pos = 0;
    let mut encoding = None;
    let mut elements: Vec<Element> = Vec::new();
    let mut first = true;
    loop {
        let rest = &data[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(truncated("the header has no end_header line"));
        };
        let line =
            std::str::from_utf8(&rest[..nl]).map_err(|_| malformed("the header is not ASCII text"))?.trim();
        pos += nl + 1;
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or_default();
        if first {
            if keyword != "ply" {
                return Err(malformed("the file does not start with \"ply\""));
            }
            first = false;
            continue;
        }
        match keyword {
            "" | "comment" | "obj_info" => {}
            "format" => {
                encoding = Some(match words.next() {
                    Some("ascii") => Encoding::Ascii,
                    Some("binary_little_endian") => Encoding::Little,
                    Some("binary_big_endian") => Encoding::Big,
                    other => return Err(malformed(format!("unknown format {other:?}"))),
                });
            }
            "element" => {
                let (Some(name), Some(count)) = (words.next(), words.next()) else {
                    return Err(malformed(format!("bad element line {line:?}")));
                };
                let count =
                    count.parse::<u64>().map_err(|_| malformed(format!("bad element count in {line:?}")))?;
                elements.push(Element { name: name.to_string(), count, props: Vec::new() });
            }
            "property" => {
                let element = elements.last_mut().ok_or_else(|| malformed("property before any element"))?;
                let words: Vec<&str> = words.collect();
                let bad = || malformed(format!("bad property line {line:?}"));
                let kind = match words.as_slice() {
                    ["list", count, item, _] => Kind::List {
                        count: Scalar::parse(count).ok_or_else(bad)?,
                        item: Scalar::parse(item).ok_or_else(bad)?,
                    },
                    [ty, _] => Kind::Scalar(Scalar::parse(ty).ok_or_else(bad)?),
                    _ => return Err(bad()),
                };
                let name = words.last().copied().unwrap_or_default().to_string();
                element.props.push(Property { name, kind });
            }
            "end_header" => break,
            other => return Err(malformed(format!("unknown header keyword {other:?}"))),
        }
    }
    let encoding = encoding.ok_or_else(|| malformed("the header has no format line"))?;
    Ok(Header { encoding, elements, body: pos })
}

/// Reads one binary scalar from the start of a slice, widened to f64.
type Decode = fn(&[u8]) -> f64;

fn decoder(s: Scalar, big: bool) -> Decode {
    macro_rules! num {
        ($t:ty, $n:literal, $from:ident) => {
            |b: &[u8]| {
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[..$n]);
                <$t>::$from(a) as f64
            }
        };
    }
    match (s, big) {
        (Scalar::I8, _) => |b| f64::from(b[0] as i8),
        (Scalar::U8, _) => |b| f64::from(b[0]),
        (Scalar::I16, false) => num!(i16, 2, from_le_bytes),
        (Scalar::I16, true) => num!(i16, 2, from_be_bytes),
        (Scalar::U16, false) => num!(u16, 2, from_le_bytes),
        (Scalar::U16, true) => num!(u16, 2, from_be_bytes),
        (Scalar::I32, false) => num!(i32, 4, from_le_bytes),
        (Scalar::I32, true) => num!(i32, 4, from_be_bytes),
        (Scalar::U32, false) => num!(u32, 4, from_le_bytes),
        (Scalar::U32, true) => num!(u32, 4, from_be_bytes),
        (Scalar::F32, false) => num!(f32, 4, from_le_bytes),
        (Scalar::F32, true) => num!(f32, 4, from_be_bytes),
        (Scalar::F64, false) => num!(f64, 8, from_le_bytes),
        (Scalar::F64, true) => num!(f64, 8, from_be_bytes),
    }
}

/// Sequential reader of element records.
struct Body<'a> {
    data: &'a [u8],
    pos: usize,
    encoding: Encoding,
}

impl Body<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// One binary scalar at `at`, widened to f64 (exact for every PLY type).
    fn binary_at(&self, at: usize, s: Scalar) -> f64 {
        decoder(s, self.encoding == Encoding::Big)(&self.data[at..at + s.size()])
    }

    fn next_value(&mut self, s: Scalar, what: &str) -> Result<f64, PointCloudError> {
        if self.encoding == Encoding::Ascii {
            let rest = &self.data[self.pos..];
            let start = rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .ok_or_else(|| truncated(format!("the data ends inside {what}")))?;
            let len =
                rest[start..].iter().position(|b| b.is_ascii_whitespace()).unwrap_or(rest.len() - start);
            let token = std::str::from_utf8(&rest[start..start + len]).unwrap_or("?");
            self.pos += start + len;
            token.parse::<f64>().map_err(|_| malformed(format!("{token:?} is not a number ({what})")))
        } else {
            if self.remaining() < s.size() {
                return Err(truncated(format!("the data ends inside {what}")));
            }
            let v = self.binary_at(self.pos, s);
            self.pos += s.size();
            Ok(v)
        }
    }

    /// Reads one record; scalars go to `values` (lists count as NaN), the first list's items
    /// to `list`.
    fn record(
        &mut self,
        element: &Element,
        index: u64,
        values: &mut Vec<f64>,
        list: &mut Vec<f64>,
    ) -> Result<(), PointCloudError> {
        values.clear();
        list.clear();
        let mut first_list = true;
        for p in &element.props {
            let what = || format!("{} {} of {}", element.name, index, element.count);
            match p.kind {
                Kind::Scalar(s) => values.push(self.next_value(s, &what())?),
                Kind::List { count, item } => {
                    let n = self.next_value(count, &what())?;
                    if !(n >= 0.0 && n.fract() == 0.0) {
                        return Err(malformed(format!("bad list length {n} in {}", what())));
                    }
                    let n = n as usize;
                    if self.encoding != Encoding::Ascii && n * item.size() > self.remaining() {
                        return Err(truncated(format!("the data ends inside {}", what())));
                    }
                    for _ in 0..n {
                        let v = self.next_value(item, &what())?;
                        if first_list {
                            list.push(v);
                        }
                    }
                    first_list = false;
                    values.push(f64::NAN);
                }
            }
        }
        Ok(())
    }
}

/// Column positions of the vertex element.
struct VertexLayout {
    xyz: [usize; 3],
    rgb: Option<[usize; 3]>,
}

fn vertex_layout(e: &Element) -> Result<VertexLayout, PointCloudError> {
    let scalar = |i: usize| matches!(e.props[i].kind, Kind::Scalar(_));
    let find = |names: &[&str]| e.find(names).filter(|&i| scalar(i));
    let (Some(x), Some(y), Some(z)) = (find(&["x"]), find(&["y"]), find(&["z"])) else {
        return Err(malformed("the vertex element has no scalar x, y and z properties"));
    };
    let rgb = match (
        find(&["red", "r", "diffuse_red"]),
        find(&["green", "g", "diffuse_green"]),
        find(&["blue", "b", "diffuse_blue"]),
    ) {
        (Some(r), Some(g), Some(b)) => Some([r, g, b]),
        _ => None,
    };
    Ok(VertexLayout { xyz: [x, y, z], rgb })
}

fn to_color(v: f64, s: Scalar) -> f32 {
    match s.color_scale() {
        Some(_) if s == Scalar::U8 => byte_color(v as u8),
        Some(scale) => v as f32 / scale,
        None => v as f32,
    }
}

fn scalar_of(e: &Element, i: usize) -> Scalar {
    match e.props[i].kind {
        Kind::Scalar(s) => s,
        Kind::List { item, .. } => item,
    }
}

fn read_vertices(body: &mut Body<'_>, e: &Element, layout: &VertexLayout) -> Result<Cloud, PointCloudError> {
    let n = e.count as usize;
    // The capacity is bounded by the bytes present, never by the declared count alone.
    let cap = n.min(body.remaining() / e.min_size().max(1));
    let mut xyz = Vec::with_capacity(cap * 3);
    let mut rgb = layout.rgb.map(|_| Vec::with_capacity(cap * 3));
    let color_types = layout.rgb.map(|c| c.map(|i| scalar_of(e, i)));
    match (body.encoding, e.fixed_size()) {
        (Encoding::Little | Encoding::Big, Some(size)) => {
            if (n as u128) * (size as u128) > body.remaining() as u128 {
                return Err(truncated(format!(
                    "the header declares {n} vertices of {size} bytes ({} bytes) but {} bytes follow",
                    n as u128 * size as u128,
                    body.remaining()
                )));
            }
            let mut offsets = Vec::with_capacity(e.props.len());
            let mut off = 0;
            for p in &e.props {
                offsets.push(off);
                off += match p.kind {
                    Kind::Scalar(s) => s.size(),
                    Kind::List { .. } => 0,
                };
            }
            let big = body.encoding == Encoding::Big;
            // Decoders chosen once per field keep the per-point loop free of type dispatch.
            let coords = layout.xyz.map(|i| (offsets[i], decoder(scalar_of(e, i), big)));
            let colors = layout
                .rgb
                .zip(color_types)
                .map(|(cols, types)| [0, 1, 2].map(|a| (offsets[cols[a]], decoder(types[a], big), types[a])));
            let records = &body.data[body.pos..body.pos + n * size];
            let common = !big
                && layout.xyz.iter().all(|&i| scalar_of(e, i) == Scalar::F32)
                && color_types.is_none_or(|t| t.iter().all(|&s| s == Scalar::U8));
            if common {
                // float x y z (+ uchar colours), little-endian: most files; read without dispatch.
                let xyz_at = layout.xyz.map(|i| offsets[i]);
                let rgb_at = layout.rgb.map(|c| c.map(|i| offsets[i]));
                for rec in records.chunks_exact(size) {
                    for off in xyz_at {
                        xyz.push(f32::from_le_bytes([rec[off], rec[off + 1], rec[off + 2], rec[off + 3]]));
                    }
                    if let (Some(at), Some(out)) = (rgb_at, rgb.as_mut()) {
                        for off in at {
                            out.push(byte_color(rec[off]));
                        }
                    }
                }
            } else {
                for rec in records.chunks_exact(size) {
                    for (off, decode) in coords {
                        xyz.push(decode(&rec[off..]) as f32);
                    }
                    if let (Some(colors), Some(out)) = (colors, rgb.as_mut()) {
                        for (off, decode, ty) in colors {
                            out.push(to_color(decode(&rec[off..]), ty));
                        }
                    }
                }
            }
            body.pos += n * size;
        }
        _ => {
            let (mut values, mut list) = (Vec::new(), Vec::new());
            for r in 0..e.count {
                body.record(e, r, &mut values, &mut list)?;
                for a in 0..3 {
                    xyz.push(values[layout.xyz[a]] as f32);
                }
                if let (Some(cols), Some(types), Some(out)) = (layout.rgb, color_types, rgb.as_mut()) {
                    for a in 0..3 {
                        out.push(to_color(values[cols[a]], types[a]));
                    }
                }
            }
        }
    }
    Ok(Cloud { xyz, rgb })
}

fn read_faces(body: &mut Body<'_>, e: &Element, vertices: usize) -> Result<Vec<[u32; 3]>, PointCloudError> {
    let Some(list_at) = e
        .find(&["vertex_indices", "vertex_index"])
        .or_else(|| e.props.iter().position(|p| matches!(p.kind, Kind::List { .. })))
    else {
        return Err(malformed("the face element has no vertex index list"));
    };
    // `record` keeps the items of the first list; make sure that is the index list.
    if e.props[..list_at].iter().any(|p| matches!(p.kind, Kind::List { .. })) {
        return Err(malformed("the face element has a list before its vertex index list"));
    }
    if body.encoding != Encoding::Ascii
        && (e.count as u128) * (e.min_size() as u128) > body.remaining() as u128
    {
        return Err(truncated(format!(
            "the header declares {} faces but only {} bytes follow",
            e.count,
            body.remaining()
        )));
    }
    let cap = (e.count as usize).min(body.remaining() / 2 + 1);
    let mut triangles = Vec::with_capacity(cap);
    let (mut values, mut list) = (Vec::new(), Vec::new());
    let mut polygon = Vec::new();
    for r in 0..e.count {
        body.record(e, r, &mut values, &mut list)?;
        polygon.clear();
        for &v in &list {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < vertices) {
                return Err(malformed(format!(
                    "face {r} refers to vertex {v}, but there are {vertices} vertices"
                )));
            }
            polygon.push(v as u32);
        }
        fan(&polygon, &mut triangles);
    }
    Ok(triangles)
}

fn skip_element(body: &mut Body<'_>, e: &Element) -> Result<(), PointCloudError> {
    if body.encoding != Encoding::Ascii
        && let Some(size) = e.fixed_size()
    {
        let bytes = (e.count as u128) * (size as u128);
        if bytes > body.remaining() as u128 {
            return Err(truncated(format!("the data ends inside element {}", e.name)));
        }
        body.pos += bytes as usize;
        return Ok(());
    }
    let (mut values, mut list) = (Vec::new(), Vec::new());
    for r in 0..e.count {
        body.record(e, r, &mut values, &mut list)?;
    }
    Ok(())
}

/// Parses a PLY file.
pub(super) fn parse(data: &[u8], limits: &PointCloudLimits) -> Result<Parsed, PointCloudError> {
    let header = parse_header(data)?;
    let vertex_at = header
        .elements
        .iter()
        .position(|e| e.name == "vertex")
        .ok_or_else(|| malformed("there is no vertex element"))?;
    let vertex = &header.elements[vertex_at];
    check_points(vertex.count, limits)?;
    let layout = vertex_layout(vertex)?;
    let mut body = Body { data, pos: header.body, encoding: header.encoding };
    let mut cloud = None;
    let mut triangles = Vec::new();
    for e in &header.elements {
        if e.name == "vertex" && cloud.is_none() {
            cloud = Some(read_vertices(&mut body, e, &layout)?);
        } else if e.name == "face" {
            let Some(c) = &cloud else {
                return Err(malformed("faces come before the vertices"));
            };
            triangles = read_faces(&mut body, e, c.len())?;
            // Elements after the faces (edges, materials) are not needed.
            break;
        } else if cloud.is_some() {
            // Nothing after the vertices matters unless faces follow.
            if !header.elements.iter().any(|x| x.name == "face") {
                break;
            }
            skip_element(&mut body, e)?;
        } else {
            skip_element(&mut body, e)?;
        }
    }
    let cloud = cloud.unwrap_or_default();
    if triangles.is_empty() {
        Ok(Parsed::Points(cloud))
    } else {
        Ok(Parsed::Mesh(Mesh { vertices: cloud.xyz, colors: cloud.rgb, triangles }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(data: &[u8]) -> Cloud {
        match parse(data, &PointCloudLimits::default()).unwrap() {
            Parsed::Points(c) => c,
            Parsed::Mesh(_) => panic!("unexpected mesh"),
        }
    }

    #[test]
    fn ascii_with_colors_and_extras() {
        let data = b"ply\nformat ascii 1.0\ncomment hi\nelement vertex 2\nproperty float x\n\
property float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n\
property float intensity\nend_header\n1 2 3 255 0 51 9\n-1 0.5 1e3 0 0 0 9\n";
        let c = points(data);
        assert_eq!(c.xyz, vec![1.0, 2.0, 3.0, -1.0, 0.5, 1000.0]);
        assert_eq!(c.rgb, Some(vec![1.0, 0.0, 0.2, 0.0, 0.0, 0.0]));
    }

    #[test]
    fn binary_big_endian_doubles() {
        let mut data = b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty double x\n\
property double y\nproperty double z\nend_header\n"
            .to_vec();
        for v in [1.5f64, -2.0, 0.1] {
            data.extend(v.to_be_bytes());
        }
        let c = points(&data);
        assert_eq!(c.xyz, vec![1.5, -2.0, 0.1f64 as f32]);
        assert_eq!(c.rgb, None);
    }

    #[test]
    fn lying_header_is_an_error() {
        let mut data = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000\n\
property float x\nproperty float y\nproperty float z\nend_header\n"
            .to_vec();
        data.extend([0u8; 24]);
        let err = parse(&data, &PointCloudLimits::default()).err().unwrap();
        assert!(matches!(err, PointCloudError::Truncated { .. }), "{err}");
        let limits = PointCloudLimits { max_bytes: 1 << 20, max_points: 10 };
        let err = parse(&data, &limits).err().unwrap();
        assert!(matches!(err, PointCloudError::TooManyPoints { count: 1_000_000, .. }));
    }

    #[test]
    fn faces_make_a_mesh() {
        let data = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n\
property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n\
0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        match parse(data, &PointCloudLimits::default()).unwrap() {
            Parsed::Mesh(m) => assert_eq!(m.triangles, vec![[0, 1, 2], [0, 2, 3]]),
            Parsed::Points(_) => panic!("expected a mesh"),
        }
        let bad = b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n\
property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n\
0 0 0\n3 0 1 2\n";
        let err = parse(bad, &PointCloudLimits::default()).err().unwrap();
        assert!(matches!(err, PointCloudError::Malformed { .. }), "{err}");
    }
}
