//! bind-mini, the trained default model, binds text, images, speech and point clouds: checked
//! over gRPC on a held-out sample of its procedural world (`tests/fixtures/bind_mini`, written
//! by `tools/bindmini/make_sample.py`; none of these objects was seen in training).

use bindery::api::pb;
use bindery::server::ServerOptions;
use serde::Deserialize;

use crate::common::*;

#[derive(Deserialize)]
struct Sample {
    objects: Vec<Object>,
}

#[derive(Deserialize)]
struct Object {
    name: String,
    shape: String,
    colour: String,
    seen: bool,
    caption: String,
    image: String,
    audio: String,
    cloud: String,
}

/// Targets for object-level recall@1 on seen combinations (text -> image, point cloud -> text,
/// speech -> image); the unseen combinations' figures are printed, not asserted.
const TARGET_TEXT_IMAGE: f64 = 0.9;
const TARGET_CLOUD_TEXT: f64 = 0.8;
const TARGET_SPEECH_IMAGE: f64 = 0.9;

const BIND_MINI: Fixtures = Fixtures("bind_mini");

fn extension(name: &str) -> &str {
    name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default()
}

/// The committed models folder with no default model named, as `bindery serve` runs by default.
fn default_options() -> ServerOptions {
    let mut options = fixture_options();
    options.default_model = None;
    options
}

/// Vectors of one modality for every sample object, in sample order, from the default model.
async fn embed_all(server: &mut TestServer, inputs: Vec<pb::Input>) -> Vec<Vec<f32>> {
    let reply = server.client.embed(request(inputs)).await.expect("embed sample").into_inner();
    assert_eq!(reply.model, "bind-mini", "the default model");
    reply.embeddings.into_iter().map(|e| e.vector).collect()
}

/// Fraction of `queries` (restricted to `rows`) whose most similar gallery vector `best`
/// satisfies `hit(query, best)`.
fn recall_at_1(
    queries: &[Vec<f32>],
    gallery: &[Vec<f32>],
    rows: &[usize],
    hit: impl Fn(usize, usize) -> bool,
) -> f64 {
    let hits = rows
        .iter()
        .filter(|&&i| {
            let best = (0..gallery.len())
                .max_by(|&a, &b| {
                    cosine(&queries[i], &gallery[a]).total_cmp(&cosine(&queries[i], &gallery[b]))
                })
                .expect("non-empty gallery");
            hit(i, best)
        })
        .count();
    hits as f64 / rows.len() as f64
}

#[tokio::test]
async fn bind_mini_is_the_default_model() {
    let mut server = start(default_options()).await;
    let models = server.client.list_models(pb::ListModelsRequest {}).await.expect("list").into_inner();
    assert_eq!(models.default_model, "bind-mini");
    let bind_mini = models.models.iter().find(|m| m.name == "bind-mini").expect("bind-mini listed");
    assert_eq!(bind_mini.dimension, 128);
    assert_eq!(bind_mini.modalities.len(), 4, "text, image, audio and point cloud");
}

#[tokio::test]
async fn bind_mini_binds_text_speech_images_and_point_clouds() {
    let sample: Sample = BIND_MINI.json("sample.json");
    let objects = &sample.objects;
    // Every sample object is a distinct (shape, colour): "its own object" is the only right answer.
    let mut combos: Vec<_> = objects.iter().map(|o| (&o.shape, &o.colour)).collect();
    combos.sort();
    combos.dedup();
    assert_eq!(combos.len(), objects.len(), "sample combinations are distinct");

    let mut server = start(default_options()).await;
    let captions = embed_all(&mut server, objects.iter().map(|o| text(&o.name, &o.caption)).collect()).await;
    let images =
        embed_all(&mut server, objects.iter().map(|o| image(&o.name, BIND_MINI.read(&o.image))).collect())
            .await;
    let speech = embed_all(
        &mut server,
        objects.iter().map(|o| audio(&o.name, BIND_MINI.read(&o.audio), extension(&o.audio))).collect(),
    )
    .await;
    let clouds = embed_all(
        &mut server,
        objects.iter().map(|o| point_cloud(&o.name, BIND_MINI.read(&o.cloud), extension(&o.cloud))).collect(),
    )
    .await;
    for v in captions.iter().chain(&images).chain(&speech).chain(&clouds) {
        assert_eq!(v.len(), 128);
        assert!((norm(v) - 1.0).abs() < 1e-4, "unit vectors");
    }

    let seen: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].seen).collect();
    let unseen: Vec<usize> = (0..objects.len()).filter(|&i| !objects[i].seen).collect();
    assert!(seen.len() >= 16 && !unseen.is_empty(), "sample holds seen and unseen combinations");

    // Object level: the query's own object (shape and colour) ranks first. Colour and shape level:
    // the first-ranked object has the query's colour (shape).
    let object = |q: usize, best: usize| q == best;
    let colour = |q: usize, best: usize| objects[q].colour == objects[best].colour;
    let shape = |q: usize, best: usize| objects[q].shape == objects[best].shape;
    let pairs = [
        ("text->image", &captions, &images),
        ("image->text", &images, &captions),
        ("speech->image", &speech, &images),
        ("point cloud->text", &clouds, &captions),
        ("point cloud->image", &clouds, &images),
        ("speech->point cloud", &speech, &clouds),
    ];
    let mut colour_seen = std::collections::HashMap::new();
    let mut object_seen = std::collections::HashMap::new();
    for (label, q, g) in pairs {
        let figures = [
            recall_at_1(q, g, &seen, object),
            recall_at_1(q, g, &unseen, object),
            recall_at_1(q, g, &seen, colour),
            recall_at_1(q, g, &seen, shape),
        ];
        eprintln!(
            "bind-mini recall@1 {label}: object seen {:.3}, object unseen combinations {:.3}, colour seen {:.3}, shape seen {:.3}",
            figures[0], figures[1], figures[2], figures[3]
        );
        object_seen.insert(label, figures[0]);
        colour_seen.insert(label, figures[2]);
    }
    // Colour is bound across text, images and point clouds.
    for label in ["text->image", "image->text", "point cloud->text", "point cloud->image"] {
        assert!(
            colour_seen[label] >= 0.9,
            "{label} colour recall@1 on seen combinations: {:.3}",
            colour_seen[label]
        );
    }
    // Whole objects (shape and colour).
    for (label, target) in [
        ("text->image", TARGET_TEXT_IMAGE),
        ("point cloud->text", TARGET_CLOUD_TEXT),
        ("speech->image", TARGET_SPEECH_IMAGE),
    ] {
        assert!(
            object_seen[label] >= target,
            "{label} object recall@1 on seen combinations: {:.3} (expected >= {target})",
            object_seen[label]
        );
    }
}
