//! Opus, which symphonia 0.6 demuxes (Ogg, Matroska/WebM) but cannot decode, through libopus.
//!
//! The reference decodes with FFmpeg, which always outputs Opus at 48 kHz (whatever input rate
//! the header records), drops the header's pre-skip from the start and applies its output gain.
//! symphonia records the pre-skip only as the track's delay, so the caller drops it. The end is
//! trimmed by the container: in Ogg from the last page's granule position (symphonia's Ogg reader
//! marks it on the packets, as FFmpeg's does), in Matroska/WebM by the last block's
//! `DiscardPadding`, which symphonia parses but does not expose, so [`matroska_end_padding`]
//! reads it.

use audiopus::coder::Decoder;
use audiopus::packet::Packet;
use audiopus::{Channels, MutSignals, SampleRate};

use super::AudioError;

/// The only rate FFmpeg (and libopus at full quality) decodes Opus at.
pub const OPUS_RATE: u32 = 48_000;

/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_FRAMES: usize = 5760;

/// What the `OpusHead` identification header says about decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpusHead {
    /// Output channels (1 or 2; more needs a multistream decoder, not supported).
    pub channels: usize,
    /// Samples (at 48 kHz) to drop from the start.
    pub pre_skip: u16,
    /// Output gain in Q7.8 dB.
    pub gain: i16,
}

impl OpusHead {
    /// Reads the header from a codec's extra data (Ogg's first packet, Matroska's
    /// `CodecPrivate`); without one, `fallback_channels` from the container and no pre-skip, as
    /// FFmpeg does.
    pub fn from_extra_data(extra: Option<&[u8]>, fallback_channels: usize) -> Result<Self, AudioError> {
        let Some(head) = extra.filter(|e| e.starts_with(b"OpusHead")) else {
            return check_channels(Self { channels: fallback_channels, pre_skip: 0, gain: 0 });
        };
        let field = |at: usize| head.get(at..at + 2).map(|b| [b[0], b[1]]);
        let (Some(&channels), Some(pre_skip), Some(gain), Some(&family)) =
            (head.get(9), field(10), field(16), head.get(18))
        else {
            return Err(AudioError::Corrupt("the Opus header is shorter than 19 bytes".into()));
        };
        let channels = usize::from(channels);
        // Family 1 with one or two channels is one stream, the same as family 0; anything else
        // needs the multistream API.
        let single_stream = family == 0
            || (matches!(channels, 1 | 2)
                && head.get(19) == Some(&1)
                && head.get(20).map(|&c| usize::from(c)) == Some(channels - 1));
        if !single_stream {
            return Err(AudioError::UnsupportedCodec(format!(
                "Opus with channel mapping family {family} and {channels} channels (multistream)"
            )));
        }
        check_channels(Self {
            channels,
            pre_skip: u16::from_le_bytes(pre_skip),
            gain: i16::from_le_bytes(gain),
        })
    }
}

fn check_channels(head: OpusHead) -> Result<OpusHead, AudioError> {
    match head.channels {
        1 | 2 => Ok(head),
        0 => Err(AudioError::InvalidStream("the Opus stream has no channels".into())),
        n => Err(AudioError::UnsupportedCodec(format!("Opus with {n} channels (multistream)"))),
    }
}

/// A libopus decoder at 48 kHz with the header's gain applied, giving what FFmpeg's `libopus`
/// decoder gives: FFmpeg asks libopus for 16-bit samples (its float output is only used when a
/// caller requests `flt`, which the reference's `ffmpeg` command line does not) and sets the gain
/// inside libopus (`OPUS_SET_GAIN`), so the samples are libopus's int16 output over 32768.
pub struct OpusDecoder {
    decoder: Decoder,
    channels: usize,
    pcm: Vec<i16>,
    interleaved: Vec<f32>,
}

