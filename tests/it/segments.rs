//! Segment mode: a long video or audio file embedded per time window. Each window's embedding
//! matches the reference pipeline run on that window alone (goldens from
//! `tools/make_segment_fixtures.py`: the reference's own clip sampler over the window for video,
//! the WAV's samples cut at the window for audio), and the reply says which window it covers.

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
    modality: String,
    segment_seconds: f32,
    hop_seconds: f32,
    windows: Vec<(f64, f64)>,
    embeddings: Vec<Vec<f32>>,
}

#[cfg(feature = "video")]
#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn segmented(id: &str, modality: &str, data: Vec<u8>, segment_seconds: f32, hop_seconds: f32) -> pb::Input {
    let payload = match modality {
        "video" => {
            pb::input::Payload::Video(pb::Video { data, segment_seconds, hop_seconds, ..Default::default() })
        }
        _ => {
            pb::input::Payload::Audio(pb::Audio { data, segment_seconds, hop_seconds, ..Default::default() })
        }
    };
    pb::Input { id: id.into(), payload: Some(payload) }
}

#[cfg(feature = "video")]
#[tokio::test]
async fn every_segment_matches_the_reference_on_its_window() {
    let cases: Cases = VIDEO.json("segments.json");
    assert!(
        cases.cases.iter().any(|c| c.modality == "video")
            && cases.cases.iter().any(|c| c.modality == "audio")
    );
    let mut server = start_fixture().await;
    for case in &cases.cases {
        let what = format!("{} in {} s every {} s", case.file, case.segment_seconds, case.hop_seconds);
        let input = segmented(
            &case.file,
            &case.modality,
            VIDEO.read(&case.file),
            case.segment_seconds,
            case.hop_seconds,
        );
        let reply = server.client.embed(uncached(vec![input, text("after", "a caption")])).await;
        let reply = reply.unwrap_or_else(|e| panic!("{what}: {e}")).into_inner();
        let (segments, rest) = reply.embeddings.split_at(case.windows.len());
        assert_eq!(rest.len(), 1, "{what}: one embedding per window, then the next input's");
        assert_eq!(rest[0].id, "after");
        assert!(rest[0].span.is_none(), "a whole input has no span");
        for ((e, &(start, end)), want) in segments.iter().zip(&case.windows).zip(&case.embeddings) {
            assert_eq!(e.id, case.file);
            assert_eq!(
                pb::Modality::try_from(e.modality).map(|m| m.as_str_name()).unwrap_or_default(),
                format!("MODALITY_{}", case.modality.to_uppercase())
            );
            let span = e.span.as_ref().unwrap_or_else(|| panic!("{what}: no span"));
            assert!(
                (span.start_seconds - start).abs() < 1e-9 && (span.end_seconds - end).abs() < 1e-9,
                "{what}: span {span:?}, reference window {start}..{end}"
            );
            let c = cosine(&e.vector, want);
            eprintln!("{what}, {start}..{end} s: cosine {c:.9}");
            assert!(c >= 0.9999, "{what}, {start}..{end} s: cosine {c}");
        }
    }
}

#[cfg(feature = "video")]
#[tokio::test]
async fn a_video_segment_with_its_sound_track_gives_both_per_window() {
    let file = "tracks/aac.mp4";
    let mut input = segmented(file, "video", VIDEO.read(file), 1.0, 0.0);
    if let Some(pb::input::Payload::Video(v)) = &mut input.payload {
        v.with_audio = true;
    }
    let mut server = start_fixture().await;
    let reply = server.client.embed(uncached(vec![input])).await.expect("embed").into_inner();
    let got: Vec<(i32, f64, f64)> = reply
        .embeddings
        .iter()
        .map(|e| {
            e.span.as_ref().map_or((e.modality, -1.0, -1.0), |s| (e.modality, s.start_seconds, s.end_seconds))
        })
        .collect();
    let (v, a) = (pb::Modality::Video as i32, pb::Modality::Audio as i32);
    // 2.5 s of video at 10 fps: windows of 1 s, the last one half a second.
    assert_eq!(
        got,
        [(v, 0.0, 1.0), (a, 0.0, 1.0), (v, 1.0, 2.0), (a, 1.0, 2.0), (v, 2.0, 2.5), (a, 2.0, 2.5)]
    );
}

