//! Decoding any supported container into planar `f32` samples with symphonia (Opus: libopus).
//!
//! The container is found from the bytes (symphonia's probe); a client's extension or MIME type
//! is passed along only as a hint. Samples come out as `f32` in `[-1, 1]`, scaled like
//! `torchaudio.load(normalize=True)` (integer PCM divided by `2^(bits-1)`).
//!
//! The reference loads audio through FFmpeg, so lossy streams are trimmed as FFmpeg 5.1 trims
//! them: MP3 by its LAME/Xing header and Vorbis by the Ogg granule positions (symphonia's
//! gapless decoding does the same), AAC and other MP4 tracks by the edit list or `iTunSMPB`
//! ([`super::mp4`]), Opus by its pre-skip and the container's end trimming ([`super::opus`]).
//!
//! Limits are enforced before the work they bound: the byte size before probing, the duration
//! from the container's frame count (when it declares one) before decoding, and again as a
//! running count while decoding, which stops at the first packet past the limit.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use symphonia::core::codecs::audio::AudioDecoder;
use symphonia::core::codecs::audio::well_known as codec;
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::well_known::{FORMAT_ID_ISOMP4, FORMAT_ID_MKV, FORMAT_ID_OGG};
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::opus::{OPUS_RATE, OpusDecoder, OpusHead, matroska_end_padding};
use super::resample::MAX_RATE;
use super::{AudioError, AudioLimits, mp4};

/// Lowest sample rate accepted (Hz); below it no filterbank frame would fit in a clip.
pub const MIN_RATE: u32 = 1000;

/// Decoded audio: one `f32` vector per channel, all of the same length.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Samples per channel, in the order the decoder delivers the channels (for stereo, left
    /// first).
    pub channels: Vec<Vec<f32>>,
}

impl DecodedAudio {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Decodes `bytes`, enforcing `limits`. `hint` is a file extension (`"mp3"`, `".wav"`) or a MIME
/// type (`"audio/flac"`); it never overrides what the bytes say.
///
/// Never panics: a panic inside a decoder is caught and reported as
/// [`AudioError::DecoderPanic`].
pub fn decode(bytes: &[u8], hint: Option<&str>, limits: &AudioLimits) -> Result<DecodedAudio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(AudioError::TooLarge { bytes: bytes.len(), max: limits.max_bytes });
    }
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, hint, limits))) {
        Ok(result) => result,
        Err(payload) => {
            let msg = crate::shared::panic::message(&*payload).unwrap_or("unknown panic");
            Err(AudioError::DecoderPanic(msg.to_owned()))
        }
    }
}

