//! Every format the reference's Pillow (13.0.0) opens, how bindery identifies it, and whether
//! bindery decodes it or refuses it by name.
//!
//! Identification follows Pillow's `Image.open`: the formats it loads first (BMP, GIF, JPEG,
//! PPM, PNG) are tried first, then the others in the order Pillow registers them, each with the
//! test of its plugin (`_accept`, or the header checks of `_open` where a plugin has no
//! `_accept`). The checks are written here because they must name exactly the formats Pillow
//! names, which no crate's format guessing does.

/// What bindery does with a format Pillow opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Decoded to the same RGB pixels as Pillow's `convert("RGB")`.
    Decoded,
    /// Refused with a message naming the format.
    Refused,
}

macro_rules! formats {
    ($($variant:ident = $name:literal, $support:ident;)*) => {
        /// A format Pillow opens, named as in `PIL.Image.OPEN`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum PilFormat {
            $(
                #[doc = concat!("Pillow's `", $name, "`.")]
                $variant,
            )*
        }

        impl PilFormat {
            /// Every format of `PIL.Image.OPEN` in Pillow 13.0.0.
            pub const ALL: &'static [PilFormat] = &[$(PilFormat::$variant),*];

            /// Pillow's name of the format.
            pub fn name(self) -> &'static str {
                match self {
                    $(PilFormat::$variant => $name,)*
                }
            }

            /// Whether bindery decodes the format or refuses it.
            pub fn support(self) -> Support {
                match self {
                    $(PilFormat::$variant => Support::$support,)*
                }
            }
        }
    };
}

formats! {
    Avif = "AVIF", Decoded;
    Blp = "BLP", Refused;
    Bmp = "BMP", Decoded;
    Bufr = "BUFR", Refused;
    Cur = "CUR", Refused;
    Dcx = "DCX", Refused;
    Dds = "DDS", Refused;
    Dib = "DIB", Refused;
    Eps = "EPS", Refused;
    Fits = "FITS", Refused;
    Fli = "FLI", Refused;
    Ftex = "FTEX", Refused;
    Gbr = "GBR", Refused;
    Gif = "GIF", Decoded;
    Grib = "GRIB", Refused;
    Hdf5 = "HDF5", Refused;
    Icns = "ICNS", Refused;
    Ico = "ICO", Decoded;
    Im = "IM", Refused;
    Imt = "IMT", Refused;
    Iptc = "IPTC", Refused;
    Jpeg = "JPEG", Decoded;
    Jpeg2000 = "JPEG2000", Refused;
    McIdas = "MCIDAS", Refused;
    Mpeg = "MPEG", Refused;
    Msp = "MSP", Refused;
    Pcd = "PCD", Refused;
    Pcx = "PCX", Refused;
    Pixar = "PIXAR", Refused;
    Png = "PNG", Decoded;
    Ppm = "PPM", Decoded;
    Psd = "PSD", Refused;
    Qoi = "QOI", Decoded;
    Sgi = "SGI", Refused;
    Spider = "SPIDER", Refused;
    Sun = "SUN", Refused;
    Tga = "TGA", Decoded;
    Tiff = "TIFF", Decoded;
    WebP = "WEBP", Decoded;
    Wmf = "WMF", Refused;
    Xbm = "XBM", Refused;
    Xpm = "XPM", Refused;
    XvThumb = "XVTHUMB", Refused;
}

fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The format Pillow's `Image.open` would identify `b` as, if any.
pub fn identify(b: &[u8]) -> Option<PilFormat> {
    use PilFormat as F;
    let starts = |p: &[u8]| b.starts_with(p);
    // Pillow's preloaded plugins, in its order.
    if starts(b"BM") {
        return Some(F::Bmp);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(F::Gif);
    }
    if starts(b"\xff\xd8\xff") {
        return Some(F::Jpeg);
    }
    if b.len() >= 2 && b[0] == b'P' && b"0123456fy".contains(&b[1]) {
        return Some(F::Ppm);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(F::Png);
    }
    // The others, in `Image.ID` order.
    let checks: &[(PilFormat, &dyn Fn() -> bool)] = &[
        (F::Avif, &|| {
            b.get(4..8) == Some(b"ftyp")
                && matches!(b.get(8..12), Some(b"avif" | b"avis" | b"mif1" | b"msf1"))
        }),
        (F::Blp, &|| starts(b"BLP1") || starts(b"BLP2")),
        (F::Dib, &|| dib_header(b)),
        (F::Bufr, &|| starts(b"BUFR") || starts(b"ZCZC")),
        // CurImagePlugin and IcoImagePlugin fail on a directory without entries.
        (F::Cur, &|| starts(b"\0\0\x02\0") && u16_le(b, 4).is_some_and(|n| n > 0)),
        (F::Pcx, &|| b.len() >= 2 && b[0] == 10 && [0, 2, 3, 5].contains(&b[1])),
        (F::Dcx, &|| u32_le(b, 0) == Some(0x3ADE_68B1)),
        (F::Dds, &|| starts(b"DDS ")),
        (F::Eps, &|| starts(b"%!PS") || u32_le(b, 0) == Some(0xC6D3_D0C5)),
        (F::Fits, &|| starts(b"SIMPLE")),
        (F::Fli, &|| {
            b.len() >= 128
                && matches!(u16_le(b, 4), Some(0xAF11 | 0xAF12))
                && matches!(u16_le(b, 14), Some(0 | 3))
                && b[20..22] == [0, 0]
                && b[42..80].iter().all(|&v| v == 0)
                && b[88..128].iter().all(|&v| v == 0)
        }),
        (F::Ftex, &|| starts(b"FTEX")),
        (F::Gbr, &|| {
            u32_be(b, 0).is_some_and(|size| size >= 20)
                && matches!(u32_be(b, 4), Some(1 | 2))
                && u32_be(b, 8).is_some_and(|w| w > 0)
                && u32_be(b, 12).is_some_and(|h| h > 0)
                && matches!(u32_be(b, 16), Some(1 | 4))
                && (u32_be(b, 4) == Some(1) || b.get(20..24) == Some(b"GIMP"))
        }),
        (F::Grib, &|| starts(b"GRIB") && b.get(7) == Some(&1)),
        (F::Hdf5, &|| starts(b"\x89HDF\r\n\x1a\n")),
        (F::Jpeg2000, &|| starts(b"\xff\x4f\xff\x51") || starts(b"\0\0\0\x0cjP  \r\n\x87\n")),
        (F::Icns, &|| starts(b"icns")),
        (F::Ico, &|| starts(b"\0\0\x01\0") && u16_le(b, 4).is_some_and(|n| n > 0)),
        // ImImagePlugin: "Key: value" lines, one of them the image type.
        (F::Im, &|| {
            let head = &b[..b.len().min(1000)];
            head[..head.len().min(100)].contains(&b'\n')
                && head.first().is_some_and(u8::is_ascii_alphabetic)
                && head.windows(11).any(|w| w == b"Image type:")
        }),
        // ImtImagePlugin: "width N", "height N" and "pixel n8" lines.
        (F::Imt, &|| {
            (starts(b"width ") || starts(b"height ") || starts(b"pixel "))
                && b[..b.len().min(100)].contains(&b'\n')
        }),
        // IptcImagePlugin: a sequence of 0x1C-tagged fields.
        (F::Iptc, &|| b.len() >= 5 && b[0] == 0x1C && [1, 2, 3, 4, 5, 6, 7, 8, 9, 240].contains(&b[1])),
        (F::McIdas, &|| b.len() >= 256 && starts(b"\0\0\0\0\0\0\0\x04")),
        (F::Mpeg, &|| starts(b"\0\0\x01\xb3")),
        (F::Tiff, &|| {
            [b"MM\0\x2a", b"II\x2a\0", b"MM\x2a\0", b"II\0\x2a", b"MM\0\x2b", b"II\x2b\0"]
                .iter()
                .any(|p| starts(*p))
        }),
        (F::Msp, &|| starts(b"DanM") || starts(b"LinS")),
        (F::Pcd, &|| b.len() >= 2048 + 1539 && b[2048..].starts_with(b"PCD_")),
        (F::Pixar, &|| starts(b"\x80\xe8\0\0")),
        (F::Psd, &|| starts(b"8BPS")),
        (F::Qoi, &|| starts(b"qoif")),
        (F::Sgi, &|| u16_be(b, 0) == Some(474)),
        (F::Spider, &|| spider_header(b)),
        (F::Sun, &|| u32_be(b, 0) == Some(0x59A6_6A95)),
        (F::Tga, &|| tga_header(b)),
        (F::WebP, &|| {
            starts(b"RIFF")
                && b.get(8..12) == Some(b"WEBP")
                && matches!(b.get(12..16), Some(b"VP8 " | b"VP8L" | b"VP8X"))
        }),
        // WmfImagePlugin: a placeable WMF, or an EMF (its signature at offset 40).
        (F::Wmf, &|| {
            starts(b"\xd7\xcd\xc6\x9a\0\0") || (starts(b"\x01\0\0\0") && b.get(40..44) == Some(b" EMF"))
        }),
        (F::Xpm, &|| starts(b"/* XPM */")),
        (F::Xbm, &|| starts(b"#define") || starts(b"\n#define") || starts(b"/*")),
        (F::XvThumb, &|| starts(b"P7 332")),
    ];
    checks.iter().find(|(_, accept)| accept()).map(|(format, _)| *format)
}