#[tokio::test]
async fn bad_segments_are_refused_naming_the_input() {
    use bindery::modality::audio::AudioLimits;
    let wav = VIDEO.read("segments/long.wav");
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut AudioLimits| l.max_segments = 4);
    options.limits.max_items_per_request = 5;
    let mut server = start(options).await;
    let bad = [
        (segmented("negative", "audio", wav.clone(), -1.0, 0.0), "segment_seconds is -1"),
        (segmented("hop_only", "audio", wav.clone(), 0.0, 1.0), "hop_seconds is set without segment_seconds"),
        (
            segmented("many", "audio", wav.clone(), 1.0, 0.0),
            "6.0 s in segments of 1 s every 1 s is 6 segments, more than the limit of 4",
        ),
    ];
    for (input, part) in bad {
        let id = input.id.clone();
        let status = server.client.embed(uncached(vec![input])).await;
        assert_refused(status, Code::InvalidArgument, &[&format!("input \"{id}\" (audio)"), part]);
    }
    // The windows of all inputs count against the request's limit.
    let two =
        vec![segmented("a", "audio", wav.clone(), 2.0, 0.0), segmented("b", "audio", wav.clone(), 2.0, 0.0)];
    let status = server.client.embed(uncached(two)).await;
    assert_refused(
        status,
        Code::InvalidArgument,
        &["request has 6 embeddings to make", "more than the limit of 5"],
    );
    // Within the limits it goes through.
    let ok = server.client.embed(uncached(vec![segmented("ok", "audio", wav, 2.0, 0.0)])).await;
    assert_eq!(ok.expect("embed").into_inner().embeddings.len(), 3);
}

/// A 10-minute video stored per 30 s window: one item per window, its metadata naming the
/// source and the window, and a query vector of the moment (4 s of the pattern shown from 5:00
/// to 5:30, embedded on its own) finds that window first.
#[cfg(feature = "video")]
#[tokio::test]
async fn a_collection_of_a_long_videos_segments_finds_the_moment() {
    use std::collections::HashMap;
    let mut server = start_fixture().await;
    let query = server
        .client
        .embed(request(vec![segmented("q", "video", VIDEO.read("segments/moment.mp4"), 0.0, 0.0)]))
        .await
        .expect("embed the moment")
        .into_inner()
        .embeddings
        .remove(0)
        .vector;
    let mut c = collections_client(&server);
    c.create_collection(pb::CreateCollectionRequest { name: "moments".into(), ..Default::default() })
        .await
        .expect("create");
    let item = pb::Item {
        id: "talk".into(),
        source: Some(pb::item::Source::Input(segmented(
            "talk",
            "video",
            VIDEO.read("segments/ten_minutes.mp4"),
            30.0,
            0.0,
        ))),
        metadata: HashMap::from([("speaker".to_string(), "nobody".to_string())]),
        modality: 0,
    };
    let upserted = c
        .upsert(pb::UpsertRequest { collection: "moments".into(), items: vec![item] })
        .await
        .expect("upsert")
        .into_inner();
    assert_eq!(upserted.upserted, 20, "600 s in windows of 30 s");
    let hits = c
        .search(pb::SearchRequest {
            collection: "moments".into(),
            query: Some(pb::search_request::Query::Vector(pb::Vector { values: query })),
            top_k: 3,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .hits;
    let best = &hits[0];
    assert_eq!(best.id, "talk#10", "hits: {hits:?}");
    assert_eq!(best.modality, pb::Modality::Video as i32);
    let meta = |k: &str| best.metadata.get(k).map(String::as_str);
    assert_eq!(
        (meta("source_id"), meta("start_seconds"), meta("end_seconds"), meta("speaker")),
        (Some("talk"), Some("300"), Some("330"), Some("nobody"))
    );
    assert!(best.score > hits[1].score + 0.01, "the moment stands out: {hits:?}");
}

/// EmbedStream answers a message of a long file in segment mode a few windows per reply, in
/// order, `more` on all but the last, then goes on with the next message; the windows equal the
/// unary reply's.
#[tokio::test]
async fn embed_stream_sends_a_long_files_windows_as_they_are_done() {
    use futures::StreamExt;
    let wav = VIDEO.read("segments/long.wav");
    let mut server = start_fixture().await;
    let messages = vec![
        uncached(vec![segmented("long", "audio", wav.clone(), 0.5, 0.0), text("caption", "a tone")]),
        uncached(vec![text("next", "the next message")]),
    ];
    let replies: Vec<pb::EmbedResponse> = server
        .client
        .embed_stream(futures::stream::iter(messages))
        .await
        .expect("stream")
        .into_inner()
        .map(|r| r.expect("reply"))
        .collect()
        .await;
    let sizes: Vec<(usize, bool)> = replies.iter().map(|r| (r.embeddings.len(), r.more)).collect();
    // 6 s in windows of 0.5 s: 12 windows and the caption, 8 per reply; then the next message.
    assert_eq!(sizes, [(8, true), (5, false), (1, false)]);
    let streamed: Vec<&pb::Embedding> = replies[..2].iter().flat_map(|r| &r.embeddings).collect();
    assert_eq!(replies[2].embeddings[0].id, "next");
    let unary = server
        .client
        .embed(uncached(vec![segmented("long", "audio", wav, 0.5, 0.0), text("caption", "a tone")]))
        .await
        .expect("unary")
        .into_inner()
        .embeddings;
    assert_eq!(streamed.len(), unary.len());
    for (k, (s, u)) in streamed.iter().zip(&unary).enumerate() {
        assert_eq!((&s.id, &s.span), (&u.id, &u.span), "embedding {k}");
        assert!(cosine(&s.vector, &u.vector) > 0.999_999, "embedding {k}");
    }
    let last = streamed[11].span.as_ref().expect("a window");
    assert_eq!((last.start_seconds, last.end_seconds), (5.5, 6.0));
}