fn decode_inner(bytes: &[u8], hint: Option<&str>, limits: &AudioLimits) -> Result<DecodedAudio, AudioError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut probe_hint = Hint::new();
    if let Some(h) = hint.map(str::trim).filter(|h| !h.is_empty()) {
        if h.contains('/') {
            probe_hint.mime_type(h);
        } else {
            probe_hint.with_extension(h.trim_start_matches('.'));
        }
    }
    let mut format = symphonia::default::get_probe()
        .probe(&probe_hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(probe_error)?;

    let track = format
        .default_track(TrackType::Audio)
        .or_else(|| {
            format.tracks().iter().find(|t| t.codec_params.as_ref().and_then(|p| p.audio()).is_some())
        })
        .ok_or(AudioError::NoAudioTrack)?;
    let track_id = track.id;
    let params = track.codec_params.as_ref().and_then(|p| p.audio()).ok_or(AudioError::NoAudioTrack)?.clone();
    let declared_frames = track.num_frames;

    if let (Some(frames), Some(rate)) = (declared_frames, params.sample_rate.filter(|&r| r > 0)) {
        let seconds = frames as f64 / f64::from(rate);
        if seconds > limits.max_duration_secs {
            return Err(AudioError::TooLong { seconds, max: limits.max_duration_secs });
        }
    }

    let container = format.format_info().format;
    // MP4: FFmpeg's edit list (or iTunSMPB) trim, which symphonia does not apply.
    let mp4_trim = if container == FORMAT_ID_ISOMP4 {
        mp4::trim_for_track(bytes, track_id, params.codec == codec::CODEC_ID_AAC)
    } else {
        None
    };
    // Samples dropped from the start and the end of the whole decoded stream, on top of the
    // per-packet trims the demuxer marks.
    let mut head_trim = mp4_trim.map_or(0, |t| t.skip);
    // FFmpeg 5.1 does not trim the end of an Ogg Vorbis stream whose audio fits on one page (its
    // first audio page is also its last); it still drops the start the packets mark. Decoding
    // without symphonia's gapless trimming and dropping the marked start here does the same.
    let keep_ogg_end = container == FORMAT_ID_OGG
        && params.codec == codec::CODEC_ID_VORBIS
        && ogg_first_audio_page_is_last(bytes, track_id);
    let mut tail_trim = 0u64;
    let mut decoder = if params.codec == codec::CODEC_ID_OPUS {
        let fallback_channels = params.channels.as_ref().map_or(0, |c| c.count());
        let head = OpusHead::from_extra_data(params.extra_data.as_deref(), fallback_channels)?;
        // The pre-skip is the decoder's to drop (symphonia only records it as the track's
        // delay); the end trim is marked on the packets by symphonia's Ogg reader, and read here
        // for Matroska.
        head_trim = head_trim.saturating_add(u64::from(head.pre_skip));
        if container == FORMAT_ID_MKV {
            tail_trim = matroska_end_padding(bytes, u64::from(track_id), OPUS_RATE).unwrap_or(0);
        }
        Decoder::Opus(OpusDecoder::new(&head)?)
    } else {
        Decoder::Symphonia(
            symphonia::default::get_codecs()
                .make_audio_decoder(&params, &AudioDecoderOptions::default().gapless(!keep_ogg_end))
                .map_err(|e| AudioError::UnsupportedCodec(e.to_string()))?,
        )
    };

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut frames_total: usize = 0;
    let mut hit_eof = false;
    let s16_layout = s16_interleaved(&params);
    // Only samples from symphonia's decoders (float PCM, lossy codecs) can be NaN or infinite.
    let mut may_be_non_finite = false;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                hit_eof = true;
                break;
            }
            Err(SymphoniaError::ResetRequired) => {
                return Err(AudioError::UnsupportedCodec(
                    "the stream changes its track layout mid-file (chained streams)".into(),
                ));
            }
            Err(e) => return Err(AudioError::Corrupt(format!("demuxing failed: {e}"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        // FFmpeg decodes up to the packet that reaches the edit's end, and keeps it whole.
        let last_in_edit = mp4_trim.and_then(|t| t.end).is_some_and(|end| {
            let dur = i64::try_from(packet.dur.get()).unwrap_or(i64::MAX);
            packet.pts.get().saturating_add(dur) >= i64::try_from(end).unwrap_or(i64::MAX)
        });
        // 16-bit PCM is by far the most common input; its samples are converted here straight
        // from the packet (same scaling as symphonia's: v / 32768), skipping a per-sample pass.
        if let Some((planes, rate)) =
            s16_layout.filter(|_| packet.trim_start.get() == 0 && packet.trim_end.get() == 0)
        {
            let frames = packet.data.len() / (2 * planes);
            if frames == 0 {
                continue;
            }
            append(
                &mut channels,
                &mut sample_rate,
                &mut frames_total,
                frames,
                planes,
                rate,
                declared_frames,
                limits,
            )?;
            extend_s16(&mut channels, &packet.data[..frames * 2 * planes]);
            if last_in_edit {
                break;
            }
            continue;
        }
        let decoder = match &mut decoder {
            Decoder::Symphonia(d) => d,
            Decoder::Opus(opus) => {
                let planes = opus.channels();
                let samples = opus.decode(&packet.data)?;
                let frames = samples.len() / planes;
                let start = usize::try_from(packet.trim_start.get()).unwrap_or(usize::MAX).min(frames);
                let end =
                    frames - usize::try_from(packet.trim_end.get()).unwrap_or(usize::MAX).min(frames - start);
                if end > start {
                    append(
                        &mut channels,
                        &mut sample_rate,
                        &mut frames_total,
                        end - start,
                        planes,
                        OPUS_RATE,
                        declared_frames,
                        limits,
                    )?;
                    for (c, channel) in channels.iter_mut().enumerate() {
                        channel.extend(samples[start * planes..end * planes].iter().skip(c).step_by(planes));
                    }
                    may_be_non_finite = true;
                }
                if last_in_edit {
                    break;
                }
                continue;
            }
        };
        if keep_ogg_end {
            head_trim = head_trim.saturating_add(packet.trim_start.get());
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                hit_eof = true;
                break;
            }
            Err(e) => {
                return Err(AudioError::Corrupt(format!("decoding failed after {frames_total} frames: {e}")));
            }
        };
        let frames = buf.frames();
        if frames == 0 {
            continue;
        }
        let (rate, planes) = (buf.spec().rate(), buf.num_planes());
        append(
            &mut channels,
            &mut sample_rate,
            &mut frames_total,
            frames,
            planes,
            rate,
            declared_frames,
            limits,
        )?;
        let mut tails: Vec<&mut [f32]> = channels
            .iter_mut()
            .map(|c| {
                let old = c.len();
                c.resize(old + frames, 0.0);
                &mut c[old..]
            })
            .collect();
        buf.copy_to_slice_planar::<f32, _>(&mut tails);
        may_be_non_finite = true;
        if last_in_edit {
            break;
        }
    }

    if frames_total == 0 {
        return Err(match declared_frames.filter(|&d| d > 0) {
            // PCM cannot fail to decode, so missing frames are missing bytes.
            Some(d) if exact_pcm(params.codec) => AudioError::Truncated(format!(
                "the container declares {d} frames but the data ends before the first one"
            )),
            Some(d) => AudioError::Corrupt(format!(
                "the container declares {d} frames but no frame could be decoded"
            )),
            None if hit_eof => AudioError::Truncated("the file ends before the first complete packet".into()),
            None => AudioError::NoSamples,
        });
    }
    if let Some(declared) = declared_frames {
        let short = (frames_total as u64) < declared;
        if short && (hit_eof || exact_frame_count(params.codec)) {
            return Err(AudioError::Truncated(format!(
                "the container declares {declared} frames but only {frames_total} could be \
                 decoded"
            )));
        }
    }
    // Without a declared length (streamed WAV, MP3 without an info header) the end of the bytes
    // is the end of the audio, even when it cuts the last packet short.
    if head_trim > 0 || tail_trim > 0 {
        let head = usize::try_from(head_trim).unwrap_or(usize::MAX).min(frames_total);
        let tail = usize::try_from(tail_trim).unwrap_or(usize::MAX).min(frames_total - head);
        for channel in &mut channels {
            channel.truncate(frames_total - tail);
            channel.drain(..head);
        }
        frames_total -= head + tail;
        if frames_total == 0 {
            return Err(AudioError::NoSamples);
        }
    }
    if may_be_non_finite && !channels.iter().all(|c| all_finite(c)) {
        // Float PCM can carry NaN or infinity; the filterbank would turn them into NaN features.
        return Err(AudioError::InvalidStream("the audio contains NaN or infinite samples".into()));
    }
    Ok(DecodedAudio { sample_rate, channels })
}

