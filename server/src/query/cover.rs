//! Which layer chunks answer a time range, exactly and with the fewest rows.
//!
//! Every layer row holds sums, and every rollup is the exact sum of the rows below it,
//! so a range can be answered by adding chunks that lie inside it and, where cheaper,
//! by taking a coarser chunk whole and subtracting the finer chunks of it that lie
//! outside: "May minus its last three hours" is the May row minus three hourly chunks,
//! not thirty daily chunks plus twenty-one hourly ones. Sums are integers, so the
//! subtraction is exact; a group whose rows all fall outside nets to zero line items
//! and is dropped by the plan.
//!
//! Partial hours at the range's edges are read from the fine layer and cut by the exact
//! time predicate; everything else is whole chunks, read without a time filter.

use super::{plan::LayerChoice, spec::Granularity};
use crate::layers::{
    Chunk, DAY_MICROS, HOUR_MICROS, PeriodLayers, day_start, hour_start, month_start,
    next_month_start,
};

/// Chunks selected for one range, by how they are used.
#[derive(Debug, Default, Clone)]
pub struct Selection<'a> {
    /// Added whole: they lie inside the range.
    pub whole: Vec<&'a Chunk>,
    /// Added after the exact time predicate: fine chunks the range cuts.
    pub partial: Vec<&'a Chunk>,
    /// Subtracted whole: finer chunks of a coarser one taken whole, lying outside.
    pub subtract: Vec<&'a Chunk>,
}

impl<'a> Selection<'a> {
    /// Rows the selection reads.
    pub fn rows(&self) -> usize {
        [&self.whole, &self.partial, &self.subtract]
            .iter()
            .flat_map(|v| v.iter())
            .map(|c| c.batch.num_rows())
            .sum()
    }

    fn push(&mut self, chunk: Option<&'a Chunk>, add: bool) {
        if let Some(c) = chunk {
            if add {
                self.whole.push(c);
            } else {
                self.subtract.push(c);
            }
        }
    }

    fn append(&mut self, other: Selection<'a>) {
        self.whole.extend(other.whole);
        self.partial.extend(other.partial);
        self.subtract.extend(other.subtract);
    }
}

fn ceil_hour(t: i64) -> i64 {
    let h = hour_start(t);
    if h == t { h } else { h + HOUR_MICROS }
}

/// The chunks of one period that answer `[start, end)` (µs) for a granularity.
pub fn select<'a>(
    layers: &'a PeriodLayers,
    start: i64,
    end: i64,
    granularity: Granularity,
    choice: LayerChoice,
) -> Selection<'a> {
    let mut out = Selection::default();
    let (h0, h1) = (ceil_hour(start), hour_start(end));
    if choice == LayerChoice::FineOnly || granularity == Granularity::Hourly || h0 >= h1 {
        for c in layers.fine.chunks_overlapping(start, end) {
            if c.start >= start && c.end <= end {
                out.whole.push(c);
            } else {
                out.partial.push(c);
            }
        }
        return out;
    }
    if start < h0 {
        out.partial.extend(layers.fine.chunk_at(hour_start(start)));
    }
    if h1 < end {
        out.partial.extend(layers.fine.chunk_at(h1));
    }
    let whole = if granularity == Granularity::Daily {
        days(layers, h0, h1, true)
    } else {
        months(layers, h0, h1)
    };
    out.append(whole);
    out
}

/// Hour-aligned `[lo, hi)` as whole chunks, added (`add`) or subtracted: whole days
/// from the daily layer; a partial day either as its hours, or as the day minus the
/// hours outside, whichever reads fewer rows.
fn days(layers: &PeriodLayers, lo: i64, hi: i64, add: bool) -> Selection<'_> {
    let mut out = Selection::default();
    let mut day = day_start(lo);
    while day < hi {
        let next = day + DAY_MICROS;
        let (a, b) = (lo.max(day), hi.min(next));
        if a == day && b == next {
            out.push(layers.daily.chunk_at(day), add);
        } else {
            let hours = |from: i64, to: i64| (from..to).step_by(HOUR_MICROS as usize);
            let rows =
                |from, to| -> usize { hours(from, to).map(|h| layers.fine.rows_at(h)).sum() };
            let inside = rows(a, b);
            let complement = layers.daily.rows_at(day) + rows(day, a) + rows(b, next);
            if inside <= complement {
                for h in hours(a, b) {
                    out.push(layers.fine.chunk_at(h), add);
                }
            } else {
                out.push(layers.daily.chunk_at(day), add);
                for h in hours(day, a).chain(hours(b, next)) {
                    out.push(layers.fine.chunk_at(h), !add);
                }
            }
        }
        day = next;
    }
    out
}

