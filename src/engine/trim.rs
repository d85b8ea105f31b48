//! Cutting padding off id rows before a tower runs.
//!
//! A text tower with causal attention pooled at the end id reads nothing after a row's last id,
//! yet a batch is padded to the whole context (77 ids for CLIP). When the pipeline marks such a
//! tensor ([`TensorSpec::trailing_pad`]) and the tower takes any length, each batch runs at the
//! length its rows use. Rows are sorted by length and split into runs where that saves more work
//! than another run costs, so one long text does not make every short one in its batch pay for
//! the whole context.

use crate::modality::TensorSpec;

/// Rows of one tower run and the length its cut tensors keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// Batch rows, in the order the run takes them.
    pub rows: Vec<usize>,
    /// Columns kept of each cut tensor's last axis.
    pub width: usize,
}

/// What one more tower run costs, in id cells (rows x columns) of work it must save to be worth
/// it. On the fixture text tower a run's fixed cost is about 270 cells (the time of a batch of
/// 32 at length 12, less 32 x 12 cells at the per-cell rate from lengths 12 to 77); on a
/// ViT-B-sized tower it is negligible, so splitting there is decided by the cells alone.
const RUN_COST_CELLS: usize = 256;

/// Length each item uses of a padded tensor: through the first `pad` after the last value of
/// its last axis that is not `pad`, over all of its rows along the other axes; at least 1, so a
/// tower never gets an empty axis. The first padding column is kept because a tokenizer that
/// pads with its end id (LanguageBind's) ends every text with it, and the tower pools there; for
/// the others it is one column more.
pub(crate) fn used_lengths(values: &[i64], items: usize, item_shape: &[usize], pad: i64) -> Vec<usize> {
    let last = item_shape.last().copied().unwrap_or(1).max(1);
    let item_len = item_shape.iter().product::<usize>().max(1);
    (0..items)
        .map(|item| {
            let slot = values.get(item * item_len..(item + 1) * item_len).unwrap_or(&[]);
            slot.chunks(last)
                .map(|row| row.iter().rposition(|v| *v != pad).map_or(0, |i| (i + 2).min(row.len())))
                .max()
                .unwrap_or(0)
                .max(1)
        })
        .collect()
}

/// Splits rows of the given used `lengths` into tower runs, each cut to its longest row, so that
/// cells run plus [`RUN_COST_CELLS`] per run is least. `full` is the uncut length. Returns `None`
/// when the batch runs whole and as it is: one run of every row at the full length.
pub(crate) fn plan(lengths: &[usize], full: usize) -> Option<Vec<Group>> {
    let n = lengths.len();
    if n == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&row| lengths[row]);
    let sorted: Vec<usize> = order.iter().map(|&row| lengths[row].min(full)).collect();
    // best[j]: least cost of the first j sorted rows; start[j]: where the last run of that begins.
    // Runs are contiguous in length order, so this is exact; n is at most a batch (hundreds).
    let mut best = vec![usize::MAX; n + 1];
    let mut start = vec![0; n + 1];
    best[0] = 0;
    for j in 1..=n {
        for i in 0..j {
            let cost = best[i].saturating_add((j - i) * sorted[j - 1] + RUN_COST_CELLS);
            if cost < best[j] {
                best[j] = cost;
                start[j] = i;
            }
        }
    }
    let mut groups = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = start[j];
        groups.push(Group { rows: order[i..j].to_vec(), width: sorted[j - 1] });
        j = i;
    }
    groups.reverse();
    if let [only] = groups.as_mut_slice() {
        if only.width >= full {
            return None;
        }
        // One run: keep the batch's own row order.
        only.rows.sort_unstable();
    }
    Some(groups)
}

/// The used length of each item over every cut tensor of a batch (`values` of each spec's buffer,
/// `None` for a float buffer), or `None` when no tensor may be cut.
pub(crate) fn batch_lengths(
    specs: &[TensorSpec],
    values: &[Option<&[i64]>],
    items: usize,
) -> Option<Vec<usize>> {
    let mut lengths: Option<Vec<usize>> = None;
    for (spec, values) in specs.iter().zip(values) {
        let (Some(pad), Some(values)) = (spec.trailing_pad, values) else { continue };
        let used = used_lengths(values, items, &spec.item_shape, pad);
        lengths = Some(match lengths {
            None => used,
            Some(prev) => prev.into_iter().zip(used).map(|(a, b)| a.max(b)).collect(),
        });
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_lengths_keep_the_first_padding_after_the_last_value() {
        // Id 0 inside a row ("!" in CLIP's vocabulary) is not cut: only trailing padding is.
        let rows = [49406, 0, 49407, 0, 0, 0, 49406, 5, 6, 7, 49407, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(used_lengths(&rows, 3, &[6], 0), vec![4, 6, 1]);
        // Padding with the end id (LanguageBind): the first end id stays, where the tower pools.
        let rows = [49406, 5, 6, 49407, 49407, 49407];
        assert_eq!(used_lengths(&rows, 1, &[6], 49407), vec![4]);
        // Several rows per item: the longest counts.
        assert_eq!(used_lengths(&[1, 0, 0, 1, 1, 0], 1, &[2, 3], 0), vec![3]);
    }

    #[test]
    fn a_batch_of_short_rows_runs_once_cut_to_its_longest_row_in_its_own_order() {
        let plan = plan(&[12, 5, 9], 77).unwrap();
        assert_eq!(plan, vec![Group { rows: vec![0, 1, 2], width: 12 }]);
    }

    #[test]
    fn a_batch_that_needs_the_whole_context_runs_as_it_is() {
        assert_eq!(plan(&[77, 10], 77), None);
        assert_eq!(plan(&[77], 77), None);
        assert_eq!(plan(&[], 77), None);
    }

    #[test]
    fn long_rows_run_apart_when_that_saves_more_than_a_run_costs() {
        // 28 short captions and 4 texts at the whole context: two runs save 28 x 60 cells.
        let mut lengths = vec![17; 28];
        lengths.extend([77; 4]);
        lengths.swap(3, 30);
        let plan = plan(&lengths, 77).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].width, 17);
        assert_eq!(plan[1].width, 77);
        let mut long = plan[1].rows.clone();
        long.sort_unstable();
        assert_eq!(long, vec![3, 28, 29, 31]);
        let mut all: Vec<usize> = plan.iter().flat_map(|g| g.rows.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..32).collect::<Vec<_>>());
    }

    #[test]
    fn rows_of_nearly_the_same_length_are_not_split() {
        // Splitting 4 rows of 20 from 4 of 22 saves 8 cells, far less than a run costs.
        let plan = plan(&[20, 22, 20, 22, 20, 22, 20, 22], 77).unwrap();
        assert_eq!(plan, vec![Group { rows: (0..8).collect(), width: 22 }]);
    }
}
