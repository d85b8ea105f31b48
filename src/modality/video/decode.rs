//! Demuxing and decoding a video held in memory with FFmpeg's libraries, the way decord (the
//! reference's decoder) indexes and reads it.
//!
//! The bytes are read through a custom `AVIOContext` over the request's buffer: no temporary
//! file, and FFmpeg seeks inside the buffer. Opening indexes the best video stream (FFmpeg's
//! `av_find_best_stream`, as decord picks it) by reading its packets without decoding them:
//! decord counts one frame per packet and orders frames by packet timestamp. Decoding then
//! seeks to the key frame before each wanted frame, decodes up to it, and converts it to RGB24
//! with swscale set up as decord's `scale` filter sets it up (bilinear, the frame's colour matrix
//! and range).

use std::ffi::{c_int, c_void};
use std::sync::Once;
use std::time::Instant;

use ff::ffi;
use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

use super::{Frame, VideoError, VideoLimits};

/// Size of the buffer FFmpeg reads the input through.
const IO_BUFFER: usize = 64 << 10;

/// Frame rates above this are taken as broken metadata (the packet index is bounded by the
/// duration limit times this rate).
const MAX_FRAME_RATE: f64 = 1000.0;

/// The request's bytes and FFmpeg's read position in them.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

unsafe extern "C" fn read_packet(opaque: *mut c_void, buf: *mut u8, size: c_int) -> c_int {
    // SAFETY: `opaque` is the `Cursor` boxed in `Demuxed`, alive as long as the AVIOContext.
    let cursor = unsafe { &mut *(opaque as *mut Cursor<'_>) };
    let left = cursor.data.len().saturating_sub(cursor.pos);
    let n = left.min(usize::try_from(size).unwrap_or(0));
    if n == 0 {
        return ffi::AVERROR_EOF;
    }
    // SAFETY: FFmpeg hands a buffer of `size` bytes; `n <= size` and `pos + n <= len`.
    unsafe { std::ptr::copy_nonoverlapping(cursor.data.as_ptr().add(cursor.pos), buf, n) };
    cursor.pos += n;
    n as c_int
}

unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    // SAFETY: as in `read_packet`.
    let cursor = unsafe { &mut *(opaque as *mut Cursor<'_>) };
    let len = cursor.data.len() as i64;
    if whence & ffi::AVSEEK_SIZE as c_int != 0 {
        return len;
    }
    let base = match whence & !(ffi::AVSEEK_FORCE as c_int) {
        0 => 0,                 // SEEK_SET
        1 => cursor.pos as i64, // SEEK_CUR
        2 => len,               // SEEK_END
        _ => return i64::from(ffi::AVERROR(libc::EINVAL)),
    };
    match base.checked_add(offset) {
        Some(p) if (0..=len).contains(&p) => {
            cursor.pos = p as usize;
            p
        }
        _ => i64::from(ffi::AVERROR(libc::EINVAL)),
    }
}

/// One packet of the video stream in the index.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    pts: i64,
    key: bool,
}

/// An opened, indexed video.
pub struct Demuxed<'a> {
    input: Option<ff::format::context::Input>,
    io: *mut ffi::AVIOContext,
    _cursor: Box<Cursor<'a>>,
    stream: usize,
    rate: f64,
    /// Frame timestamps in presentation order (decord's frame index).
    frames: Vec<i64>,
    /// Key frame timestamps, ascending.
    keys: Vec<i64>,
    limits: VideoLimits,
    started: Instant,
    decoded: u64,
}

fn ffmpeg_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Bad inputs are answered with statuses; FFmpeg's own log would only repeat them.
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

impl<'a> Demuxed<'a> {
    /// Opens `data`, checks the video stream against `limits` and indexes its packets.
    pub fn open(data: &'a [u8], limits: &VideoLimits) -> Result<Self, VideoError> {
        let mut this = Self::open_container(data, limits)?;
        this.find_stream()?;
        this.index()?;
        Ok(this)
    }

    /// Opens the container of `data` and nothing more: no stream is chosen or indexed.
    pub(super) fn open_container(data: &'a [u8], limits: &VideoLimits) -> Result<Self, VideoError> {
        ffmpeg_init();
        let started = Instant::now();
        let mut cursor = Box::new(Cursor { data, pos: 0 });
        // SAFETY: plain allocations; every pointer is checked and owned by the returned value
        // (or freed here on failure).
        let (input, io) = unsafe {
            let buffer = ffi::av_malloc(IO_BUFFER) as *mut u8;
            if buffer.is_null() {
                return Err(VideoError::Internal("out of memory".into()));
            }
            let opaque = &mut *cursor as *mut Cursor<'_> as *mut c_void;
            let mut io = ffi::avio_alloc_context(
                buffer,
                IO_BUFFER as c_int,
                0,
                opaque,
                Some(read_packet),
                None,
                Some(seek),
            );
            if io.is_null() {
                ffi::av_free(buffer as *mut c_void);
                return Err(VideoError::Internal("out of memory".into()));
            }
            let mut ctx = ffi::avformat_alloc_context();
            if ctx.is_null() {
                free_io(&mut io);
                return Err(VideoError::Internal("out of memory".into()));
            }
            (*ctx).pb = io;
            (*ctx).flags |= ffi::AVFMT_FLAG_CUSTOM_IO as c_int;
            // On failure avformat_open_input frees the context (not our IO).
            let ret =
                ffi::avformat_open_input(&mut ctx, std::ptr::null(), std::ptr::null(), std::ptr::null_mut());
            if ret < 0 {
                free_io(&mut io);
                return Err(VideoError::UnrecognizedFormat(describe(ret)));
            }
            let input = ff::format::context::Input::wrap(ctx);
            (input, io)
        };
        Ok(Self {
            input: Some(input),
            io,
            _cursor: cursor,
            stream: 0,
            rate: 0.0,
            frames: Vec::new(),
            keys: Vec::new(),
            limits: *limits,
            started,
            decoded: 0,
        })
    }

    pub(super) fn input(&mut self) -> Result<&mut ff::format::context::Input, VideoError> {
        self.input.as_mut().ok_or_else(|| VideoError::Internal("the input is closed".into()))
    }

    fn find_stream(&mut self) -> Result<(), VideoError> {
        let limits = self.limits;
        let input = self.input()?;
        // SAFETY: the context is open; find_stream_info reads packets through our IO.
        let ret = unsafe { ffi::avformat_find_stream_info(input.as_mut_ptr(), std::ptr::null_mut()) };
        if ret < 0 {
            return Err(VideoError::Corrupt(describe(ret)));
        }
        let declared = input.duration();
        if declared > 0 && declared != ffi::AV_NOPTS_VALUE {
            let seconds = declared as f64 / f64::from(ffi::AV_TIME_BASE);
            if seconds > limits.max_seconds {
                return Err(VideoError::TooLong { seconds, max: limits.max_seconds });
            }
        }
        let stream = input.streams().best(ff::media::Type::Video).ok_or(VideoError::NoVideoStream)?;
        let params = stream.parameters();
        // SAFETY: codecpar of an open stream.
        let (width, height, codec_id) = unsafe {
            let p = params.as_ptr();
            ((*p).width, (*p).height, (*p).codec_id)
        };
        let (w, h) = (u32::try_from(width).unwrap_or(0), u32::try_from(height).unwrap_or(0));
        check_dimensions(w, h, &limits)?;
        if ff::codec::decoder::find(codec_id.into()).is_none() {
            let name = match ff::codec::Id::from(codec_id) {
                // FFmpeg names an unrecognised stream "none", which reads as no codec at all.
                ff::codec::Id::None => "not recognised by FFmpeg".to_string(),
                id => format!("{} (this FFmpeg build has no decoder for it)", id.name()),
            };
            return Err(VideoError::UnsupportedCodec(name));
        }
        let rate = stream.avg_frame_rate();
        let index = stream.index();
        self.rate = if rate.denominator() != 0 {
            f64::from(rate.numerator()) / f64::from(rate.denominator())
        } else {
            f64::NAN
        };
        self.stream = index;
        Ok(())
    }

    /// Reads every packet once (no decoding): decord's frame index.
    fn index(&mut self) -> Result<(), VideoError> {
        let limits = self.limits;
        let stream = self.stream;
        let most = (limits.max_seconds * MAX_FRAME_RATE).min(1e9) as usize;
        let mut packets: Vec<Indexed> = Vec::new();
        let mut packet = ff::Packet::empty();
        loop {
            match packet.read(self.input()?) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(VideoError::Corrupt(e.to_string())),
            }
            if packet.stream() != stream {
                continue;
            }
            let pts = packet
                .pts()
                .or(packet.dts())
                .ok_or_else(|| VideoError::Corrupt("a video packet has no timestamp".into()))?;
            packets.push(Indexed { pts, key: packet.is_key() });
            if packets.len() > most {
                return Err(VideoError::TooLong {
                    seconds: packets.len() as f64 / MAX_FRAME_RATE,
                    max: limits.max_seconds,
                });
            }
            self.check_time()?;
        }
        if packets.is_empty() {
            return Err(VideoError::NoFrames(String::new()));
        }
        if self.rate.is_finite() && self.rate > 0.0 {
            let seconds = packets.len() as f64 / self.rate;
            if seconds > limits.max_seconds {
                return Err(VideoError::TooLong { seconds, max: limits.max_seconds });
            }
        }
        self.keys = packets.iter().filter(|p| p.key).map(|p| p.pts).collect();
        self.keys.sort_unstable();
        self.frames = packets.into_iter().map(|p| p.pts).collect();
        self.frames.sort_unstable();
        Ok(())
    }

    fn check_time(&self) -> Result<(), VideoError> {
        if self.started.elapsed() > self.limits.max_decode_time() {
            Err(VideoError::DecodeTimeout { max_ms: self.limits.max_decode_ms })
        } else {
            Ok(())
        }
    }

    /// Frames in the video, as decord counts them (one per packet).
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Frames decoded so far (those the clips need and those on the way from a key frame).
    pub fn frames_decoded(&self) -> u64 {
        self.decoded
    }

    /// The stream's average frame rate (NaN when it declares none).
    pub fn frame_rate(&self) -> f64 {
        self.rate
    }

    /// Decodes the frames at `wanted` (ascending indices into the presentation order) to RGB24.
    pub fn decode_frames(&mut self, wanted: &[usize]) -> Result<Vec<Frame>, VideoError> {
        let targets = wanted
            .iter()
            .map(|&i| {
                self.frames
                    .get(i)
                    .copied()
                    .ok_or_else(|| VideoError::Internal(format!("frame {i} out of range")))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        let stream = self.stream;
        let keys = self.keys.clone();
        let limits = self.limits;
        let started = self.started;
        let input = self.input()?;
        let params = input.stream(stream).ok_or(VideoError::NoVideoStream)?.parameters();
        let context =
            ff::codec::Context::from_parameters(params).map_err(|e| VideoError::Internal(e.to_string()))?;
        let mut decoder =
            context.decoder().video().map_err(|e| VideoError::UnsupportedCodec(e.to_string()))?;
        let mut reader = FrameReader {
            stream,
            decoded: 0,
            last: None,
            eof: false,
            frame: ff::frame::Video::empty(),
            packet: ff::Packet::empty(),
            scaler: None,
            limits,
            started,
        };
        let mut out = Vec::with_capacity(targets.len());
        for &target in &targets {
            // The key frame at or before the target (the first one when none is).
            let key = keys.iter().rev().find(|&&k| k <= target).or(keys.first()).copied().unwrap_or(target);
            // Indexing left the input at its end, so the first frame always seeks; a later one
            // decodes on when no key frame lies between the last frame and it.
            let ahead = reader
                .last
                .is_some_and(|last| target > last && !keys.iter().any(|&k| k > last && k <= target));
            if !ahead {
                // SAFETY: an open input and one of its stream indices.
                let ret = unsafe {
                    ffi::av_seek_frame(
                        input.as_mut_ptr(),
                        stream as c_int,
                        key,
                        ffi::AVSEEK_FLAG_BACKWARD as c_int,
                    )
                };
                if ret < 0 {
                    return Err(VideoError::Corrupt(format!("seeking failed: {}", describe(ret))));
                }
                decoder.flush();
                reader.last = None;
                reader.eof = false;
            }
            out.push(reader.decode_until(input, &mut decoder, target)?);
        }
        self.decoded += reader.decoded;
        Ok(out)
    }
}

/// The decoding state across the wanted frames of one video.
struct FrameReader {
    stream: usize,
    decoded: u64,
    /// Timestamp of the last frame the decoder gave since the last seek.
    last: Option<i64>,
    eof: bool,
    frame: ff::frame::Video,
    packet: ff::Packet,
    scaler: Option<(Pixel, u32, u32, scaling::Context)>,
    limits: VideoLimits,
    started: Instant,
}

impl FrameReader {
    /// Decodes up to the frame at `target` (or the first one after it, when a damaged stream
    /// lost it) and converts it.
    fn decode_until(
        &mut self,
        input: &mut ff::format::context::Input,
        decoder: &mut ff::decoder::Video,
        target: i64,
    ) -> Result<Frame, VideoError> {
        loop {
            while decoder.receive_frame(&mut self.frame).is_ok() {
                self.decoded += 1;
                if self.decoded > self.limits.max_decoded_frames {
                    return Err(VideoError::TooManyFrames { max: self.limits.max_decoded_frames });
                }
                let ts = self.frame.timestamp();
                if ts.is_some() {
                    self.last = ts;
                }
                if ts.is_some_and(|t| t >= target) {
                    return self.convert();
                }
            }
            if self.started.elapsed() > self.limits.max_decode_time() {
                return Err(VideoError::DecodeTimeout { max_ms: self.limits.max_decode_ms });
            }
            if self.eof {
                return Err(VideoError::Corrupt("a frame the clips need could not be decoded".into()));
            }
            match self.packet.read(input) {
                Ok(()) if self.packet.stream() == self.stream => {
                    // A packet the decoder refuses is skipped, as FFmpeg's tools do; a frame
                    // that never arrives is reported above.
                    let _ = decoder.send_packet(&self.packet);
                }
                Ok(()) => {}
                Err(_) => {
                    let _ = decoder.send_eof();
                    self.eof = true;
                }
            }
        }
    }

    /// The decoder's current frame as packed RGB24.
    fn convert(&mut self) -> Result<Frame, VideoError> {
        let (format, width, height) = (self.frame.format(), self.frame.width(), self.frame.height());
        check_dimensions(width, height, &self.limits)?;
        let stale =
            !matches!(&self.scaler, Some((f, w, h, _)) if *f == format && *w == width && *h == height);
        if stale {
            let context = scaling::Context::get(
                format,
                width,
                height,
                Pixel::RGB24,
                width,
                height,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| VideoError::UnsupportedCodec(format!("pixel format {format:?}: {e}")))?;
            self.scaler = Some((format, width, height, context));
        }
        let Some((_, _, _, scaler)) = self.scaler.as_mut() else {
            return Err(VideoError::Internal("no scaler".into()));
        };
        set_colorspace(scaler, &self.frame);
        let mut rgb = ff::frame::Video::empty();
        scaler.run(&self.frame, &mut rgb).map_err(|e| VideoError::Corrupt(e.to_string()))?;
        let (w, h) = (width as usize, height as usize);
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut packed = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let row = data
                .get(y * stride..y * stride + w * 3)
                .ok_or_else(|| VideoError::Internal("short RGB frame".into()))?;
            packed.extend_from_slice(row);
        }
        Ok(Frame { width: w, height: h, rgb: packed })
    }
}

/// Sets the YUV-to-RGB matrix and input range the way libavfilter's `scale` filter (decord's
/// converter) does with its default `in_color_matrix=auto`: the frame's colour space
/// (BT.601 when unspecified), and the frame's range when it declares one.
fn set_colorspace(scaler: &mut scaling::Context, frame: &ff::frame::Video) {
    // SAFETY: a live SwsContext and frame; the tables sws_getCoefficients returns are static.
    unsafe {
        let f = frame.as_ptr();
        let space = (*f).colorspace as c_int;
        let space =
            if !(1..=10).contains(&space) || space == 8 { ffi::SWS_CS_ITU601 as c_int } else { space };
        let table = ffi::sws_getCoefficients(space);
        let (mut inv, mut out_table) = (std::ptr::null_mut(), std::ptr::null_mut());
        let (mut src_full, mut dst_full, mut brightness, mut contrast, mut saturation) = (0, 0, 0, 0, 0);
        let ctx = scaler.as_mut_ptr();
        if ffi::sws_getColorspaceDetails(
            ctx,
            &mut inv,
            &mut src_full,
            &mut out_table,
            &mut dst_full,
            &mut brightness,
            &mut contrast,
            &mut saturation,
        ) < 0
        {
            return;
        }
        let range = (*f).color_range;
        if range != ffi::AVColorRange::AVCOL_RANGE_UNSPECIFIED {
            src_full = c_int::from(range == ffi::AVColorRange::AVCOL_RANGE_JPEG);
        }
        ffi::sws_setColorspaceDetails(
            ctx, table, src_full, table, dst_full, brightness, contrast, saturation,
        );
    }
}

/// FFmpeg's description of an error code (`av_strerror`).
pub(super) fn describe(code: c_int) -> String {
    let mut buf = [0 as std::ffi::c_char; 256];
    // SAFETY: av_strerror writes a NUL-terminated string of at most `buf.len()` bytes.
    let ok = unsafe { ffi::av_strerror(code, buf.as_mut_ptr(), buf.len()) } == 0;
    if !ok {
        return format!("error {code}");
    }
    // SAFETY: NUL-terminated by av_strerror.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    text.to_string_lossy().trim_end_matches('.').to_lowercase()
}

fn check_dimensions(width: u32, height: u32, limits: &VideoLimits) -> Result<(), VideoError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(VideoError::BadDimensions { width, height, reason: "which is empty".into() });
    }
    if pixels > limits.max_pixels {
        return Err(VideoError::BadDimensions {
            width,
            height,
            reason: format!("more than the limit of {} pixels", limits.max_pixels),
        });
    }
    Ok(())
}

