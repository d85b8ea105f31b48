//! A video's sound track, decoded with FFmpeg into what the audio path's decoders produce:
//! `f32` samples per channel at the track's own rate, integer formats scaled by `2^(bits-1)`
//! (swresample's conversion to float, the same scaling as `torchaudio.load`). Resampling, clips
//! and filterbanks are then the audio pipeline's own.
//!
//! libavcodec drops the samples the container marks as priming or padding (MP4 edit lists, WebM
//! codec delay), as `ffmpeg -i video -vn track.wav` does, so the track equals that extraction.

use std::ffi::c_int;

use ff::ffi;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ff::software::resampling;
use ffmpeg_next as ff;

use super::decode::{Demuxed, describe};
use super::{VideoError, VideoLimits};
use crate::modality::audio::AudioLimits;
use crate::modality::audio::decode::DecodedAudio;

/// Decodes the best audio stream of the video in `data` (FFmpeg's `av_find_best_stream`, as
/// `ffmpeg -vn` picks it), bounded by the audio duration limit and the video decode time limit.
pub fn decode_audio_track(
    data: &[u8],
    limits: &VideoLimits,
    audio_limits: &AudioLimits,
) -> Result<DecodedAudio, VideoError> {
    let mut video = Demuxed::open_container(data, limits)?;
    let started = std::time::Instant::now();
    let input = video.input()?;
    // SAFETY: the context is open; find_stream_info reads packets through our IO.
    let ret = unsafe { ffi::avformat_find_stream_info(input.as_mut_ptr(), std::ptr::null_mut()) };
    if ret < 0 {
        return Err(VideoError::Corrupt(describe(ret)));
    }
    let stream = input.streams().best(ff::media::Type::Audio).ok_or(VideoError::NoAudioTrack)?;
    let index = stream.index();
    let context = ff::codec::Context::from_parameters(stream.parameters())
        .map_err(|e| VideoError::Internal(e.to_string()))?;
    let mut decoder =
        context.decoder().audio().map_err(|e| VideoError::UnsupportedAudioCodec(e.to_string()))?;
    let mut track =
        Track { rate: 0, channels: Vec::new(), converter: None, max_seconds: audio_limits.max_duration_secs };
    let mut frame = ff::frame::Audio::empty();
    let mut packet = ff::Packet::empty();
    loop {
        let eof = match packet.read(input) {
            Ok(()) if packet.stream() == index => {
                // A packet the decoder refuses is skipped, as FFmpeg's tools do.
                let _ = decoder.send_packet(&packet);
                false
            }
            Ok(()) => continue,
            Err(ff::Error::Eof) => {
                let _ = decoder.send_eof();
                true
            }
            Err(e) => return Err(VideoError::Corrupt(e.to_string())),
        };
        while decoder.receive_frame(&mut frame).is_ok() {
            track.push(&frame)?;
        }
        if eof {
            break;
        }
        if started.elapsed() > limits.max_decode_time() {
            return Err(VideoError::DecodeTimeout { max_ms: limits.max_decode_ms });
        }
    }
    if track.channels.first().is_none_or(Vec::is_empty) {
        return Err(VideoError::NoAudioTrack);
    }
    Ok(DecodedAudio { sample_rate: track.rate, channels: track.channels })
}

/// The samples decoded so far, and the converter for decoders that give another format than
/// planar float.
struct Track {
    rate: u32,
    channels: Vec<Vec<f32>>,
    converter: Option<(Sample, resampling::Context)>,
    max_seconds: f64,
}

const PLANAR_F32: Sample = Sample::F32(SampleType::Planar);

impl Track {
    fn push(&mut self, frame: &ff::frame::Audio) -> Result<(), VideoError> {
        let (rate, count) = (frame.rate(), usize::from(frame.channels()));
        if rate == 0 || count == 0 {
            return Err(VideoError::Corrupt("an audio frame has no sample rate or no channels".into()));
        }
        if self.channels.is_empty() {
            self.rate = rate;
            self.channels = vec![Vec::new(); count];
        } else if rate != self.rate || count != self.channels.len() {
            return Err(VideoError::Corrupt(format!(
                "the sound track changes from {} Hz, {} channels to {rate} Hz, {count} channels",
                self.rate,
                self.channels.len()
            )));
        }
        if frame.format() == PLANAR_F32 {
            self.append(frame);
        } else {
            self.convert(frame)?;
        }
        let seconds = self.channels[0].len() as f64 / f64::from(self.rate);
        if seconds > self.max_seconds {
            return Err(VideoError::AudioTrackTooLong { seconds, max: self.max_seconds });
        }
        Ok(())
    }

    /// Appends a planar float frame with as many channels as the track.
    fn append(&mut self, frame: &ff::frame::Audio) {
        let samples = frame.samples();
        for (index, channel) in self.channels.iter_mut().enumerate() {
            // SAFETY: a planar float frame holds one plane of `samples` f32 per channel.
            let plane = unsafe {
                let data = (*frame.as_ptr()).extended_data;
                std::slice::from_raw_parts(*data.add(index) as *const f32, samples)
            };
            channel.extend_from_slice(plane);
        }
    }

    /// Appends `frame` converted to planar float at the same rate and layout (swresample's
    /// format conversion, fed the frame's planes directly: the frame may declare no layout).
    fn convert(&mut self, frame: &ff::frame::Audio) -> Result<(), VideoError> {
        let format = frame.format();
        if !matches!(&self.converter, Some((f, _)) if *f == format) {
            let layout = ff::ChannelLayout::default(self.channels.len() as c_int);
            let context = resampling::Context::get(format, layout, self.rate, PLANAR_F32, layout, self.rate)
                .map_err(|e| VideoError::UnsupportedAudioCodec(format!("sample format {format:?}: {e}")))?;
            self.converter = Some((format, context));
        }
        let Some((_, converter)) = self.converter.as_mut() else {
            return Err(VideoError::Internal("no sample converter".into()));
        };
        let samples = frame.samples();
        let mut planes: Vec<Vec<f32>> = vec![vec![0.0; samples]; self.channels.len()];
        let mut out: Vec<*mut u8> = planes.iter_mut().map(|p| p.as_mut_ptr() as *mut u8).collect();
        let count =
            c_int::try_from(samples).map_err(|_| VideoError::Corrupt("an audio frame too large".into()))?;
        // SAFETY: the converter takes `channels` planes (or one interleaved buffer) of the
        // frame's format and writes at most `count` samples into each of our `channels` planes;
        // the rate is unchanged, so nothing is buffered.
        let converted = unsafe {
            ffi::swr_convert(
                converter.as_mut_ptr(),
                out.as_mut_ptr(),
                count,
                (*frame.as_ptr()).extended_data as *mut *const u8,
                count,
            )
        };
        if converted != count {
            return Err(VideoError::Corrupt(format!("converting {samples} samples gave {converted}")));
        }
        for (channel, plane) in self.channels.iter_mut().zip(planes) {
            channel.extend_from_slice(&plane);
        }
        Ok(())
    }
}