/// Whether the first page of Ogg stream `serial` that completes audio (granule position above
/// 0; header pages have 0) is marked end-of-stream. Stops at the first malformed page.
fn ogg_first_audio_page_is_last(bytes: &[u8], serial: u32) -> bool {
    let mut pos = 0usize;
    while let Some(page) = bytes.get(pos..).filter(|p| p.len() >= 27 && p.starts_with(b"OggS")) {
        let segments = usize::from(page[26]);
        let Some(lacing) = page.get(27..27 + segments) else { return false };
        let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let flags = page[5];
        let granule =
            i64::from_le_bytes([page[6], page[7], page[8], page[9], page[10], page[11], page[12], page[13]]);
        let page_serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
        if page_serial == serial && granule > 0 {
            return flags & 0x04 != 0;
        }
        pos += 27 + segments + body;
    }
    false
}

/// symphonia's decoder for every codec it decodes; libopus for Opus.
enum Decoder {
    Symphonia(Box<dyn AudioDecoder>),
    Opus(OpusDecoder),
}

/// Channels and rate of plain interleaved 16-bit little-endian PCM, the layout converted
/// without symphonia's decoder; `None` for anything else (including 16-bit containers holding
/// fewer valid bits, which symphonia's decoder rescales).
fn s16_interleaved(params: &AudioCodecParameters) -> Option<(usize, u32)> {
    if params.codec != codec::CODEC_ID_PCM_S16LE
        || params.bits_per_sample.is_some_and(|b| b != 16)
        || params.bits_per_coded_sample.is_some_and(|b| b != 16)
    {
        return None;
    }
    let planes = params.channels.as_ref()?.count();
    (planes > 0).then_some((planes, params.sample_rate?))
}

