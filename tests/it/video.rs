//! Video embeddings served over gRPC match the reference (goldens from
//! `tools/make_video_fixtures.py`: `load_and_transform_video_data` with decord through the
//! PyTorch fixture model) for every container and codec, and bad videos are refused with
//! INVALID_ARGUMENT naming the input.

use bindery::api::pb;
#[cfg(feature = "video")]
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

const VIDEO: Fixtures = Fixtures("video");

#[cfg(feature = "video")]
#[derive(Deserialize)]
struct Case {
    file: String,
    embedding: Vec<f32>,
    /// The `frames` sampler's reference, for a few cases.
    #[serde(default)]
    frames_embedding: Option<Vec<f32>>,
}

#[cfg(feature = "video")]
#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn video(id: &str, data: Vec<u8>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Video(pb::Video {
            data,
            format_hint: String::new(),
            ..Default::default()
        })),
    }
}

/// Decoders that are exact by specification (H.264, H.265, FFV1), and the lossless
/// YUV-to-RGB path, must match the reference to 1e-4; VP8, VP9 and MJPEG decoders may round
/// differently between the reference's FFmpeg 4 (bundled by decord) and the system's.
#[cfg(feature = "video")]
fn threshold(file: &str) -> f64 {
    if file.ends_with(".webm") || file.ends_with(".avi") { 0.999 } else { 0.9999 }
}

#[cfg(feature = "video")]
#[tokio::test]
async fn every_video_golden_matches_the_reference() {
    let cases: Cases = VIDEO.json("cases.json");
    assert!(
        cases.cases.len() >= 12,
        "MP4, MOV, H.265, VP8, VP9, FFV1, MJPEG, portrait, odd, short, VFR, audio"
    );
    let mut server = start_fixture().await;
    for case in &cases.cases {
        let mut request = uncached(vec![video(&case.file, VIDEO.read(&case.file))]);
        request.normalize = Some(false);
        let reply =
            server.client.embed(request).await.unwrap_or_else(|e| panic!("{}: {e}", case.file)).into_inner();
        let e = &reply.embeddings[0];
        assert_eq!(e.modality, pb::Modality::Video as i32);
        let c = cosine(&e.vector, &case.embedding);
        eprintln!("video {}: cosine {c:.9}", case.file);
        assert!(c >= threshold(&case.file), "{}: cosine {c}", case.file);
        // Raw output: the mean of unit clip embeddings, as long as the reference's.
        let (got, want) = (norm(&e.vector), norm(&case.embedding));
        assert!((got - want).abs() < 1e-3 * want, "{}: norm {got}, reference {want}", case.file);
    }
}

#[cfg(feature = "video")]
#[tokio::test]
async fn normalised_video_embeddings_have_unit_length() {
    let case = "cases/h264.mp4";
    let mut server = start_fixture().await;
    let reply =
        server.client.embed(uncached(vec![video("v", VIDEO.read(case))])).await.expect("embed").into_inner();
    let n = norm(&reply.embeddings[0].vector);
    assert!((n - 1.0).abs() < 1e-5, "norm {n}");
}

#[cfg(feature = "video")]
#[tokio::test]
async fn bad_videos_are_refused_naming_the_input_and_the_problem() {
    use bindery::modality::video::VideoLimits;
    let good = VIDEO.read("cases/h264.mp4");
    let m4a = Fixtures("audio_lossy").read("cases/aac_16000_mono_short.m4a");
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "empty (0 bytes)"),
        ("garbage", b"definitely not a video container at all".repeat(20), "not a video"),
        ("audio_only", m4a, "no video stream"),
        // FFmpeg writes the MP4 index at the end: the cut file has none.
        ("truncated", good[..good.len() / 3].to_vec(), "not a video bindery can read: invalid data"),
        ("ten_hours", VIDEO.read("bad/ten_hours.mkv"), "longer than the limit of 3600 s (36001.0 s)"),
        (
            "unknown_codec",
            VIDEO.read("bad/unknown_codec.avi"),
            "unsupported video codec: not recognised by FFmpeg",
        ),
        ("oversized", VIDEO.read("cases/with_audio.mp4"), "more than the limit of 40000 bytes"),
        ("too_many_pixels", VIDEO.read("cases/portrait.mp4"), "90x160, more than the limit of 10000 pixels"),
    ];
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut VideoLimits| {
        l.max_bytes = 40_000;
        l.max_pixels = 10_000;
    });
    let mut server = start(options).await;
    for (id, data, part) in bad {
        let status = server.client.embed(uncached(vec![video(id, data)])).await;
        assert_refused(status, Code::InvalidArgument, &[&format!("input \"{id}\" (video)"), part]);
    }
    // Still serving, and a video within the limits goes through.
    let ok = server.client.embed(uncached(vec![video("ok", VIDEO.read("cases/ffv1.mkv"))])).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[cfg(feature = "video")]
