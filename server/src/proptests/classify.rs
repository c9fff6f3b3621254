//! The usage-type rules and the classifier that memoises them per combination.

use proptest::prelude::*;

use super::hostile_string;
use crate::{
    layers::dict::Dictionaries,
    load::classify::{Class, ClassFields, Classifier},
    rules::{bedrock::BedrockRule, usage},
};

/// Field values built from the pieces the rules look for and the characters a memo key
/// could be built from, so that distinct combinations often look alike.
fn field() -> impl Strategy<Value = Option<String>> {
    let piece = prop_oneof![
        Just("USE1-"),
        Just("Claude4.5Sonnet"),
        Just("-input-tokens"),
        Just("-output-tokens"),
        Just("-cache-read-input-token-count"),
        Just("-cache-write-tokens"),
        Just("-reserved-"),
        Just("-cross-region-geo"),
        Just("-global-"),
        Just("Input tokens"),
        Just("Units"),
        Just("1M tokens"),
        Just("1K tokens"),
        Just("x|y|1000"),
        Just("Usage"),
        Just("Tax"),
        Just("AmazonBedrock"),
        Just("\u{1}"),
        Just("\u{2}"),
        Just(":"),
        Just("1:"),
        Just("-"),
        Just(""),
    ];
    proptest::option::of(proptest::collection::vec(piece, 0..4).prop_map(|p| p.concat()))
}

#[derive(Debug, Clone)]
struct Fields([Option<String>; 10]);

impl Fields {
    fn view(&self) -> ClassFields<'_> {
        let f = |i: usize| self.0[i].as_deref();
        ClassFields {
            product_code: f(0),
            product_family: f(1),
            billing_entity: f(2),
            product_name: f(3),
            product_model: f(4),
            inference_type: f(5),
            usage_type: f(6),
            line_item_type: f(7),
            pricing_unit: f(8),
            description: f(9),
        }
    }
}

fn fields() -> impl Strategy<Value = Fields> {
    proptest::array::uniform10(field()).prop_map(Fields)
}

/// Combinations that differ only in model, inference type and usage type, drawn from a
/// handful of pieces (separator-like characters among them): distinct combinations that
/// a careless memo key would confuse turn up within a few hundred cases.
fn near_fields() -> impl Strategy<Value = Fields> {
    let piece = prop_oneof![
        Just("\u{1}"),
        Just("\u{2}"),
        Just("M"),
        Just("Output tokens"),
        Just("-input-tokens"),
    ];
    let field =
        proptest::option::of(proptest::collection::vec(piece, 0..3).prop_map(|p| p.concat()));
    proptest::array::uniform3(field).prop_map(|[model, inference, usage_type]| {
        let fixed = |s: &str| Some(s.to_owned());
        Fields([
            fixed("AmazonBedrock"),
            None,
            None,
            None,
            model,
            inference,
            usage_type,
            fixed("Usage"),
            fixed("1M tokens"),
            None,
        ])
    })
}

/// What a class says, with interned ids replaced by their strings.
fn meaning(class: Class, dicts: &Dictionaries) -> impl PartialEq + std::fmt::Debug {
    (
        class.bedrock_by_product,
        class
            .tokens
            .map(|(kind, per_unit)| (kind, per_unit.to_bits())),
        dicts.models.value(class.model).to_owned(),
        class.category,
        class.routing,
        dicts.line_item_types.value(class.line_item_type).to_owned(),
        class.usage,
    )
}

proptest! {
    #[test]
    fn a_memoised_class_equals_a_fresh_evaluation(
        batch in proptest::collection::vec(prop_oneof![fields(), near_fields()], 1..48)
    ) {
        let mut shared = Classifier::new(BedrockRule::default());
        let mut shared_dicts = Dictionaries::default();
        for f in &batch {
            let memoised = shared.classify(&f.view(), &mut shared_dicts);
            let mut fresh_dicts = Dictionaries::default();
            let fresh = Classifier::new(BedrockRule::default()).classify(&f.view(), &mut fresh_dicts);
            prop_assert_eq!(meaning(memoised, &shared_dicts), meaning(fresh, &fresh_dicts), "{:?}", f);
        }
    }

    #[test]
    fn usage_rules_take_any_strings(
        inference in proptest::option::of(hostile_string()),
        usage_type in proptest::option::of(hostile_string()),
        unit in proptest::option::of(hostile_string()),
        description in proptest::option::of(hostile_string()),
        model in proptest::option::of(hostile_string()),
        amount in proptest::option::of(-1e12f64..1e12),
    ) {
        let kind = usage::token_kind(inference.as_deref(), usage_type.as_deref());
        if usage::is_capacity(usage_type.as_deref()) {
            prop_assert_eq!(kind, None, "capacity never counts tokens");
        }
        let per_unit = usage::tokens_per_unit(unit.as_deref(), description.as_deref());
        prop_assert!(per_unit.is_finite() && per_unit >= 0.0);
        let count = usage::token_count(amount, per_unit);
        if amount.is_none_or(|a| a >= 0.0) {
            prop_assert!(count >= 0);
        }
        let name = usage::model_name(model.as_deref(), None, usage_type.as_deref());
        if let Some(m) = model.as_deref().filter(|m| !m.is_empty()) {
            prop_assert_eq!(name, m);
        } else if let Some(u) = usage_type.as_deref() {
            prop_assert!(u.contains(name.as_str()), "the model name is cut from the usage type");
        }
        let _ = usage::usage_category(usage_type.as_deref(), kind.is_some());
        let _ = usage::routing(usage_type.as_deref());
    }

    #[test]
    fn the_token_kind_follows_the_usage_type_when_inference_type_is_absent(
        region in "[A-Z]{2,3}[0-9]",
        model in "[A-Za-z0-9.]{1,20}",
        suffix in prop_oneof![
            Just(("-input-tokens", Some(usage::TokenKind::Input))),
            Just(("-output-tokens", Some(usage::TokenKind::Output))),
            Just(("-cache-read-input-token-count", Some(usage::TokenKind::CacheRead))),
            Just(("-cache-write-input-token-count", Some(usage::TokenKind::CacheWrite))),
            Just(("-reserved-3-month-input-tokens-per-minute", None)),
        ],
        routing in prop_oneof![Just(""), Just("-cross-region-geo"), Just("-cross-region-global")],
    ) {
        let usage_type = format!("{region}-{model}{}{routing}", suffix.0);
        prop_assert_eq!(usage::token_kind(None, Some(&usage_type)), suffix.1);
        prop_assert_eq!(usage::token_kind(Some(""), Some(&usage_type)), suffix.1);
        prop_assert_eq!(usage::model_name(None, None, Some(&usage_type)), model);
        let expected = match routing {
            "" => usage::Routing::InRegion,
            "-cross-region-geo" => usage::Routing::CrossRegionGeographic,
            _ => usage::Routing::CrossRegionGlobal,
        };
        prop_assert_eq!(usage::routing(Some(&usage_type)), expected);
    }
}