/// Accounts for `frames` more samples per channel: checks the layout is unchanged and the
/// running duration is within the limit, and creates the channels on the first call.
#[allow(clippy::too_many_arguments)]
fn append(
    channels: &mut Vec<Vec<f32>>,
    sample_rate: &mut u32,
    frames_total: &mut usize,
    frames: usize,
    planes: usize,
    rate: u32,
    declared_frames: Option<u64>,
    limits: &AudioLimits,
) -> Result<(), AudioError> {
    if channels.is_empty() {
        if planes == 0 {
            return Err(AudioError::InvalidStream("the stream has no channels".into()));
        }
        *sample_rate = rate;
        check_rate(rate)?;
        // Reserve what the container declares (within the limit) to avoid regrowing.
        let cap =
            declared_frames.map_or(0, |d| d.min((limits.max_duration_secs * f64::from(rate)) as u64 + 1));
        *channels = (0..planes).map(|_| Vec::with_capacity(usize::try_from(cap).unwrap_or(0))).collect();
    } else if planes != channels.len() || rate != *sample_rate {
        return Err(AudioError::InvalidStream(format!(
            "the stream changes from {} channels at {sample_rate} Hz to {planes} channels at {rate} Hz mid-file",
            channels.len()
        )));
    }
    *frames_total += frames;
    let seconds = *frames_total as f64 / f64::from(rate);
    if seconds > limits.max_duration_secs {
        return Err(AudioError::TooLong { seconds, max: limits.max_duration_secs });
    }
    Ok(())
}

/// Appends interleaved 16-bit little-endian frames (`data` holds whole frames) to `channels`,
/// one sample per channel per frame. Mono and stereo get fixed-size frames so the conversion
/// compiles to vector code; it writes each sample once (no zero fill first).
fn extend_s16(channels: &mut [Vec<f32>], data: &[u8]) {
    const SCALE: f32 = 1.0 / 32768.0;
    let sample = |lo: u8, hi: u8| f32::from(i16::from_le_bytes([lo, hi])) * SCALE;
    match channels {
        [mono] => mono.extend(data.as_chunks::<2>().0.iter().map(|&[lo, hi]| sample(lo, hi))),
        [left, right] => {
            let frames = data.as_chunks::<4>().0;
            left.extend(frames.iter().map(|f| sample(f[0], f[1])));
            right.extend(frames.iter().map(|f| sample(f[2], f[3])));
        }
        _ => {
            let stride = 2 * channels.len();
            for (c, channel) in channels.iter_mut().enumerate() {
                channel.extend(data.chunks_exact(stride).map(|f| sample(f[2 * c], f[2 * c + 1])));
            }
        }
    }
}

/// Whether every sample is finite; branch-free per block so it vectorises.
fn all_finite(samples: &[f32]) -> bool {
    samples.chunks(256).all(|block| block.iter().fold(true, |ok, v| ok & v.is_finite()))
}

