//! LanguageBind's video path served over gRPC matches the reference: the `languagebind-fixture`
//! video tower's goldens (`tools/make_languagebind_fixtures.py`: the package's
//! `get_video_transform` and `load_and_transform_video(..., video_decode_backend='decord')`, its
//! random flip pinned off, through the PyTorch model) on every video golden input; its front-end
//! tensors equal the reference's, also where the centre crop's rounding shows and for a window
//! (`tools/make_languagebind_video_fixtures.py`); bad values of the video fields are refused naming the field; and
//! segment mode samples each window as a whole video.
//!
//! The model is served with its video tower alone (the manifest's header and `[video]` sections),
//! so these tests need nothing of the other towers' preprocessing.

#[cfg(feature = "video")]
use bindery::api::pb;
use bindery::model::manifest::ModelDir;
#[cfg(feature = "video")]
use serde::Deserialize;

use crate::common::*;

const MODEL: &str = "languagebind-fixture";
#[cfg(feature = "video")]
const GOLDENS: Fixtures = Fixtures("families");
#[cfg(feature = "video")]
const VIDEO_GOLDENS: Fixtures = Fixtures("video");

#[cfg(feature = "video")]
#[derive(Deserialize)]
struct Case {
    id: String,
    file: String,
    embedding: Vec<f32>,
}

#[cfg(feature = "video")]
fn video(id: &str, data: Vec<u8>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Video(pb::Video { data, ..Default::default() })),
    }
}

/// Every case reaches 0.9999, VP8, VP9 and MJPEG included (decord's bundled FFmpeg 4 and the
/// system's FFmpeg decode these files alike). One golden is not what its frame indices name:
/// for `h265.mp4` decord's `get_batch([0, 4, 8, 12, 16, 20, 24, 29])` returns frames 0, 4, 12, 16,
/// 20, 24, 28, 28 (its seek in this H.265 stream lands 4 frames late; reading the frames in order
/// gives the right ones), while bindery decodes the frames named. The fixture's tiny random tower
/// barely separates frames of the moving test pattern (cosine 0.99998 there), so the front-end
/// tensor test below is what pins the frames.
#[cfg(feature = "video")]
#[tokio::test]
async fn every_languagebind_video_golden_matches_the_reference() {
    let cases: Vec<Case> = GOLDENS.json(&format!("{MODEL}/video.json"));
    assert!(cases.len() >= 12, "every container and codec of the video goldens, got {}", cases.len());
    let dir = model_folder(MODEL, &manifest_sections(MODEL, &["video"]));
    let mut server = start_model_folder(&dir, MODEL).await;
    let mut below = Vec::new();
    for case in &cases {
        let mut request = uncached(vec![video(&case.id, FIXTURES.read(&case.file))]);
        request.normalize = Some(false);
        let reply = server
            .client
            .embed(request)
            .await
            .unwrap_or_else(|s| panic!("{} ({}): {s}", case.id, case.file))
            .into_inner();
        let e = &reply.embeddings[0];
        assert_eq!(e.modality, pb::Modality::Video as i32);
        let c = cosine(&e.vector, &case.embedding);
        eprintln!("languagebind video {}: cosine {c:.9}", case.file);
        if c < 0.9999 {
            below.push(format!("{}: cosine {c}", case.file));
        }
        let (got, want) = (norm(&e.vector), norm(&case.embedding));
        assert!((got - want).abs() < 1e-3 * want, "{}: norm {got}, reference {want}", case.file);
    }
    assert!(below.is_empty(), "below the floor: {below:#?}");
}

/// The family's video preprocessor of the fixture's manifest.
#[cfg(feature = "video")]
fn video_preprocessor() -> bindery::modality::video::VideoPreprocessor {
    use bindery::modality::video::{VideoLimits, VideoPreprocess, VideoPreprocessor};
    use bindery::shared::Modality;
    let dir = repo().join("models").join(MODEL);
    let model =
        ModelDir::parse(&dir, std::path::Path::new("model.toml"), &manifest_sections(MODEL, &["video"]))
            .expect("manifest");
    let section = model.manifest.encoders[&Modality::Video].preprocess.clone();
    let spec: VideoPreprocess = toml::Value::Table(section).try_into().expect("video preprocess");
    VideoPreprocessor::new(&spec, VideoLimits::default())
}

/// bindery's tensor of `case` (of its window, if it has one) against the reference's values: the
/// reference's bilinear kernel rounds a few values differently (up to ~3e-5 after dividing by
/// std); a wrong frame, order or crop moves values by tenths.
#[cfg(feature = "video")]
fn assert_tensor_matches(case: &TensorGolden) {
    use bindery::modality::Span;
    let preprocessor = video_preprocessor();
    assert_eq!(
        preprocessor.tensor_len(),
        case.shape.iter().product::<usize>(),
        "{}: one clip, one crop",
        case.id
    );
    let window = case.window.map(|(start, end)| Span { start, end });
    let mut tensor = vec![0f32; preprocessor.tensor_len()];
    preprocessor.preprocess_into(&FIXTURES.read(&case.file), window, &mut tensor).expect("preprocess");
    let strided: Vec<f32> = tensor.iter().step_by(case.stride).copied().collect();
    assert_eq!(strided.len(), case.values.len(), "{}", case.id);
    let worst = max_abs_diff(&strided, &case.values);
    eprintln!("{}: largest difference {worst:.2e}", case.id);
    assert!(worst < 1e-4, "{}: largest difference {worst}", case.id);
}

