//! Property tests of the parsers and validators that take caller or file input: the ARN
//! parser, the usage-type rules and their memoised classifier, the manifest reader, page
//! tokens, money conversions and request validation. Each property runs 256 generated
//! cases by default; `PROPTEST_CASES=10000` runs more (docs/development.md).

mod arn;
mod classify;
mod manifest;
mod money;
mod page;
mod request;

use proptest::prelude::*;

/// Any string, weighted towards the characters parsers split on.
pub(super) fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9:/_@=+.,' \"|\\-]{0,40}",
        proptest::collection::vec(
            prop_oneof![
                Just("arn:".to_owned()),
                Just(":".to_owned()),
                Just("/".to_owned()),
                Just("\u{0}".to_owned()),
                Just("\u{1}".to_owned()),
                Just("\u{2}".to_owned()),
                Just("é".to_owned()),
                Just("'; DROP TABLE cur; --".to_owned()),
                "[0-9]{12}",
                "[a-zA-Z-]{1,8}",
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat()),
    ]
}