/// BmpImagePlugin's `_dib_accept` (a BITMAPINFOHEADER size) and the fields its opener rejects.
fn dib_header(b: &[u8]) -> bool {
    let Some(size) = u32_le(b, 0) else { return false };
    if ![12, 40, 52, 56, 64, 108, 124].contains(&size) {
        return false;
    }
    let (planes, bits) =
        if size == 12 { (u16_le(b, 8), u16_le(b, 10)) } else { (u16_le(b, 12), u16_le(b, 14)) };
    planes == Some(1) && matches!(bits, Some(1 | 2 | 4 | 8 | 16 | 24 | 32))
}

/// SpiderImagePlugin's `isSpiderHeader` on big-endian, then little-endian floats, with the
/// 2-D image form (`iform == 1`) its opener requires.
fn spider_header(b: &[u8]) -> bool {
    let Some(head) = b.get(..27 * 4) else { return false };
    let check = |read: fn([u8; 4]) -> f32| {
        // Pillow's indices start at 1.
        let h = |i: usize| {
            read([head[4 * (i - 1)], head[4 * (i - 1) + 1], head[4 * (i - 1) + 2], head[4 * (i - 1) + 3]])
        };
        let is_int = |v: f32| v.is_finite() && v.fract() == 0.0;
        [1, 2, 5, 12, 13, 22, 23].iter().all(|&i| is_int(h(i)))
            && h(5) == 1.0
            && h(22) == h(13) * h(23)
            && h(22) != 0.0
    };
    check(f32::from_be_bytes) || check(f32::from_le_bytes)
}

/// TgaImagePlugin's header checks (TGA has no signature).
fn tga_header(b: &[u8]) -> bool {
    let Some(h) = b.get(..18) else { return false };
    let (colormap, kind, depth) = (h[1], h[2], h[16]);
    let (w, hgt) = (u16::from_le_bytes([h[12], h[13]]), u16::from_le_bytes([h[14], h[15]]));
    colormap <= 1
        && w > 0
        && hgt > 0
        && [1, 8, 16, 24, 32].contains(&depth)
        && [1, 2, 3, 9, 10, 11].contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted_like_pillows_listing() {
        let names: Vec<_> = PilFormat::ALL.iter().map(|f| f.name()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn junk_and_formats_pillow_does_not_open_are_unknown() {
        assert_eq!(identify(b""), None);
        assert_eq!(identify(b"\x00\x01junk and more junk"), None);
        assert_eq!(identify(b"RIFF\x24\0\0\0WAVEfmt "), None);
        // OpenEXR and Radiance HDR: the image crate reads them, Pillow does not.
        assert_eq!(identify(b"\x76\x2f\x31\x01\x02\0\0\0"), None);
        assert_eq!(identify(b"#?RADIANCE\n"), None);
    }
}