/// Sorts a failure to open the container: nothing recognised, a recognised container with
/// something unsupported or damaged in its header, or a header cut short.
fn probe_error(e: SymphoniaError) -> AudioError {
    match e {
        // The probe's own "no reader matched" outcome; every other error comes from a reader
        // that recognised its format and then failed on the header.
        SymphoniaError::Unsupported(what) if what.starts_with("core (probe)") => {
            AudioError::UnrecognizedFormat(
                "no supported container (WAV, FLAC, MP3, OGG, MP4/M4A, AIFF, CAF, MKV/WebM, ADTS) \
                 was found in the data"
                    .into(),
            )
        }
        SymphoniaError::Unsupported(what) => AudioError::UnsupportedCodec(what.to_owned()),
        SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated("the file ends inside the container header".into())
        }
        SymphoniaError::IoError(io) => AudioError::Corrupt(format!("reading the header: {io}")),
        other => AudioError::Corrupt(format!("malformed container header: {other}")),
    }
}

fn check_rate(rate: u32) -> Result<(), AudioError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) { Ok(()) } else { Err(AudioError::UnsupportedSampleRate(rate)) }
}

/// Codecs whose container frame count is exact (no encoder delay or estimate), so decoding
/// fewer frames than declared can only mean the file was cut.
fn exact_frame_count(id: AudioCodecId) -> bool {
    exact_pcm(id) || id == codec::CODEC_ID_FLAC || id == codec::CODEC_ID_ALAC
}

fn exact_pcm(id: AudioCodecId) -> bool {
    PCM_CODECS.contains(&id)
}

/// Every PCM variant symphonia knows (integer, float, A-law, mu-law).
const PCM_CODECS: [AudioCodecId; 38] = [
    codec::CODEC_ID_PCM_S32LE,
    codec::CODEC_ID_PCM_S32LE_PLANAR,
    codec::CODEC_ID_PCM_S32BE,
    codec::CODEC_ID_PCM_S32BE_PLANAR,
    codec::CODEC_ID_PCM_S24LE,
    codec::CODEC_ID_PCM_S24LE_PLANAR,
    codec::CODEC_ID_PCM_S24BE,
    codec::CODEC_ID_PCM_S24BE_PLANAR,
    codec::CODEC_ID_PCM_S16LE,
    codec::CODEC_ID_PCM_S16LE_PLANAR,
    codec::CODEC_ID_PCM_S16BE,
    codec::CODEC_ID_PCM_S16BE_PLANAR,
    codec::CODEC_ID_PCM_S8,
    codec::CODEC_ID_PCM_S8_PLANAR,
    codec::CODEC_ID_PCM_U32LE,
    codec::CODEC_ID_PCM_U32LE_PLANAR,
    codec::CODEC_ID_PCM_U32BE,
    codec::CODEC_ID_PCM_U32BE_PLANAR,
    codec::CODEC_ID_PCM_U24LE,
    codec::CODEC_ID_PCM_U24LE_PLANAR,
    codec::CODEC_ID_PCM_U24BE,
    codec::CODEC_ID_PCM_U24BE_PLANAR,
    codec::CODEC_ID_PCM_U16LE,
    codec::CODEC_ID_PCM_U16LE_PLANAR,
    codec::CODEC_ID_PCM_U16BE,
    codec::CODEC_ID_PCM_U16BE_PLANAR,
    codec::CODEC_ID_PCM_U8,
    codec::CODEC_ID_PCM_U8_PLANAR,
    codec::CODEC_ID_PCM_F32LE,
    codec::CODEC_ID_PCM_F32LE_PLANAR,
    codec::CODEC_ID_PCM_F32BE,
    codec::CODEC_ID_PCM_F32BE_PLANAR,
    codec::CODEC_ID_PCM_F64LE,
    codec::CODEC_ID_PCM_F64LE_PLANAR,
    codec::CODEC_ID_PCM_F64BE,
    codec::CODEC_ID_PCM_F64BE_PLANAR,
    codec::CODEC_ID_PCM_ALAW,
    codec::CODEC_ID_PCM_MULAW,
];
