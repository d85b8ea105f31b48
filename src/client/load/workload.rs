//! What the load generator sends: the modality mix, the payload pools (files or generated) and the
//! requests drawn from them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand_pcg::Pcg64Mcg;

use super::generate::{self, index, rng, unit};
use super::{ImageEncoding, LoadError};
use crate::modality::{self, Modality};
use crate::shared::pb;

/// Generated payloads per modality; requests cycle through them at random.
const GENERATED_VARIANTS: usize = 8;
/// Generated captions.
const GENERATED_CAPTIONS: usize = 64;

/// Weights of the modalities in the generated load, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<(Modality, f64)>,
}

/// The names `--mix` takes.
fn served_names() -> String {
    modality::KINDS.iter().map(|k| k.modality.as_str()).collect::<Vec<_>>().join(", ")
}

/// A `--mix` value that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid mix {mix:?}: expected `name=weight,...` with names of modalities bindery serves ({names})",
    mix = .0,
    names = served_names()
)]
pub struct MixError(String);

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MixError(s.to_string());
        let mut weights: Vec<(Modality, f64)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => (n.trim(), w.trim().parse::<f64>().map_err(|_| bad())?),
                None => (part, 1.0),
            };
            let name = match name.to_ascii_lowercase().replace('-', "_").as_str() {
                "pointcloud" | "points" => "point_cloud".to_string(),
                other => other.to_string(),
            };
            let kind = name.parse::<Modality>().map_err(|_| bad())?;
            if modality::kind(kind).is_none() {
                return Err(bad());
            }
            if !weight.is_finite() || weight < 0.0 || weights.iter().any(|(k, _)| *k == kind) {
                return Err(bad());
            }
            if weight > 0.0 {
                weights.push((kind, weight));
            }
        }
        if weights.is_empty() {
            return Err(bad());
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        weights.iter_mut().for_each(|(_, w)| *w /= total);
        weights.sort_by_key(|(k, _)| *k);
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (kind, weight)) in self.weights.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{kind}={}", (weight * 1000.0).round() / 1000.0)?;
        }
        Ok(())
    }
}

impl Mix {
    /// Modalities and their shares (summing to 1).
    pub fn shares(&self) -> impl Iterator<Item = (Modality, f64)> + '_ {
        self.weights.iter().copied()
    }
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected WIDTHxHEIGHT such as 640x480, got {s:?}");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 {
        return Err(bad());
    }
    Ok((w, h))
}

/// Parameters of the built-in payload generators.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Generated payloads")]
pub struct GeneratorOptions {
    /// Generated images: width x height.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    pub image_size: (u32, u32),
    /// Generated images: encoding.
    #[arg(long, value_enum, default_value_t = ImageEncoding::Jpeg)]
    pub image_format: ImageEncoding,
    /// Generated audio: length of each clip.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub audio_duration: std::time::Duration,
    /// Generated audio: sample rate in Hz.
    #[arg(long, default_value_t = 16_000)]
    pub audio_sample_rate: u32,
    /// Generated point clouds: points per cloud.
    #[arg(long, default_value_t = 8192)]
    pub points: usize,
    /// Seed of the payload generators and of the modality draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Where a modality's payloads come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files given with --payloads.
    Files(usize),
    /// The built-in generator.
    Generated,
}

/// The payloads and the request shape of a load test.
pub struct Workload {
    mix: Mix,
    /// Cumulative shares, for drawing a modality.
    cumulative: Vec<(Modality, f64)>,
    pools: BTreeMap<Modality, Vec<pb::input::Payload>>,
    sources: Vec<(Modality, Source)>,
    batch: usize,
    model: String,
    cache: Option<bool>,
}

impl Workload {
    /// Sets the per-request cache switch sent to the server (`None`: the server's default).
    pub fn with_cache(mut self, cache: Option<bool>) -> Self {
        self.cache = cache;
        self
    }

    /// Loads the payload files for the modalities of `mix` and generates the rest.
    pub fn build(
        mix: Mix,
        paths: &[PathBuf],
        generator: &GeneratorOptions,
        batch: usize,
        model: String,
    ) -> Result<Self, LoadError> {
        let wanted: Vec<Modality> = mix.shares().map(|(k, _)| k).collect();
        let mut files: Vec<PathBuf> = Vec::new();
        for path in paths {
            collect_files(path, path.is_dir(), &mut files)?;
        }
        files.sort();
        let mut pools: BTreeMap<Modality, Vec<pb::input::Payload>> = BTreeMap::new();
        for file in &files {
            let ext = extension(file);
            let Some(kind) = modality::kind_of_extension(&ext) else { continue };
            if wanted.contains(&kind.modality) {
                let bytes = std::fs::read(file)
                    .map_err(|source| LoadError::Read { path: file.to_path_buf(), source })?;
                pools.entry(kind.modality).or_default().extend((kind.inputs_from_file)(bytes, &ext));
            }
        }
        let mut sources = Vec::new();
        for kind in Modality::ALL.into_iter().filter(|k| wanted.contains(k)) {
            let pool = pools.entry(kind).or_default();
            if pool.is_empty() {
                *pool = generated(kind, generator)?;
                sources.push((kind, Source::Generated));
            } else {
                sources.push((kind, Source::Files(pool.len())));
            }
        }
        let mut acc = 0.0;
        let cumulative = mix
            .shares()
            .map(|(k, w)| {
                acc += w;
                (k, acc)
            })
            .collect();
        Ok(Workload { mix, cumulative, pools, sources, batch, model, cache: None })
    }