#[tokio::test]
async fn decoding_work_is_bounded_by_the_frame_limit() {
    use bindery::modality::video::VideoLimits;
    let mut options = fixture_options();
    // The 4 s H.264 case has a key frame every 10 frames: its clips need more than 3 decoded.
    options.limits.inputs.update(|l: &mut VideoLimits| l.max_decoded_frames = 3);
    let mut server = start(options).await;
    let status = server.client.embed(uncached(vec![video("v", VIDEO.read("cases/h264.mp4"))])).await;
    assert_refused(status, Code::InvalidArgument, &["input \"v\" (video)", "limit of 3 decoded frames"]);
}

#[cfg(not(feature = "video"))]
#[tokio::test]
async fn without_the_video_feature_videos_are_unimplemented_naming_what_to_install() {
    let mut server = start_fixture().await;
    let status = server.client.embed(uncached(vec![video("clip", VIDEO.read("cases/h264.mp4"))])).await;
    assert_refused(status, Code::Unimplemented, &["clip", "libavformat-dev", "--features video"]);
}

#[cfg(feature = "video")]
#[tokio::test]
async fn videos_work_in_similarity_collections_and_the_cache() {
    use std::collections::HashMap;
    let cases: Cases = VIDEO.json("cases.json");
    let golden =
        |file: &str| cases.cases.iter().find(|c| c.file == file).map(|c| c.embedding.clone()).unwrap();
    let (a, b) = ("cases/h264.mp4", "cases/portrait.mp4");
    let mut server = start_fixture().await;

    // Similarity of two videos is the cosine of their reference embeddings.
    let item = |id: &str| pb::SimilarityItem {
        item: Some(pb::similarity_item::Item::Input(video(id, VIDEO.read(id)))),
    };
    let reply = server
        .client
        .similarity(pb::SimilarityRequest {
            queries: vec![item(a)],
            candidates: vec![item(b)],
            ..Default::default()
        })
        .await
        .expect("similarity")
        .into_inner();
    let want = cosine(&golden(a), &golden(b));
    assert!(
        (f64::from(reply.cosine[0]) - want).abs() < 1e-4,
        "cosine {} vs reference {want}",
        reply.cosine[0]
    );

    // The second embedding of the same bytes is a cache hit.
    let before = scrape(server.metrics).await;
    server.client.embed(request(vec![video("again", VIDEO.read(a))])).await.expect("embed");
    let after = scrape(server.metrics).await;
    let hits =
        |text: &str| metric(text, "bindery_cache_hits_total", &[("modality", "video")]).unwrap_or_default();
    assert_eq!(hits(&after) - hits(&before), 1.0, "the repeated video is a cache hit");

    // Stored in a collection, a video is found by itself.
    let mut c = collections_client(&server);
    c.create_collection(pb::CreateCollectionRequest { name: "clips".into(), ..Default::default() })
        .await
        .expect("create");
    let items = [a, b, "cases/vp9.webm"]
        .into_iter()
        .map(|id| pb::Item {
            id: id.into(),
            source: Some(pb::item::Source::Input(video(id, VIDEO.read(id)))),
            metadata: HashMap::new(),
            modality: 0,
        })
        .collect();
    c.upsert(pb::UpsertRequest { collection: "clips".into(), items }).await.expect("upsert");
    let hits = c
        .search(pb::SearchRequest {
            collection: "clips".into(),
            query: Some(pb::search_request::Query::Input(video("q", VIDEO.read(b)))),
            top_k: 3,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .hits;
    assert_eq!(hits[0].id, b);
    assert_eq!(hits[0].modality, pb::Modality::Video as i32);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
}

#[cfg(feature = "video")]
#[tokio::test]
async fn the_frames_sampler_with_one_centre_crop_matches_its_reference() {
    let cases: Cases = VIDEO.json("cases.json");
    let cases: Vec<&Case> = cases.cases.iter().filter(|c| c.frames_embedding.is_some()).collect();
    assert!(cases.len() >= 3, "landscape, portrait and variable frame rate");
    let (options, _models) = fixture_variant(&[
        ("sampler = \"clips\"", "sampler = \"frames\""),
        ("clips = 5", "clips = 1"),
        ("crops = 3", "crops = 1"),
    ]);
    let mut server = start(options).await;
    for case in cases {
        let mut request = uncached(vec![video(&case.file, VIDEO.read(&case.file))]);
        request.normalize = Some(false);
        let reply = server.client.embed(request).await.expect("embed").into_inner();
        let golden = case.frames_embedding.as_deref().unwrap_or_default();
        let c = cosine(&reply.embeddings[0].vector, golden);
        assert!(c >= 0.9999, "{}: cosine {c}", case.file);
    }
}

#[cfg(feature = "video")]
fn with_audio(id: &str, data: Vec<u8>) -> pb::Input {
    let mut input = video(id, data);
    if let Some(pb::input::Payload::Video(v)) = &mut input.payload {
        v.with_audio = true;
    }
    input
}

/// `with_audio` returns the sound track's embedding after the video's, under the same id with
/// MODALITY_AUDIO, and it equals the audio path's embedding of that track extracted to WAV by
/// the `ffmpeg` command line (AAC with an edit list, 16-bit stereo PCM, Opus with pre-skip).
#[cfg(feature = "video")]
#[tokio::test]
async fn the_sound_track_embeds_as_its_wav_extraction_does() {
    let mut server = start_fixture().await;
    for (file, wav) in [
        ("tracks/aac.mp4", "tracks/aac.wav"),
        ("tracks/pcm_stereo.mkv", "tracks/pcm_stereo.wav"),
        ("tracks/opus.webm", "tracks/opus.wav"),
    ] {
        let inputs = vec![
            with_audio(file, VIDEO.read(file)),
            audio("wav", VIDEO.read(wav), "wav"),
            video("alone", VIDEO.read(file)),
        ];
        let mut request = uncached(inputs);
        request.normalize = Some(false);
        let reply = server.client.embed(request).await.unwrap_or_else(|e| panic!("{file}: {e}")).into_inner();
        let e = &reply.embeddings;
        let shape: Vec<(&str, i32)> = e.iter().map(|e| (e.id.as_str(), e.modality)).collect();
        let (video_m, audio_m) = (pb::Modality::Video as i32, pb::Modality::Audio as i32);
        assert_eq!(shape, [(file, video_m), (file, audio_m), ("wav", audio_m), ("alone", video_m)]);
        let c = cosine(&e[1].vector, &e[2].vector);
        eprintln!("sound track of {file}: cosine {c:.9} against {wav}");
        assert!(c >= 0.9999, "{file}: cosine {c}");
        // Asking for the track leaves the video's own embedding as it is.
        assert!(cosine(&e[0].vector, &e[3].vector) > 0.999_999, "{file}");
    }
}

#[cfg(feature = "video")]
#[tokio::test]
async fn the_sound_track_is_refused_only_where_it_cannot_be_given() {
    let silent = VIDEO.read("cases/h264.mp4");
    let mut server = start_fixture().await;
    let status = server.client.embed(uncached(vec![with_audio("mute", silent.clone())])).await;
    assert_refused(status, Code::InvalidArgument, &["input \"mute\" (video)", "no audio track"]);
    // Similarity needs one vector per input.
    let item = pb::SimilarityItem {
        item: Some(pb::similarity_item::Item::Input(with_audio("both", VIDEO.read("tracks/aac.mp4")))),
    };
    let status = server
        .client
        .similarity(pb::SimilarityRequest {
            queries: vec![item.clone()],
            candidates: vec![item],
            ..Default::default()
        })
        .await;
    assert_refused(status, Code::InvalidArgument, &["input \"both\" (video)", "several embeddings"]);
    // The same silent video without the flag is fine.
    let ok = server.client.embed(uncached(vec![video("mute", silent)])).await;
    assert!(ok.is_ok(), "{ok:?}");
}
