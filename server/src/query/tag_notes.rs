//! Notes for tag keys an answer never found: a key typed without its source prefix
//! (`team` for `iamPrincipal/team`) or in the wrong case matches no line item, so every
//! dollar lands in UNTAGGED and the answer looks like a real one. The note says so and
//! names the closest keys that exist among the line items the caller may see in the
//! range, so the mistake is visible in the answer itself.
//!
//! The check costs nothing on a normal answer: only when no row carries a value of a
//! grouped key (or a tag filter selected nothing) are the range's keys looked up.

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};

use super::{
    Answer,
    discovery::TagKeyReach,
    spec::{Dimension, Filter, Granularity, QuerySpec},
};

/// Closest keys named in a note, at most.
pub const MAX_SUGGESTIONS: usize = 3;

/// The tag keys of `spec` the answer found no value of: keys of tag dimensions when the
/// answer has rows but none carries a value for that dimension, and keys of tag filters
/// that select values when the answer has no rows at all. In request order, without
/// duplicates.
pub fn unfound_keys<'a>(spec: &'a QuerySpec, answer: &Answer) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    if answer.rows.is_empty() {
        for t in &spec.filter.tags {
            if !t.values.is_empty() && !out.contains(&t.key.as_str()) {
                out.push(&t.key);
            }
        }
        return out;
    }
    for (i, d) in spec.dimensions.iter().enumerate() {
        if let Dimension::Tag(key) = d
            && answer
                .rows
                .iter()
                .all(|r| r.keys.get(i).is_none_or(Option::is_none))
            && !out.contains(&key.as_str())
        {
            out.push(key);
        }
    }
    out
}

/// The spec whose tag keys are the candidates: the same range and scope, no filter, no
/// grouping. A scoped caller learns only keys of line items its scope lets it see.
pub fn range_spec(spec: &QuerySpec) -> QuerySpec {
    QuerySpec {
        filter: Filter::default(),
        granularity: Granularity::Whole,
        dimensions: Vec::new(),
        allocation: false,
        efficiency: false,
        ..spec.clone()
    }
}

/// The notes for `unfound` keys, given the keys of the range (from
/// [`super::discovery::tag_keys`] over [`range_spec`]). A key the range holds (the filter
/// left its line items out) gets a note saying so; a key it does not hold gets the
/// closest keys that exist.
pub fn notes(
    spec: &QuerySpec,
    unfound: &[&str],
    range_keys: &BTreeMap<String, TagKeyReach>,
) -> Vec<String> {
    let range = format!(
        "from {} to {}",
        day_or_time(spec.start),
        day_or_time(spec.end)
    );
    let grouped = |key: &str| {
        spec.dimensions
            .iter()
            .any(|d| matches!(d, Dimension::Tag(k) if k == key))
    };
    unfound
        .iter()
        .map(|&key| {
            let effect = if grouped(key) {
                "so all its spend is UNTAGGED"
            } else {
                "so the tag filter selects nothing"
            };
            if range_keys.contains_key(key) {
                return format!(
                    "no line item the filter selects carries tag key {key:?}, {effect} (line items {range} that the filter leaves out do carry it)"
                );
            }
            let closest = closest_keys(key, range_keys.keys().map(String::as_str));
            let hint = if closest.is_empty() {
                match range_keys.len() {
                    0 => "; no line item in the range carries any tag".to_owned(),
                    n => format!(
                        "; none of the {n} tag keys of the range is close to it (ListTagKeys lists them)"
                    ),
                }
            } else {
                let names: Vec<String> = closest.iter().map(|k| format!("{k:?}")).collect();
                format!(
                    "; keys match exactly, case and source prefix included: did you mean {}?",
                    names.join(" or ")
                )
            };
            format!("no line item {range} carries tag key {key:?}, {effect}{hint}")
        })
        .collect()
}

/// A bound of the range as a person wrote it: the day when it is midnight UTC.
fn day_or_time(t: DateTime<Utc>) -> String {
    if t.num_seconds_from_midnight() == 0 && t.nanosecond() == 0 {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.to_rfc3339()
    }
}

/// The part of a key after its source prefix (`team` of `iamPrincipal/team`); the whole
/// key when it has none.
fn name(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, n)| n)
}

/// The keys of `known` closest to `wanted`, best first, at most [`MAX_SUGGESTIONS`]:
/// the same key in another case first, then keys whose name after the source prefix is
/// `wanted`'s name (in any case: `team` and `resourceTags/team` for `iamPrincipal/team`),
/// then keys within a small edit distance (a third of the longer name, at least one
/// edit) of the key or of its name, nearer first; ties by key.
pub fn closest_keys<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let wanted_name = name(&wanted_lower).to_owned();
    let mut ranked: Vec<((u8, usize), &str)> = known
        .into_iter()
        .filter(|k| *k != wanted)
        .filter_map(|key| {
            let lower = key.to_lowercase();
            if lower == wanted_lower {
                return Some(((0, 0), key));
            }
            let key_name = name(&lower);
            if key_name == wanted_name {
                return Some(((1, 0), key));
            }
            let distance =
                edit_distance(&lower, &wanted_lower).min(edit_distance(key_name, &wanted_name));
            let longest = key_name.chars().count().max(wanted_name.chars().count());
            (distance <= (longest / 3).max(1)).then_some(((2, distance), key))
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, k)| k)
        .collect()
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 6] = [
        "iamPrincipal/team",
        "iamPrincipal/Team",
        "resourceTags/team",
        "iamPrincipal/cost-center",
        "iamPrincipal/project",
        "accountTag/env",
    ];

    #[test]
    fn case_first_then_the_name_after_the_prefix_then_edit_distance() {
        // Wrong case: the same key in its case first, then the same name elsewhere.
        assert_eq!(
            closest_keys("iamprincipal/team", KEYS),
            [
                "iamPrincipal/Team",
                "iamPrincipal/team",
                "resourceTags/team"
            ]
        );
        // No prefix: every key named `team`, whatever its source.
        assert_eq!(
            closest_keys("team", KEYS),
            [
                "iamPrincipal/Team",
                "iamPrincipal/team",
                "resourceTags/team"
            ]
        );
        // A typo in the name.
        assert_eq!(
            closest_keys("iamPrincipal/costcenter", KEYS),
            ["iamPrincipal/cost-center"]
        );
        assert_eq!(closest_keys("projet", KEYS), ["iamPrincipal/project"]);
        // Nothing close, and the key itself is never suggested.
        assert!(closest_keys("owner", KEYS).is_empty());
        assert!(closest_keys("accountTag/env", KEYS).is_empty());
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("équipe", "equipe"), 1);
        assert_eq!(edit_distance("team", "team"), 0);
    }
}
