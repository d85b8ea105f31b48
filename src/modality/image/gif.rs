//! First frame of a GIF, as Pillow's GifImagePlugin presents it.
//!
//! The `image` crate composites GIF frames into RGBA and turns the transparent index into
//! (0, 0, 0, 0). Pillow keeps the first frame as palette indices ("P", or "L" without a
//! palette), so `convert("RGB")` shows the palette colour of the transparent index, and pixels
//! the frame does not cover hold the transparent index if there is one, else index 0. We
//! decode indices with the `gif` crate and apply those rules.

use super::ImageError;
use super::resample::Rgb8;

fn gif_err(e: gif::DecodingError) -> ImageError {
    ImageError::Decode(e.to_string())
}

/// Decodes the first frame of a GIF into RGB like `Image.open(f).convert("RGB")`.
///
/// `check_size` is called with the canvas size before any pixel is decoded.
pub(crate) fn decode(
    bytes: &[u8],
    check_size: impl Fn(u32, u32) -> Result<(), ImageError>,
) -> Result<Rgb8, ImageError> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(bytes).map_err(gif_err)?;
    let (screen_w, screen_h) = (usize::from(decoder.width()), usize::from(decoder.height()));
    check_size(screen_w as u32, screen_h as u32)?;
    let global = decoder.global_palette().map(<[u8]>::to_vec);

    let Some(info) = decoder.next_frame_info().map_err(gif_err)? else {
        return Err(ImageError::Decode("image not found in GIF frame".into()));
    };
    let (left, top) = (usize::from(info.left), usize::from(info.top));
    let (fw, fh) = (usize::from(info.width), usize::from(info.height));
    let transparent = info.transparent;
    let palette = info.palette.clone().or(global);
    // Pillow grows the canvas when the first frame reaches past the logical screen.
    let width = screen_w.max(left + fw);
    let height = screen_h.max(top + fh);
    check_size(width as u32, height as u32)?;

    let mut frame = vec![0u8; decoder.buffer_size()];
    decoder.read_into_buffer(&mut frame).map_err(gif_err)?;
    let fill = transparent.unwrap_or(0);
    let mut indices = vec![fill; width * height];
    if fw > 0 {
        for (y, src) in frame.chunks_exact(fw).take(fh).enumerate() {
            let start = (top + y) * width + left;
            if let Some(dst) = indices.get_mut(start..start + fw) {
                dst.copy_from_slice(src);
            }
        }
    }
    let data = match palette {
        Some(p) => indices
            .iter()
            .flat_map(|&i| {
                let at = usize::from(i) * 3;
                match p.get(at..at + 3) {
                    Some(rgb) => [rgb[0], rgb[1], rgb[2]],
                    // An index past the palette's end (malformed file): black.
                    None => [0, 0, 0],
                }
            })
            .collect(),
        None => indices.iter().flat_map(|&i| [i, i, i]).collect(),
    };
    Ok(Rgb8 { width, height, data })
}