    /// One-line notes on where each modality's payloads come from.
    pub fn notes(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|(kind, source)| match source {
                Source::Files(n) => format!("{kind}: {n} payloads from files"),
                Source::Generated => format!("{kind}: generated payloads"),
            })
            .collect()
    }

    /// The modality mix.
    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// Inputs per request.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Model name sent with each request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Draws one request of `batch` inputs.
    pub fn request(&self, rng: &mut Pcg64Mcg) -> pb::EmbedRequest {
        let inputs = (0..self.batch)
            .map(|_| {
                let u = unit(rng);
                let kind = self
                    .cumulative
                    .iter()
                    .find(|(_, c)| u < *c)
                    .or(self.cumulative.last())
                    .map_or(Modality::Text, |(k, _)| *k);
                let pool = self.pools.get(&kind).map_or(&[][..], Vec::as_slice);
                let payload = pool.get(index(rng, pool.len())).cloned();
                pb::Input { id: String::new(), payload }
            })
            .collect();
        pb::EmbedRequest { model: self.model.clone(), inputs, cache: self.cache, ..Default::default() }
    }
}

fn extension(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

/// Adds `path` (a file) or the files under it (a folder) to `out`. Files named explicitly must have
/// a known extension; files found in folders without one are skipped.
fn collect_files(path: &Path, in_folder: bool, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            collect_files(&entry.path(), true, out)?;
        }
    } else if modality::kind_of_extension(&extension(path)).is_some() {
        out.push(path.to_path_buf());
    } else if !in_folder {
        return Err(LoadError::UnknownPayload(path.to_path_buf()));
    }
    Ok(())
}

/// The built-in payloads of `kind`: the load tool's own tunable generators for the founding
/// modalities, the registration's examples for the others; a modality with neither needs files.
fn generated(kind: Modality, options: &GeneratorOptions) -> Result<Vec<pb::input::Payload>, LoadError> {
    use pb::input::Payload;
    // One stream per modality, in the order of `Modality::ALL`, so a seed gives the same payloads
    // whatever the mix.
    let stream = Modality::ALL.iter().position(|m| *m == kind).unwrap_or_default();
    let mut rng = rng(options.seed, 1 + stream as u64);
    let fail = |what| move |message| LoadError::Generate { what, message };
    Ok(match kind {
        Modality::Text => {
            (0..GENERATED_CAPTIONS).map(|_| Payload::Text(generate::caption(&mut rng))).collect()
        }
        Modality::Image => (0..GENERATED_VARIANTS)
            .map(|_| {
                generate::image(&mut rng, options.image_size, options.image_format)
                    .map(Payload::Image)
                    .map_err(fail("an image"))
            })
            .collect::<Result<_, _>>()?,
        Modality::Audio => (0..GENERATED_VARIANTS)
            .map(|_| {
                generate::wav(&mut rng, options.audio_duration, options.audio_sample_rate)
                    .map(|data| {
                        Payload::Audio(pb::Audio { data, format_hint: "wav".into(), ..Default::default() })
                    })
                    .map_err(fail("an audio clip"))
            })
            .collect::<Result<_, _>>()?,
        Modality::PointCloud => (0..GENERATED_VARIANTS)
            .map(|_| {
                let (xyz, rgb) = generate::point_cloud(&mut rng, options.points);
                Payload::PointCloud(pb::PointCloud { xyz, rgb, ..Default::default() })
            })
            .collect(),
        other => match modality::kind(other).and_then(|kind| kind.examples) {
            Some(examples) => examples(options.seed),
            None => {
                return Err(LoadError::Generate {
                    what: "payloads",
                    message: format!(
                        "bindery load has no {other} generator; give {other} files with --payloads"
                    ),
                });
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_normalises_and_rejects_unknown_names() {
        let mix: Mix = "text=0.5,image=0.3,audio=0.1,point_cloud=0.1".parse().unwrap();
        let shares: Vec<_> = mix.shares().collect();
        assert_eq!(shares.len(), 4);
        assert!((shares.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-12);
        let mix: Mix = "image,text=3".parse().unwrap();
        assert_eq!(mix.shares().collect::<Vec<_>>(), vec![(Modality::Text, 0.75), (Modality::Image, 0.25)]);
        assert!("smell=1".parse::<Mix>().is_err());
        assert!("text=-1".parse::<Mix>().is_err());
        assert!("text=0".parse::<Mix>().is_err());
        assert!("text,text".parse::<Mix>().is_err());
    }

    #[test]
    fn size_parses() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert!(parse_size("640").is_err());
        assert!(parse_size("0x4").is_err());
    }

    #[test]
    fn requests_follow_the_mix() {
        let options = GeneratorOptions {
            image_size: (32, 24),
            image_format: ImageEncoding::Png,
            audio_duration: std::time::Duration::from_millis(100),
            audio_sample_rate: 16_000,
            points: 64,
            seed: 7,
        };
        let mix: Mix = "text=3,point_cloud=1".parse().unwrap();
        let workload = Workload::build(mix, &[], &options, 4, String::new()).unwrap();
        let mut rng = rng(7, 0);
        let (mut text, mut points) = (0usize, 0usize);
        for _ in 0..1000 {
            let request = workload.request(&mut rng);
            assert_eq!(request.inputs.len(), 4);
            for input in request.inputs {
                match input.payload {
                    Some(pb::input::Payload::Text(_)) => text += 1,
                    Some(pb::input::Payload::PointCloud(p)) => {
                        assert_eq!(p.xyz.len(), 64 * 3);
                        points += 1;
                    }
                    other => panic!("unexpected payload {other:?}"),
                }
            }
        }
        let share = text as f64 / (text + points) as f64;
        assert!((share - 0.75).abs() < 0.03, "text share {share}");
    }
}