/// The `[1, 3, 8, 224, 224]` tensor of one video equals the reference's `pixel_values` (every
/// `stride`-th value), with the family's order (normalise, then scale) and centre crop.
#[cfg(feature = "video")]
#[test]
fn the_video_tensor_equals_the_references() {
    let cases: Vec<TensorGolden> = GOLDENS.json(&format!("{MODEL}/preprocess.json"));
    assert_tensor_matches(cases.iter().find(|c| c.id.starts_with("video:")).expect("a video tensor case"));
}

/// Where `CenterCropVideo`'s `round` and pytorchvideo's `ceil` place the crop one pixel apart (a
/// margin of 9, landscape and portrait), and for a window of a longer video sampled as a video of
/// its own (`tools/make_languagebind_video_fixtures.py`).
#[cfg(feature = "video")]
#[test]
fn odd_crop_margins_and_windows_match_the_reference_tensors() {
    let cases: Vec<TensorGolden> = VIDEO_GOLDENS.json("languagebind/tensors.json");
    assert_eq!(cases.len(), 3, "landscape, portrait and a window");
    assert!(cases.iter().any(|c| c.window.is_some()));
    for case in &cases {
        assert_tensor_matches(case);
    }
}

/// Each video field, given a bad value, is refused at start-up naming it.
#[test]
fn bad_languagebind_video_values_are_refused_naming_the_field() {
    let dir = repo().join("models").join(MODEL);
    let good = manifest_sections(MODEL, &["video"]);
    ModelDir::parse(&dir, std::path::Path::new("model.toml"), &good).expect("the video manifest is valid");
    let cases = [
        ("flip = \"none\"", "flip = \"random\"", "flip"),
        ("flip = \"none\"", "flip = \"none\"\nnormalize = \"sideways\"", "normalize"),
        ("flip = \"none\"", "flip = \"none\"\ncrop_rounding = \"floor\"", "crop_rounding"),
        ("crops = 1", "crops = 3", "crop_rounding"),
        ("clips = 1", "clips = 2", "clips"),
        ("sampler = \"frames\"", "sampler = \"clips\"", "clip_duration"),
        ("sampler = \"frames\"", "sampler = \"uniform\"", "sampler"),
        ("frames_per_clip = 8", "frames_per_clip = 0", "frames_per_clip"),
    ];
    for (from, to, field) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        let err = ModelDir::parse(&dir, std::path::Path::new("model.toml"), &bad).expect_err(to).to_string();
        assert!(err.contains(field) && err.contains("model.toml"), "{to}: {err}");
    }
}

/// Segment mode with the `frames` sampler: each window's frames are sampled as a video of their
/// own, so one window over the whole video is the whole video's embedding, and shorter windows
/// each get their own.
#[cfg(feature = "video")]
#[tokio::test]
async fn segment_mode_samples_each_window_as_a_whole_video() {
    let dir = model_folder(MODEL, &manifest_sections(MODEL, &["video"]));
    let mut server = start_model_folder(&dir, MODEL).await;
    let data = FIXTURES.read("video/cases/h264.mp4");
    let segmented = |id: &str, segment_seconds: f32| pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Video(pb::Video {
            data: data.clone(),
            segment_seconds,
            ..Default::default()
        })),
    };
    let inputs = vec![video("whole", data.clone()), segmented("one", 10.0), segmented("halves", 2.0)];
    let mut request = uncached(inputs);
    request.normalize = Some(false);
    let reply = server.client.embed(request).await.expect("embed").into_inner();
    let e = &reply.embeddings;
    let spans: Vec<(&str, Option<(f64, f64)>)> = e
        .iter()
        .map(|e| (e.id.as_str(), e.span.as_ref().map(|s| (s.start_seconds, s.end_seconds))))
        .collect();
    assert_eq!(
        spans,
        [
            ("whole", None),
            ("one", Some((0.0, 4.0))),
            ("halves", Some((0.0, 2.0))),
            ("halves", Some((2.0, 4.0)))
        ]
    );
    let c = cosine(&e[0].vector, &e[1].vector);
    assert!(c > 0.999_999, "one window over the whole video: cosine {c}");
    for half in &e[2..] {
        let c = cosine(&e[0].vector, &half.vector);
        assert!(c < 0.9999, "a half is not the whole video: cosine {c}");
    }
}