/// # Safety
/// `io` is an AVIOContext from `avio_alloc_context`, no longer used by a format context.
unsafe fn free_io(io: &mut *mut ffi::AVIOContext) {
    // SAFETY: per the contract; the buffer may have been replaced by FFmpeg, so free its current one.
    unsafe {
        if !io.is_null() {
            ffi::av_freep(&mut (**io).buffer as *mut *mut u8 as *mut c_void);
            ffi::avio_context_free(io);
        }
    }
}

impl Drop for Demuxed<'_> {
    fn drop(&mut self) {
        // The format context goes first: closing it may still touch the IO context.
        drop(self.input.take());
        // SAFETY: the format context that used `io` is closed.
        unsafe { free_io(&mut self.io) };
    }
}

/// Fuzz target body: any bytes through decoding the sound track, and opening, indexing and
/// decoding the first and last frames, under small limits. Must never panic.
pub fn fuzz_demux(data: &[u8]) {
    let limits = VideoLimits {
        max_bytes: 1 << 20,
        max_seconds: 60.0,
        max_pixels: 1 << 20,
        max_decoded_frames: 200,
        max_decode_ms: 2000,
        max_segments: 1,
    };
    let audio =
        crate::modality::audio::AudioLimits { max_bytes: 1 << 20, max_duration_secs: 60.0, max_segments: 1 };
    if let Ok(track) = super::audio_track::decode_audio_track(data, &limits, &audio) {
        let n = track.frames();
        assert!(track.channels.iter().all(|c| c.len() == n), "channels of different lengths");
    }
    if let Ok(mut video) = Demuxed::open(data, &limits) {
        let n = video.frame_count();
        if let Ok(frames) = video.decode_frames(&[0, n - 1]) {
            for f in frames {
                assert_eq!(f.rgb.len(), f.width * f.height * 3, "an RGB frame of the wrong size");
            }
        }
    }
}
