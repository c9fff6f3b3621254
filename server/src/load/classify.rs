//! The data contract's per-line-item rules, applied once per distinct combination of the
//! columns they read.
//!
//! Bedrock membership (by product), token kind, tokens per unit, model name, usage
//! category and routing depend only on a handful of low-cardinality strings (product code, family,
//! billing entity, product map entries, usage type, line item type, pricing unit and,
//! for Marketplace `Units`, the description). A file of millions of line items holds a
//! few hundred such combinations, so each is classified once and looked up after.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use crate::{
    layers::dict::Dictionaries,
    rules::{
        bedrock::{BedrockFields, BedrockRule},
        usage::{self, TokenKind},
    },
};

/// The columns the rules read, for one line item.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassFields<'a> {
    /// `line_item_product_code`.
    pub product_code: Option<&'a str>,
    /// `product_product_family`.
    pub product_family: Option<&'a str>,
    /// `bill_billing_entity`.
    pub billing_entity: Option<&'a str>,
    /// `product['product_name']`.
    pub product_name: Option<&'a str>,
    /// `product['model']`.
    pub product_model: Option<&'a str>,
    /// `product['inference_type']`.
    pub inference_type: Option<&'a str>,
    /// `line_item_usage_type`.
    pub usage_type: Option<&'a str>,
    /// `line_item_line_item_type`.
    pub line_item_type: Option<&'a str>,
    /// `pricing_unit`.
    pub pricing_unit: Option<&'a str>,
    /// `line_item_line_item_description`.
    pub description: Option<&'a str>,
}

/// What the rules say about a combination.
#[derive(Debug, Clone, Copy)]
pub struct Class {
    /// Bedrock by product code, family or Marketplace product name (a line item with a
    /// caller is Bedrock whatever this says).
    pub bedrock_by_product: bool,
    /// Token kind and tokens per unit of usage amount, for `Usage` line items whose
    /// kind is known.
    pub tokens: Option<(TokenKind, f64)>,
    /// Model id in the file's dictionary.
    pub model: u32,
    /// Usage category code (`UsageCategory::code`).
    pub category: u8,
    /// Routing code (`Routing::code`): in-region, cross-region geographic or global.
    pub routing: u8,
    /// Line item type id in the file's dictionary.
    pub line_item_type: u32,
    /// Whether the line item type is `Usage` (receivers of allocation).
    pub usage: bool,
}

/// Memoised rules for one file.
#[derive(Debug)]
pub struct Classifier {
    rule: BedrockRule,
    memo: FxHashMap<String, Class>,
    key: String,
}

impl Classifier {
    /// A classifier applying `rule`.
    pub fn new(rule: BedrockRule) -> Self {
        Self {
            rule,
            memo: FxHashMap::default(),
            key: String::new(),
        }
    }

