//! Cutting id padding (`trim_padding`): a text tower exported with a free length axis runs each
//! batch at the length its rows use, in groups of similar length, and serves the vectors it
//! serves when it runs every row at the whole context: ImageBind's, LanguageBind's (padded with
//! its end id) and CLAP's (bidirectional, padding masked).

use bindery::server;

use crate::common::*;

/// Texts from one word to past the 77-id context, including ones whose last word before the end
/// id is id 0 (`!`), the same value as the padding.
fn texts() -> Vec<(String, String)> {
    let words = "a small brown dog runs across the wet grass of a city park at dawn while two children \
                 throw a red frisbee and an old man reads";
    let words: Vec<&str> = words.split_whitespace().collect();
    let mut out = Vec::new();
    for n in [1, 2, 3, 5, 8, 13, 21, 30] {
        out.push(words.iter().cycle().take(n).copied().collect::<Vec<_>>().join(" "));
    }
    out.push(words.iter().cycle().take(120).copied().collect::<Vec<_>>().join(" "));
    out.extend(["wow!".to_string(), "stop! look!".to_string(), "!".to_string()]);
    out.push(words.iter().cycle().take(70).copied().collect::<Vec<_>>().join(" "));
    out.into_iter().enumerate().map(|(i, t)| (format!("t{i}"), t)).collect()
}

async fn embed(server: &mut TestServer, texts: &[(String, String)]) -> Vec<Vec<f32>> {
    let inputs = texts.iter().map(|(id, t)| text(id, t)).collect();
    let reply = server.client.embed(uncached(inputs)).await.expect("embed").into_inner();
    let ids: Vec<&str> = reply.embeddings.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, texts.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), "request order");
    reply.embeddings.into_iter().map(|e| e.vector).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Serves `model`'s text tower twice, as its manifest says (cut padding) and with
/// `trim_padding` removed (every row at the whole context), and checks that one request holding
/// every length gives, in request order, the vectors of the whole rows and of each text alone.
async fn assert_cut_serves_whole_rows(model: &str) {
    let texts = texts();
    let manifest = manifest_sections(model, &["text"]);
    assert!(manifest.contains("trim_padding = true\n"), "{model} cuts its padding");
    let cut_dir = model_folder(model, &manifest);
    let whole_dir = model_folder(model, &manifest.replace("trim_padding = true\n", ""));
    let mut cut = start_model_folder(&cut_dir, model).await;
    let mut whole = start_model_folder(&whole_dir, model).await;

    // One request: every length in one batch, run in groups and put back in order.
    let batched = embed(&mut cut, &texts).await;
    let reference = embed(&mut whole, &texts).await;
    for (i, (id, t)) in texts.iter().enumerate() {
        let alone = embed(&mut cut, std::slice::from_ref(&texts[i])).await;
        let d_whole = max_abs_diff(&batched[i], &reference[i]);
        let d_alone = max_abs_diff(&batched[i], &alone[0]);
        assert!(d_whole <= 1e-6, "{model} {id} ({t:?}): cut batch vs whole context differ by {d_whole}");
        assert!(d_alone <= 1e-6, "{model} {id} ({t:?}): in a batch vs alone differ by {d_alone}");
    }
    // Different texts give different vectors: a mix-up of rows would not pass unnoticed above.
    assert!(max_abs_diff(&batched[0], &batched[8]) > 1e-3, "{model}");
}

#[tokio::test]
async fn cut_batches_serve_the_vectors_of_whole_rows_in_request_order() {
    // ImageBind pads with 0, which is also a word's id ("!").
    assert_cut_serves_whole_rows("imagebind-fixture").await;
}

#[tokio::test]
async fn a_tokenizer_that_pads_with_its_end_id_keeps_the_end_id_it_pools_at() {
    // LanguageBind pads with <|endoftext|>: the first pad is the end id the tower pools at.
    assert_cut_serves_whole_rows("languagebind-fixture").await;
}

#[tokio::test]
async fn a_bidirectional_tower_that_masks_its_padding_is_cut_too() {
    // CLAP's RoBERTa attends both ways but masks the padding (id 1) out of every position.
    assert_cut_serves_whole_rows("clap-fixture").await;
}

#[test]
fn trim_padding_on_a_tower_of_fixed_length_is_refused_at_load() {
    // SigLIP's text tower reads the padding (no causal mask, last-token pooling), so its export
    // keeps the length fixed at 64.
    let manifest = manifest_sections("siglip-fixture", &["text"]);
    assert!(!manifest.contains("trim_padding"));
    let manifest = manifest.replacen("pad_token = 0\n", "pad_token = 0\ntrim_padding = true\n", 1);
    assert!(manifest.contains("trim_padding"), "the SigLIP fixture pads with 0");
    let dir = model_folder("siglip-fixture", &manifest);
    let mut options = fixture_options();
    options.models_dir = dir.path().to_path_buf();
    options.default_model = Some("siglip-fixture".into());
    let error = server::load_engine(&options).err().expect("refused").to_string();
    for part in ["siglip-fixture", "text", "trim_padding", "text.onnx", "64"] {
        assert!(error.contains(part), "{error:?} lacks {part:?}");
    }
}