impl OpusDecoder {
    /// A decoder for the stream `head` describes.
    pub fn new(head: &OpusHead) -> Result<Self, AudioError> {
        let channels = if head.channels == 2 { Channels::Stereo } else { Channels::Mono };
        let decoder = Decoder::new(SampleRate::Hz48000, channels)
            .map_err(|e| AudioError::UnsupportedCodec(format!("libopus: {e}")))?;
        if head.gain != 0 {
            decoder
                .set_gain(i32::from(head.gain))
                .map_err(|e| AudioError::InvalidStream(format!("Opus output gain {}: {e}", head.gain)))?;
        }
        Ok(Self {
            decoder,
            channels: head.channels,
            pcm: vec![0; MAX_PACKET_FRAMES * head.channels],
            interleaved: vec![0.0; MAX_PACKET_FRAMES * head.channels],
        })
    }

    /// Output channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decodes one packet; returns its interleaved samples (empty for an empty packet).
    pub fn decode(&mut self, data: &[u8]) -> Result<&[f32], AudioError> {
        if data.is_empty() {
            return Ok(&[]);
        }
        let packet = Packet::try_from(data).map_err(|e| AudioError::Corrupt(format!("Opus packet: {e}")))?;
        let out = MutSignals::try_from(&mut self.pcm[..])
            .map_err(|e| AudioError::Corrupt(format!("Opus output buffer: {e}")))?;
        let frames = self
            .decoder
            .decode(Some(packet), out, false)
            .map_err(|e| AudioError::Corrupt(format!("Opus decoding failed: {e}")))?;
        let len = (frames * self.channels).min(self.pcm.len());
        // libswresample's s16 -> flt conversion.
        for (f, &i) in self.interleaved[..len].iter_mut().zip(&self.pcm[..len]) {
            *f = f32::from(i) / 32768.0;
        }
        Ok(&self.interleaved[..len])
    }
}

// Matroska element IDs (with their length markers, as written).
const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const SIMPLE_BLOCK: u32 = 0xA3;
const DISCARD_PADDING: u32 = 0x75A2;

/// Samples (at `rate`) that the last block of track `track` asks to discard from its end
/// (`BlockGroup/DiscardPadding`, in nanoseconds); `None` when there is none or the file cannot
/// be walked. FFmpeg 5.1 honours the element on any block; encoders write it on the last one
/// only, and that is the only one read here.
pub fn matroska_end_padding(bytes: &[u8], track: u64, rate: u32) -> Option<u64> {
    let mut pos = 0usize;
    // The last block of the track seen so far: its padding, if any.
    let mut last: Option<Option<i64>> = None;
    // The open block group: where it ends, whether its block is the track's, its padding.
    let mut group: Option<(usize, bool, Option<i64>)> = None;
    while pos < bytes.len() {
        if let Some((end, is_track, padding)) = group
            && pos >= end
        {
            if is_track {
                last = Some(padding);
            }
            group = None;
        }
        let (id, id_len) = vint(&bytes[pos..], true)?;
        let (size, size_len) = vint(bytes.get(pos + id_len..)?, false)?;
        let body = pos + id_len + size_len;
        // All ones: unknown size (live streams), only usable for masters that are descended.
        let unknown = size == (1u64 << (7 * size_len)) - 1;
        let end = if unknown {
            bytes.len()
        } else {
            body.checked_add(usize::try_from(size).ok()?)?.min(bytes.len())
        };
        match u32::try_from(id).ok()? {
            SEGMENT | CLUSTER => {
                pos = body;
                continue;
            }
            BLOCK_GROUP => {
                if let Some((_, true, padding)) = group {
                    last = Some(padding);
                }
                group = Some((end, false, None));
                pos = body;
                continue;
            }
            BLOCK => {
                let is_track = vint(bytes.get(body..end)?, false).map(|(n, _)| n) == Some(track);
                if let Some(g) = group.as_mut() {
                    g.1 = is_track;
                }
            }
            SIMPLE_BLOCK if vint(bytes.get(body..end)?, false).map(|(n, _)| n) == Some(track) => {
                last = Some(None);
            }
            DISCARD_PADDING => {
                let value = bytes.get(body..end)?;
                if value.len() > 8 {
                    return None;
                }
                // Big-endian two's complement of 1..=8 bytes.
                let mut v: i64 = if value.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
                for &b in value {
                    v = (v << 8) | i64::from(b);
                }
                if let Some(g) = group.as_mut() {
                    g.2 = Some(v);
                }
            }
            _ if unknown => return None,
            _ => {}
        }
        pos = end;
    }
    if let Some((_, true, padding)) = group {
        last = Some(padding);
    }
    let ns = last.flatten().filter(|&v| v > 0)?;
    // av_rescale_q(ns, 1/1e9, 1/rate), rounded to nearest.
    let samples = (i128::from(ns) * i128::from(rate) + 500_000_000) / 1_000_000_000;
    u64::try_from(samples).ok()
}