/// Hour-aligned `[lo, hi)` added as whole chunks: whole months from the monthly layer;
/// a partial month either as its days, or as the month minus the days outside,
/// whichever reads fewer rows.
fn months(layers: &PeriodLayers, lo: i64, hi: i64) -> Selection<'_> {
    let mut out = Selection::default();
    let mut month = month_start(lo);
    while month < hi {
        let next = next_month_start(month);
        let (a, b) = (lo.max(month), hi.min(next));
        if a == month && b == next {
            out.push(layers.monthly.chunk_at(month), true);
        } else {
            let inside = days(layers, a, b, true);
            let mut complement = Selection::default();
            complement.push(layers.monthly.chunk_at(month), true);
            complement.append(days(layers, month, a, false));
            complement.append(days(layers, b, next, false));
            out.append(if inside.rows() <= complement.rows() {
                inside
            } else {
                complement
            });
        }
        month = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{GroupedRows, LineKey, Sums, dict::Dictionaries};

    const MAY1: i64 = 1_777_593_600_000_000; // 2026-05-01T00:00:00Z
    const JUN1: i64 = MAY1 + 31 * DAY_MICROS;

    /// One caller with one row in every hour of May.
    fn may() -> PeriodLayers {
        let mut rows = GroupedRows::default();
        for h in 0..31 * 24 {
            let key = LineKey {
                start: MAY1 + h * HOUR_MICROS,
                ..LineKey::default()
            };
            let sums = Sums {
                line_items: 1,
                ..Sums::default()
            };
            rows.add(key, &sums).unwrap_or_default();
        }
        PeriodLayers::build(&rows, &Dictionaries::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn shape(s: &Selection<'_>) -> (usize, usize, usize) {
        (s.whole.len(), s.partial.len(), s.subtract.len())
    }

    #[test]
    fn the_fewest_rows_that_answer_exactly() {
        let l = may();
        let h = HOUR_MICROS;
        // The whole month: its monthly row.
        let s = select(&l, MAY1, JUN1, Granularity::Whole, LayerChoice::Coarsest);
        assert_eq!((shape(&s), s.rows()), ((1, 0, 0), 1));
        // May minus its last three hours: the month minus three hourly chunks.
        let s = select(
            &l,
            MAY1,
            JUN1 - 3 * h,
            Granularity::Whole,
            LayerChoice::Coarsest,
        );
        assert_eq!(shape(&s), (1, 0, 3));
        // Daily buckets: thirty days, then the last day minus its three hours.
        let s = select(
            &l,
            MAY1,
            JUN1 - 3 * h,
            Granularity::Daily,
            LayerChoice::Coarsest,
        );
        assert_eq!(shape(&s), (31, 0, 3));
        // Three hours inside a day: the hours themselves.
        let s = select(
            &l,
            MAY1 + h,
            MAY1 + 4 * h,
            Granularity::Whole,
            LayerChoice::Coarsest,
        );
        assert_eq!(shape(&s), (3, 0, 0));
        // Cut hours at both ends read their fine chunks under the time predicate.
        let s = select(
            &l,
            MAY1 + h / 2,
            MAY1 + 4 * h + 1,
            Granularity::Whole,
            LayerChoice::Coarsest,
        );
        assert_eq!(shape(&s), (3, 2, 0));
        // Hourly buckets and the plain scan read only fine chunks.
        let s = select(&l, MAY1, JUN1, Granularity::Hourly, LayerChoice::Coarsest);
        assert_eq!((s.rows(), s.subtract.len()), (744, 0));
        let s = select(&l, MAY1, JUN1, Granularity::Monthly, LayerChoice::FineOnly);
        assert_eq!(s.rows(), 744);
    }
}
