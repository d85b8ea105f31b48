//! Text preprocessing (cleanup, pre-split, BPE, row assembly) with the fixture tokenizer: a
//! batch of 32 typical captions, one long paragraph that gets truncated, and cleanup alone.

use std::hint::black_box;
use std::path::Path;

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
    group.finish();
}

criterion_group!(benches, bench_tokenize);
criterion_main!(benches);
