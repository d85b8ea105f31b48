//! Text preprocessing (cleanup, pre-split, BPE, row assembly) with the fixture tokenizer: a
//! batch of 32 typical captions, one long paragraph that gets truncated, and cleanup alone; then
//! the sets `tools/bench_text_reference.py` times on the reference, each text written into its
//! row of one batch tensor: `benches/text_corpus.json` (the end-to-end captions and a mixed
//! corpus of ASCII, accented, CJK, emoji, mojibake and long texts) and the text goldens.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use bindery::modality::text::{Clean, TextPreprocess, TokenizerKind};
use bindery::modality::text::{TextPreprocessor, clean};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn long_text() -> String {
    let paragraph = "The old lighthouse stood at the edge of the cliff, its white paint peeling \
                     after decades of salt spray and winter storms. Fishermen still looked for \
                     its beam on foggy nights, although the lamp had been automated long ago. ";
    paragraph.repeat(8)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// The named sets of `benches/text_corpus.json`, then the golden texts that are not empty
/// after cleanup (bindery refuses those; the reference script leaves them out too).
fn corpus_sets() -> Vec<(&'static str, Vec<String>)> {
    let corpus = read_json(&repo().join("benches/text_corpus.json"));
    let mut goldens = Vec::new();
    for file in ["tokenizer_goldens.json", "ftfy_goldens.json"] {
        let cases = read_json(&repo().join("tests/fixtures/text").join(file));
        for case in cases.as_array().into_iter().flatten() {
            if case["cleaned"].as_str().is_some_and(|c| !c.is_empty())
                && let Some(text) = case["text"].as_str()
            {
                goldens.push(text.to_owned());
            }
        }
    }
    vec![
        ("e2e_captions_x256", strings(&corpus["e2e_captions"])),
        ("mixed_x256", strings(&corpus["mixed"])),
        ("goldens", goldens),
    ]
}

fn preprocessor() -> TextPreprocessor {
    let spec = TextPreprocess {
        tokenizer: "tokenizer.json".into(),
        tokenizer_kind: TokenizerKind::Clip,
        clean: Clean::Lower,
        context_length: 77,
        start_token: Some(49406),
        end_token: Some(49407),
        pad_token: 0,
        trim_padding: false,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagebind-fixture");
    match TextPreprocessor::new(&spec, &dir) {
        Ok(p) => p,
        Err(e) => panic!("cannot load the fixture tokenizer: {e}"),
    }
}

fn bench_tokenize(c: &mut Criterion) {
    let preprocessor = preprocessor();
    // 32 typical captions, the set `captions_x32` of the reference script.
    let captions = strings(&read_json(&repo().join("benches/text_corpus.json"))["captions"]);
    assert_eq!(captions.len(), 32, "benches/text_corpus.json: captions");
    let len = preprocessor.context_length();
    let mut group = c.benchmark_group("tokenize");

    let mut batch = vec![0i64; len * captions.len()];
    group.throughput(Throughput::Elements(captions.len() as u64));
    group.bench_function("captions_x32", |b| {
        b.iter(|| {
            for (row, text) in batch.chunks_mut(len).zip(&captions) {
                let encoded = preprocessor.encode_into(black_box(text), row);
                black_box(encoded.is_ok());
            }
            black_box(&batch);
        })
    });

    let long = long_text();
    let mut row = vec![0i64; len];
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("long_text", |b| {
        b.iter(|| {
            let encoded = preprocessor.encode_into(black_box(&long), &mut row);
            black_box((encoded.is_ok(), &row));
        })
    });

    group.throughput(Throughput::Elements(captions.len() as u64));
    group.bench_function("clean_captions_x32", |b| {
        b.iter(|| {
            for text in &captions {
                black_box(clean(black_box(text)));
            }
        })
    });

    for (name, texts) in corpus_sets() {
        assert!(!texts.is_empty(), "{name}: no texts");
        let mut batch = vec![0i64; len * texts.len()];
        group.throughput(Throughput::Elements(texts.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for (row, text) in batch.chunks_mut(len).zip(&texts) {
                    let encoded = preprocessor.encode_into(black_box(text), row);
                    black_box(encoded.is_ok());
                }
                black_box(&batch);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tokenize);
criterion_main!(benches);