/// An EBML variable-length integer at the start of `data`: its value (with the length marker
/// kept for IDs, removed for sizes and track numbers) and its length in bytes.
fn vint(data: &[u8], keep_marker: bool) -> Option<(u64, usize)> {
    let first = *data.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut value = if keep_marker { u64::from(first) } else { u64::from(first) & (0xFF >> len) };
    for &b in data.get(1..len)? {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.push(0x01); // an 8-byte size: marker byte, then 7 bytes
        out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out
    }

    fn head(channels: u8, pre_skip: u16, gain: i16, family: u8) -> Vec<u8> {
        let mut h = b"OpusHead\x01".to_vec();
        h.push(channels);
        h.extend_from_slice(&pre_skip.to_le_bytes());
        h.extend_from_slice(&48000u32.to_le_bytes());
        h.extend_from_slice(&gain.to_le_bytes());
        h.push(family);
        h
    }

    #[test]
    fn head_fields_and_refusals() {
        let h = OpusHead::from_extra_data(Some(&head(2, 312, -256, 0)), 1).unwrap();
        assert_eq!(h, OpusHead { channels: 2, pre_skip: 312, gain: -256 });
        let mut fam1 = head(1, 312, 0, 1);
        fam1.extend_from_slice(&[1, 0, 0]);
        assert_eq!(OpusHead::from_extra_data(Some(&fam1), 1).unwrap().channels, 1);
        assert!(matches!(
            OpusHead::from_extra_data(Some(&head(6, 312, 0, 1)), 6),
            Err(AudioError::UnsupportedCodec(_))
        ));
        assert!(matches!(
            OpusHead::from_extra_data(Some(b"OpusHead\x01\x02"), 1),
            Err(AudioError::Corrupt(_))
        ));
        assert_eq!(OpusHead::from_extra_data(None, 2).unwrap().pre_skip, 0);
    }

    #[test]
    fn discard_padding_of_the_last_block_of_the_track() {
        let block = |track: u8| element(&[0xA1], &[0x80 | track, 0, 0, 0, 0xFC]);
        let padding = element(&[0x75, 0xA2], &6_500_000i64.to_be_bytes()[5..]);
        let mut cluster = element(&[0xA3], &[0x81, 0, 0, 0x80, 0xFC]);
        cluster.extend(element(&[0xA0], &[block(1), padding.clone()].concat()));
        cluster.extend(element(&[0xA0], &[padding, block(2)].concat()));
        let file = element(&[0x18, 0x53, 0x80, 0x67], &element(&[0x1F, 0x43, 0xB6, 0x75], &cluster));
        assert_eq!(matroska_end_padding(&file, 1, 48000), Some(312));
        assert_eq!(matroska_end_padding(&file, 2, 48000), Some(312), "padding before the block");
        assert_eq!(matroska_end_padding(&file, 3, 48000), None);
        for cut in 0..file.len() {
            let _ = matroska_end_padding(&file[..cut], 1, 48000);
        }
    }

    #[test]
    fn decoder_turns_a_silent_packet_into_48k_samples() {
        let mut d = OpusDecoder::new(&OpusHead { channels: 1, pre_skip: 0, gain: 0 }).unwrap();
        // TOC 0xF8: CELT fullband 20 ms, one frame; a 1-byte frame body decodes as silence.
        let out = d.decode(&[0xF8, 0xFF, 0xFE]).unwrap();
        assert_eq!(out.len(), 960);
        assert!(d.decode(&[]).unwrap().is_empty());
    }
}
