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

const CAPTIONS: [&str; 32] = [
    "A dog running on the beach.",
    "a photo of a cat",
    "A man riding a horse at sunset.",
    "Two children playing football in a park.",
    "A plate of spaghetti with tomato sauce and basil.",
    "An aerial view of a city at night.",
    "A red double-decker bus in London.",
    "The sound of rain falling on a tin roof.",
    "A bee collecting pollen from a yellow flower.",
    "Snow-covered mountains reflected in a calm lake",
    "a woman playing the violin on stage",
    "A black and white photograph of an old train station.",
    "Waves crashing against the rocks during a storm",
    "A bowl of fresh fruit: apples, bananas, and grapes.",
    "People walking across a busy street in Tokyo",
    "A cute puppy sleeping on a blue blanket",
    "A chef slicing vegetables in a restaurant kitchen.",
    "The Eiffel Tower illuminated at night",
    "An astronaut floating in space above the Earth",
    "A vintage typewriter on a wooden desk",
    "Birds chirping in the early morning forest",
    "A crowd cheering at a rock concert",
    "A glass of orange juice next to a stack of pancakes",
    "a small boat sailing on the open sea",
    "A cat knocking a cup off the table",
    "Thunder rumbling in the distance",
    "A painting of sunflowers in the style of Van Gogh",
    "A microscope image of red blood cells",
    "Someone typing quickly on a mechanical keyboard",
    "A baby laughing",
    "A helicopter landing on a rooftop helipad",
    "Fireworks exploding over the harbour on New Year's Eve",
];

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
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagebind-fixture");
    match TextPreprocessor::new(&spec, &dir) {
        Ok(p) => p,
        Err(e) => panic!("cannot load the fixture tokenizer: {e}"),
    }
}

fn bench_tokenize(c: &mut Criterion) {
    let preprocessor = preprocessor();
    let len = preprocessor.context_length();
    let mut group = c.benchmark_group("tokenize");

    let mut batch = vec![0i64; len * CAPTIONS.len()];
    group.throughput(Throughput::Elements(CAPTIONS.len() as u64));
    group.bench_function("captions_x32", |b| {
        b.iter(|| {
            for (row, text) in batch.chunks_mut(len).zip(CAPTIONS) {
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

    group.throughput(Throughput::Elements(CAPTIONS.len() as u64));
    group.bench_function("clean_captions_x32", |b| {
        b.iter(|| {
            for text in CAPTIONS {
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
