//! Media URLs in requests: every `media_url` input is fetched (under the server's
//! [`MediaFetcher`] policy) and replaced by the file it names, read as if it had been sent inline.

use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use super::media_url::MediaFetcher;
use super::pb;
use crate::modality;
use crate::shared::Modality;

/// Fetches at most this many URLs of one request at once.
const FETCHES_IN_FLIGHT: usize = 8;

/// Replaces each media URL among `inputs` by its file; the status names the input (its id, or its
/// position among `inputs`) and the problem.
pub async fn resolve(fetcher: &MediaFetcher, mut inputs: Vec<&mut pb::Input>) -> Result<(), Status> {
    let jobs: Vec<(usize, String, pb::MediaUrl)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(position, input)| match &input.payload {
            Some(pb::input::Payload::MediaUrl(media)) => {
                let name = if input.id.is_empty() { format!("#{position}") } else { input.id.clone() };
                Some((position, name, media.clone()))
            }
            _ => None,
        })
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let fetched: Vec<(usize, pb::input::Payload)> = futures::stream::iter(jobs)
        .map(|(position, name, media)| {
            let fetcher = fetcher.clone();
            async move {
                let payload = fetch(&fetcher, media)
                    .await
                    .map_err(|(code, e)| Status::new(code, format!("input {name}: {e}")))?;
                Ok::<_, Status>((position, payload))
            }
        })
        .buffer_unordered(FETCHES_IN_FLIGHT)
        .try_collect()
        .await?;
    for (position, payload) in fetched {
        inputs[position].payload = Some(payload);
    }
    Ok(())
}

async fn fetch(
    fetcher: &MediaFetcher,
    media: pb::MediaUrl,
) -> Result<pb::input::Payload, (tonic::Code, String)> {
    let invalid = |message: String| (tonic::Code::InvalidArgument, message);
    let modality = match Modality::from_pb(media.modality) {
        Ok(Some(modality)) => modality,
        Ok(None) => return Err(invalid("media_url needs a modality (the kind of file it names)".into())),
        Err(value) => return Err(invalid(format!("media_url has an unknown modality {value}"))),
    };
    if modality == Modality::Text {
        return Err(invalid("text is sent inline, not by media_url".into()));
    }
    let fetched = fetcher.fetch(&media.url).await.map_err(|e| (e.code(), e.to_string()))?;
    let hint = if media.format_hint.is_empty() {
        extension(&fetched.final_url)
    } else {
        media.format_hint.to_ascii_lowercase()
    };
    modality::input_from_bytes(modality, Vec::from(fetched.bytes), &hint).map_err(invalid)
}

/// The lower-case extension of a URL's last path segment ("" when it has none).
fn extension(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_comes_from_the_last_path_segment() {
        assert_eq!(extension("https://a.test/media/cat.JPG?size=2#x"), "jpg");
        assert_eq!(extension("https://a.test/media/clip.v2.wav"), "wav");
        assert_eq!(extension("https://a.test/media/"), "");
        assert_eq!(extension("https://a.test/.hidden"), "");
        assert_eq!(extension("https://a.test"), "");
    }
}