    /// The class of a line item, interning its model and line item type in `dicts`.
    pub fn classify(&mut self, f: &ClassFields<'_>, dicts: &mut Dictionaries) -> Class {
        let units = f
            .pricing_unit
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("units"));
        self.key.clear();
        for part in [
            f.product_code,
            f.product_family,
            f.billing_entity,
            f.product_name,
            f.product_model,
            f.inference_type,
            f.usage_type,
            f.line_item_type,
            f.pricing_unit,
            // Only Marketplace `Units` read the description; other descriptions may
            // carry prices and would only multiply the combinations.
            if units { f.description } else { None },
        ] {
            // Each value is length-prefixed: with separators alone, a value holding the
            // separator character could make two different combinations share one key.
            match part {
                Some(s) => {
                    let _ = write!(self.key, "{}:", s.len());
                    self.key.push_str(s);
                }
                None => self.key.push('-'),
            }
        }
        if let Some(class) = self.memo.get(self.key.as_str()) {
            return *class;
        }
        let class = self.evaluate(f, dicts);
        self.memo.insert(self.key.clone(), class);
        class
    }

    fn evaluate(&self, f: &ClassFields<'_>, dicts: &mut Dictionaries) -> Class {
        let bedrock_by_product = self.rule.is_bedrock(&BedrockFields {
            product_code: f.product_code,
            product_family: f.product_family,
            billing_entity: f.billing_entity,
            product_name: f.product_name,
            principal: None,
        });
        let kind = usage::token_kind(f.inference_type, f.usage_type);
        let line_item_type = f.line_item_type.unwrap_or("");
        let usage = line_item_type == "Usage";
        let tokens = kind
            .filter(|_| usage)
            .map(|k| (k, usage::tokens_per_unit(f.pricing_unit, f.description)));
        let model = usage::model_name(f.product_model, f.product_name, f.usage_type);
        Class {
            bedrock_by_product,
            tokens,
            model: dicts.models.intern(&model),
            category: usage::usage_category(f.usage_type, kind.is_some()).code(),
            routing: usage::routing(f.usage_type).code(),
            line_item_type: dicts.line_item_types.intern(line_item_type),
            usage,
        }
    }

    /// Distinct combinations seen.
    pub fn combinations(&self) -> usize {
        self.memo.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::usage::{Routing, UsageCategory};

    #[test]
    fn one_evaluation_per_combination() {
        let mut c = Classifier::new(BedrockRule::default());
        let mut dicts = Dictionaries::default();
        let f = ClassFields {
            product_code: Some("AmazonBedrock"),
            usage_type: Some("USE1-Nova2.0Lite-input-tokens"),
            line_item_type: Some("Usage"),
            pricing_unit: Some("1M tokens"),
            description: Some("$0.06 per million"),
            ..ClassFields::default()
        };
        let a = c.classify(&f, &mut dicts);
        let b = c.classify(
            &ClassFields {
                description: Some("another price"),
                ..f
            },
            &mut dicts,
        );
        assert_eq!(c.combinations(), 1, "descriptions only matter for Units");
        assert!(a.bedrock_by_product && a.usage);
        assert_eq!(a.tokens, Some((TokenKind::Input, 1_000_000.0)));
        assert_eq!(dicts.models.value(a.model), "Nova2.0Lite");
        assert_eq!((a.model, a.category), (b.model, b.category));
        let tax = c.classify(
            &ClassFields {
                line_item_type: Some("Tax"),
                ..f
            },
            &mut dicts,
        );
        assert_eq!(tax.tokens, None, "only Usage counts tokens");
        assert!(!tax.usage);
    }

    #[test]
    fn values_holding_separators_do_not_share_a_memo_entry() {
        // With bare separators (\u{1} before a value, \u{2} for none), these two once
        // produced the same key: "\u{1}ModelA\u{1}Output tokens\u{2}".
        let mut c = Classifier::new(BedrockRule::default());
        let mut dicts = Dictionaries::default();
        let base = ClassFields {
            product_code: Some("AmazonBedrock"),
            line_item_type: Some("Usage"),
            pricing_unit: Some("1M tokens"),
            ..ClassFields::default()
        };
        let glued = c.classify(
            &ClassFields {
                product_model: Some("ModelA\u{1}Output tokens"),
                inference_type: None,
                ..base
            },
            &mut dicts,
        );
        let split = c.classify(
            &ClassFields {
                product_model: Some("ModelA"),
                inference_type: Some("Output tokens\u{2}"),
                ..base
            },
            &mut dicts,
        );
        assert_eq!(c.combinations(), 2);
        assert_eq!(glued.tokens, None);
        assert_eq!(split.tokens, Some((TokenKind::Output, 1_000_000.0)));
        assert_eq!(dicts.models.value(split.model), "ModelA");
    }

    #[test]
    fn shapes_seen_in_2026() {
        let mut c = Classifier::new(BedrockRule::default());
        let mut dicts = Dictionaries::default();
        let native = |usage_type, inference_type, pricing_unit| ClassFields {
            product_code: Some("AmazonBedrock"),
            usage_type: Some(usage_type),
            inference_type,
            line_item_type: Some("Usage"),
            pricing_unit: Some(pricing_unit),
            ..ClassFields::default()
        };
        let cases = [
            (
                native(
                    "USE1-Claude4.5Sonnet-output-tokens-cross-region-geo",
                    None,
                    "1M tokens",
                ),
                Some((TokenKind::Output, 1_000_000.0)),
                "Claude4.5Sonnet",
                UsageCategory::OnDemand,
                Routing::CrossRegionGeographic,
            ),
            (
                native(
                    "USW2-anthropic.claude-opus-4-8-mantle-cache-write-tokens-global-standard",
                    None,
                    "1M tokens",
                ),
                Some((TokenKind::CacheWrite, 1_000_000.0)),
                "anthropic.claude-opus-4-8",
                UsageCategory::OnDemand,
                Routing::CrossRegionGlobal,
            ),
            (
                native(
                    "USE1-Claude4.6Opus-cache-write-1h-input-token-count",
                    Some("Cache write input tokens"),
                    "1K tokens",
                ),
                Some((TokenKind::CacheWrite, 1_000.0)),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                Routing::InRegion,
            ),
            (
                native(
                    "USE1-Claude4.6Opus-cache-write-1h-tokens",
                    None,
                    "1M tokens",
                ),
                Some((TokenKind::CacheWrite, 1_000_000.0)),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                Routing::InRegion,
            ),
            (
                // Capacity: a token kind in the usage type and in inference_type, a
                // token pricing unit, and still no tokens.
                native(
                    "USE1-Claude4.5Sonnet-reserved-3-month-input-tokens-per-minute-cross-region-geo",
                    Some("Input tokens"),
                    "1K tokens",
                ),
                None,
                "Claude4.5Sonnet",
                UsageCategory::Reserved,
                Routing::CrossRegionGeographic,
            ),
        ];
        for (fields, tokens, model, category, routing) in cases {
            let class = c.classify(&fields, &mut dicts);
            let ut = fields.usage_type.unwrap_or("");
            assert!(class.bedrock_by_product && class.usage, "{ut}");
            assert_eq!(class.tokens, tokens, "{ut}");
            assert_eq!(dicts.models.value(class.model), model, "{ut}");
            assert_eq!(class.category, category.code(), "{ut}");
            assert_eq!(class.routing, routing.code(), "{ut}");
        }
        assert_eq!(c.combinations(), 5);
    }
}
