//! `Similarity` and `Classify` at the edge: protobuf requests to the similarity service's types,
//! and its results back.

use super::{convert, pb};
use crate::service::Operand;
use crate::service::similarity::{
    Classified, ClassifyQuery, Similarity, SimilarityError, SimilarityMatrix, SimilarityQuery,
};

/// Names the unnamed inputs of one side `side[i]`, as errors and replies call them.
pub fn name_inputs(side: &str, items: &mut [pb::SimilarityItem]) {
    for (i, item) in items.iter_mut().enumerate() {
        if let Some(pb::similarity_item::Item::Input(input)) = &mut item.item
            && input.id.is_empty()
        {
            input.id = format!("{side}[{i}]");
        }
    }
}

/// One side's protobuf items as operands; unnamed inputs are called `side[i]`.
fn operands(side: &str, mut items: Vec<pb::SimilarityItem>) -> Result<Vec<Operand>, SimilarityError> {
    name_inputs(side, &mut items);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item.item {
            Some(pb::similarity_item::Item::Input(input)) => {
                let mut converted = convert::items(vec![input])?;
                converted
                    .pop()
                    .map(Operand::Input)
                    .ok_or_else(|| SimilarityError::MissingItem { what: format!("{side}[{i}]") })
            }
            Some(pb::similarity_item::Item::Vector(v)) => Ok(Operand::Vector(v.values)),
            None => Err(SimilarityError::MissingItem { what: format!("{side}[{i}]") }),
        })
        .collect()
}

/// `Similarity`: the cosine matrix of queries x candidates, and the softmax per query.
pub async fn similarity(
    service: &Similarity,
    request: pb::SimilarityRequest,
) -> Result<pb::SimilarityResponse, SimilarityError> {
    let query = SimilarityQuery {
        model: request.model,
        queries: operands("queries", request.queries)?,
        candidates: operands("candidates", request.candidates)?,
        softmax: request.softmax,
        logit_scale: request.logit_scale,
    };
    let SimilarityMatrix { model, rows, cols, cosine, logits, probabilities } =
        service.similarity(query).await?;
    Ok(pb::SimilarityResponse { model, rows: rows as u32, cols: cols as u32, cosine, logits, probabilities })
}

/// `Classify`: zero-shot probabilities of `labels` for each input.
pub async fn classify(
    service: &Similarity,
    request: pb::ClassifyRequest,
) -> Result<pb::ClassifyResponse, SimilarityError> {
    let query = ClassifyQuery {
        model: request.model,
        inputs: convert::items(request.inputs)?,
        labels: request.labels,
        templates: request.templates,
        template_set: request.template_set,
        top_k: request.top_k as usize,
        logit_scale: request.logit_scale,
    };
    let Classified { model, labels, results, label_cache_hits, label_cache_misses } =
        service.classify(query).await?;
    let results = results
        .into_iter()
        .map(|r| pb::Classification {
            top: r
                .top
                .iter()
                .map(|&i| pb::LabelScore {
                    label: labels[i].clone(),
                    probability: r.probabilities[i],
                    cosine: r.cosines[i],
                })
                .collect(),
            id: r.id,
            modality: r.modality.to_pb() as i32,
            probabilities: r.probabilities,
            cosines: r.cosines,
            logit_scale: r.logit_scale,
        })
        .collect();
    Ok(pb::ClassifyResponse {
        model,
        results,
        label_cache_hits: label_cache_hits as u32,
        label_cache_misses: label_cache_misses as u32,
    })
}
