//! Request validation: whatever a caller sends is a value or INVALID_ARGUMENT.

use std::time::Duration;

use bedrock_attribution::v1 as pb;
use proptest::prelude::*;

use super::hostile_string;
use crate::{
    error::Error,
    rules::arn::is_account_id,
    service::convert::{self, MAX_FILTER_VALUES, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS},
};

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        4 => proptest::collection::vec(hostile_string(), 0..4),
        1 => proptest::collection::vec("[0-9]{12}", 0..4),
        1 => (0usize..3).prop_map(|n| vec!["111111111111".to_owned(); MAX_FILTER_VALUES + n]),
    ]
}

fn filter() -> impl Strategy<Value = pb::Filter> {
    let tag = (hostile_string(), strings(), any::<bool>()).prop_map(|(key, values, untagged)| {
        pb::TagFilter {
            key,
            values,
            untagged,
        }
    });
    (
        strings(),
        strings(),
        strings(),
        strings(),
        proptest::collection::vec(tag, 0..3),
        proptest::collection::vec(any::<i32>(), 0..3),
        proptest::collection::vec(-2i32..6, 0..3),
    )
        .prop_map(
            |(account_ids, principals, models, payers, tags, categories, routings)| pb::Filter {
                account_ids,
                principals,
                models,
                regions: Vec::new(),
                line_item_types: Vec::new(),
                tags,
                payer_account_ids: payers,
                usage_categories: categories,
                routings,
            },
        )
}

fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    proptest::option::of(
        (
            prop_oneof![any::<i64>(), 1_700_000_000i64..1_900_000_000],
            prop_oneof![
                any::<i32>(),
                0i32..1_000_000_000,
                999_999_990i32..1_100_000_000
            ],
        )
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
}

fn invalid<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidArgument { .. }))
}

proptest! {
    #[test]
    fn a_filter_is_valid_or_invalid_argument(f in filter()) {
        match convert::filter(Some(&f)) {
            Ok(checked) => {
                prop_assert!(checked.account_ids.iter().all(|a| is_account_id(a.as_str())));
                prop_assert!(checked.payer_account_ids.iter().all(|a| is_account_id(a.as_str())));
                prop_assert!(checked.account_ids.len() <= MAX_FILTER_VALUES);
                for t in &checked.tags {
                    // Any character: the data's values, NUL and TAB included, can be asked for.
                    prop_assert!(t.values.iter().all(|v| v.chars().count() <= MAX_TAG_VALUE_CHARS));
                }
                prop_assert!(checked.principals.iter().all(|p| !p.contains('\0')));
            }
            Err(e) => prop_assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}"),
        }
    }

    #[test]
    fn a_time_range_is_ordered_and_bounded_or_invalid_argument(
        start in timestamp(),
        end in timestamp(),
        days in 1u64..4000,
    ) {
        let max = Duration::from_secs(days * 86_400);
        let range = pb::TimeRange { start, end };
        let r = convert::time_range(Some(&range), max);
        match &r {
            Ok((s, e)) => {
                prop_assert!(s < e);
                prop_assert!((*e - *s).to_std().is_ok_and(|span| span <= max));
                let nanos_ok = |t: &Option<prost_types::Timestamp>| {
                    t.as_ref().is_some_and(|t| (0..1_000_000_000).contains(&t.nanos))
                };
                prop_assert!(nanos_ok(&range.start) && nanos_ok(&range.end));
            }
            Err(_) => prop_assert!(invalid(&r)),
        }
    }

    #[test]
    fn a_tag_key_is_accepted_as_sent_or_invalid_argument(key in hostile_string()) {
        match convert::tag_key("tag_key", &key) {
            Ok(k) => {
                prop_assert_eq!(&k, &key);
                // Any character but bounded: the data's keys, NUL and TAB included.
                prop_assert!(!k.is_empty() && k.chars().count() <= 1 + 32 + MAX_TAG_KEY_CHARS);
            }
            Err(e) => prop_assert!(matches!(e, Error::InvalidArgument { .. }), "{:?}", e),
        }
    }

    #[test]
    fn enum_values_outside_the_proto_are_invalid_argument(v in any::<i32>()) {
        prop_assert!(convert::metric(v).is_ok() || invalid(&convert::metric(v)));
        prop_assert!(convert::granularity(v).is_ok() || invalid(&convert::granularity(v)));
        prop_assert!(convert::grouping("grouping", v).is_ok() || invalid(&convert::grouping("grouping", v)));
        if !(0..16).contains(&v) {
            prop_assert!(invalid(&convert::metric(v)));
            prop_assert!(invalid(&convert::granularity(v)));
        }
    }
}
