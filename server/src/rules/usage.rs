//! Usage-type rules: token kind, token units, model name, usage category and routing.

/// The four kinds of tokens Bedrock bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Uncached input tokens.
    Input,
    /// Output tokens.
    Output,
    /// Input tokens read from the prompt cache.
    CacheRead,
    /// Input tokens written to the prompt cache.
    CacheWrite,
}

/// How Bedrock was bought, as users compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum UsageCategory {
    /// Pay-per-token invocations.
    OnDemand = 1,
    /// Batch inference.
    Batch = 2,
    /// Flex tier.
    Flex = 3,
    /// Priority tier.
    Priority = 4,
    /// Provisioned throughput (model units).
    ProvisionedThroughput = 5,
    /// Reserved capacity.
    Reserved = 6,
    /// Latency-optimized inference.
    LatencyOptimized = 7,
    /// Model customization.
    Customization = 8,
    /// Custom model import.
    CustomModelImport = 9,
    /// Anything else.
    Other = 10,
}

impl UsageCategory {
    /// Every category, in code order.
    pub const ALL: [UsageCategory; 10] = [
        Self::OnDemand,
        Self::Batch,
        Self::Flex,
        Self::Priority,
        Self::ProvisionedThroughput,
        Self::Reserved,
        Self::LatencyOptimized,
        Self::Customization,
        Self::CustomModelImport,
        Self::Other,
    ];

    /// The stable numeric code stored in the normalized table (equal to the proto enum value).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The category of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A short snake_case name, used in logs, CSV and the DuckDB cross-check.
    pub fn name(self) -> &'static str {
        match self {
            Self::OnDemand => "on_demand",
            Self::Batch => "batch",
            Self::Flex => "flex",
            Self::Priority => "priority",
            Self::ProvisionedThroughput => "provisioned_throughput",
            Self::Reserved => "reserved",
            Self::LatencyOptimized => "latency_optimized",
            Self::Customization => "customization",
            Self::CustomModelImport => "custom_model_import",
            Self::Other => "other",
        }
    }
}

/// Where a call was served: the routing a usage type names, separate from its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Routing {
    /// Served in the region of the call (no cross-region marker).
    InRegion = 1,
    /// Cross-region inference within a geography (`cross-region-geo`).
    CrossRegionGeographic = 2,
    /// Cross-region inference anywhere (`cross-region-global`, `_global`, `-global-`).
    CrossRegionGlobal = 3,
}

impl Routing {
    /// Every routing, in code order.
    pub const ALL: [Routing; 3] = [
        Self::InRegion,
        Self::CrossRegionGeographic,
        Self::CrossRegionGlobal,
    ];

    /// The stable numeric code (meant to equal a proto enum value, as [`UsageCategory::code`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The routing of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A short snake_case name, used in logs, CSV and the DuckDB cross-check.
    pub fn name(self) -> &'static str {
        match self {
            Self::InRegion => "in_region",
            Self::CrossRegionGeographic => "cross_region_geographic",
            Self::CrossRegionGlobal => "cross_region_global",
        }
    }
}

const SPELLINGS_READ: [&str; 4] = ["cache read", "cache-read", "cache_read", "cacheread"];
const SPELLINGS_WRITE: [&str; 4] = ["cache write", "cache-write", "cache_write", "cachewrite"];

/// Usage-type markers of capacity (reserved tier, provisioned throughput): such line
/// items name a token kind (`...-reserved-3-month-input-tokens-per-minute-...`) but buy
/// capacity per minute or hour, not tokens consumed.
const CAPACITY_MARKERS: [&str; 3] = ["reserved", "provisionedthroughput", "modelunits"];

/// Whether a usage type is capacity (reserved or provisioned): cost without tokens.
pub fn is_capacity(usage_type: Option<&str>) -> bool {
    let lower = usage_type.unwrap_or("").to_ascii_lowercase();
    CAPACITY_MARKERS.iter().any(|m| lower.contains(m))
}

/// Token kind of a line item: none for capacity usage types ([`is_capacity`]), whatever
/// `inference_type` or the usage type says; else from `product['inference_type']` when
/// present and non-empty, else from the usage type, by one case-insensitive substring rule.
pub fn token_kind(inference_type: Option<&str>, usage_type: Option<&str>) -> Option<TokenKind> {
    if is_capacity(usage_type) {
        return None;
    }
    let source = match inference_type {
        Some(t) if !t.is_empty() => t,
        _ => usage_type?,
    };
    let lower = source.to_ascii_lowercase();
    let has_any = |spellings: &[&str]| spellings.iter().any(|s| lower.contains(s));
    if has_any(&SPELLINGS_READ) {
        Some(TokenKind::CacheRead)
    } else if has_any(&SPELLINGS_WRITE) {
        Some(TokenKind::CacheWrite)
    } else if lower.contains("input") {
        Some(TokenKind::Input)
    } else if lower.contains("output") {
        Some(TokenKind::Output)
    } else {
        None
    }
}

/// Tokens per unit of `line_item_usage_amount`, from `pricing_unit` and, for
/// Marketplace `Units`, the third `|`-separated field of the description.
pub fn tokens_per_unit(pricing_unit: Option<&str>, description: Option<&str>) -> f64 {
    let unit = pricing_unit.unwrap_or("").trim().to_ascii_lowercase();
    match unit.as_str() {
        "1k tokens" => 1_000.0,
        "1m tokens" => 1_000_000.0,
        "units" => {
            let named = description
                .and_then(|d| d.split('|').nth(2))
                .map(|f| f.trim().to_ascii_lowercase())
                .unwrap_or_default();
            if named.starts_with("million") {
                1_000_000.0
            } else if named.starts_with("thousand") {
                1_000.0
            } else {
                1.0
            }
        }
        _ => 1.0,
    }
}

/// Whole tokens of a line item: usage amount times unit, rounded half away from zero.
pub fn token_count(usage_amount: Option<f64>, per_unit: f64) -> i64 {
    // The product is rounded once, as a double, so that any engine applying the same
    // rule to the same file gets the same integer.
    usage_amount.map_or(0, |a| (a * per_unit).round() as i64)
}

const MODEL_SUFFIX: &str = " (Amazon Bedrock Edition)";
const MODEL_END_MARKERS: [&str; 9] = [
    "-mantle-",
    "-input-tokens",
    "-output-tokens",
    "-cache-read-input-token-count",
    "-cache-write-input-token-count",
    "-cache-read-tokens",
    "-cache-write-tokens",
    "-cache-write-1h-",
    "-reserved-",
];

/// Model name: `product['model']`; else a Marketplace product name without
/// " (Amazon Bedrock Edition)"; else the usage type without its region prefix and
/// without everything from the token kind on.
pub fn model_name(
    product_model: Option<&str>,
    product_name: Option<&str>,
    usage_type: Option<&str>,
) -> String {
    if let Some(model) = product_model.filter(|m| !m.is_empty()) {
        return model.to_owned();
    }
    if let Some(name) = product_name.and_then(|n| n.strip_suffix(MODEL_SUFFIX)) {
        return name.to_owned();
    }
    let usage_type = usage_type.unwrap_or("");
    let rest = usage_type
        .split_once('-')
        .map_or(usage_type, |(_, rest)| rest);
    // ASCII lowering keeps byte offsets, so a marker found in the lowered string cuts
    // the original at the same place.
    let lower = rest.to_ascii_lowercase();
    let cut = MODEL_END_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(rest.len());
    rest[..cut].to_owned()
}

/// Usage category from the usage type, first match wins; `has_tokens` says whether
/// the token-kind rule found a kind for the line item.
pub fn usage_category(usage_type: Option<&str>, has_tokens: bool) -> UsageCategory {
    let lower = usage_type.unwrap_or("").to_ascii_lowercase();
    let rules: [(&[&str], UsageCategory); 8] = [
        (
            &["provisionedthroughput", "modelunits"],
            UsageCategory::ProvisionedThroughput,
        ),
        (&["reserved"], UsageCategory::Reserved),
        (&["batch"], UsageCategory::Batch),
        (&["-flex"], UsageCategory::Flex),
        (&["-priority"], UsageCategory::Priority),
        (&["latency-optimized"], UsageCategory::LatencyOptimized),
        (&["customization"], UsageCategory::Customization),
        (&["custommodelimport"], UsageCategory::CustomModelImport),
    ];
    rules
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| lower.contains(n)))
        .map(|(_, category)| *category)
        .unwrap_or(if has_tokens {
            UsageCategory::OnDemand
        } else {
            UsageCategory::Other
        })
}

/// Routing from the usage type, case-insensitively: `cross-region-global`, `_global`
/// (Marketplace) or `-global-` (before a tier, as in mantle's `...-tokens-global-standard`)
/// is cross-region global; `cross-region-geo` is cross-region geographic; anything else,
/// including no usage type, is in-region.
pub fn routing(usage_type: Option<&str>) -> Routing {
    let lower = usage_type.unwrap_or("").to_ascii_lowercase();
    if ["cross-region-global", "_global", "-global-"]
        .iter()
        .any(|m| lower.contains(m))
    {
        Routing::CrossRegionGlobal
    } else if lower.contains("cross-region-geo") {
        Routing::CrossRegionGeographic
    } else {
        Routing::InRegion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kinds_from_usage_types() {
        let cases = [
            ("USE1-Claude4.6Sonnet-input-tokens", Some(TokenKind::Input)),
            (
                "USE1-Claude4.6Sonnet-output-tokens-cross-region-global",
                Some(TokenKind::Output),
            ),
            (
                "USE1-Claude4.6Sonnet-cache-read-input-token-count",
                Some(TokenKind::CacheRead),
            ),
            (
                "USE1-Claude4.6Sonnet-cache-write-input-token-count",
                Some(TokenKind::CacheWrite),
            ),
            ("USE1-Nova2.0Lite-input-tokens-flex", Some(TokenKind::Input)),
            ("USE1-MP:USE1_InputTokenCount-Units", Some(TokenKind::Input)),
            (
                "USE1-MP:USE1_CacheReadInputTokenCount_Global-Units",
                Some(TokenKind::CacheRead),
            ),
            (
                "USE1-MP:USE1_output_tokens_standard-Units",
                Some(TokenKind::Output),
            ),
            ("USE1-ProvisionedThroughput-ModelUnits", None),
            ("USE1-Guardrail-ContentPolicy-Units", None),
        ];
        for (usage_type, want) in cases {
            assert_eq!(token_kind(None, Some(usage_type)), want, "{usage_type}");
        }
    }

    #[test]
    fn inference_type_wins_when_present() {
        assert_eq!(
            token_kind(
                Some("Cache write input tokens"),
                Some("USE1-X-input-tokens")
            ),
            Some(TokenKind::CacheWrite)
        );
        assert_eq!(
            token_kind(Some(""), Some("USE1-X-output-tokens")),
            Some(TokenKind::Output)
        );
        assert_eq!(
            token_kind(Some("Output tokens"), None),
            Some(TokenKind::Output)
        );
        assert_eq!(token_kind(None, None), None);
    }

    #[test]
    fn units() {
        assert_eq!(tokens_per_unit(Some("1K tokens"), None), 1_000.0);
        assert_eq!(tokens_per_unit(Some("1M tokens"), None), 1_000_000.0);
        let d = "Claude Sonnet 4.6 (Amazon Bedrock Edition)|US East|Million Input Tokens";
        assert_eq!(tokens_per_unit(Some("Units"), Some(d)), 1_000_000.0);
        let d = "x|y| Thousand Output Tokens";
        assert_eq!(tokens_per_unit(Some("Units"), Some(d)), 1_000.0);
        assert_eq!(tokens_per_unit(Some("Units"), Some("x|y")), 1.0);
        assert_eq!(tokens_per_unit(Some("Hrs"), None), 1.0);
        assert_eq!(tokens_per_unit(None, None), 1.0);
        assert_eq!(token_count(Some(1.2345), 1_000.0), 1235);
        assert_eq!(token_count(Some(0.0015), 1_000.0), 2);
        assert_eq!(token_count(Some(0.001234), 1_000_000.0), 1234);
        assert_eq!(token_count(None, 1_000.0), 0);
    }

    #[test]
    fn model_names() {
        assert_eq!(
            model_name(Some("Claude Opus 4.6"), None, Some("USE1-X-input-tokens")),
            "Claude Opus 4.6"
        );
        assert_eq!(
            model_name(
                Some(""),
                Some("Claude Sonnet 4.6 (Amazon Bedrock Edition)"),
                None
            ),
            "Claude Sonnet 4.6"
        );
        let cases = [
            ("USE1-Nova2.0Lite-input-tokens-flex", "Nova2.0Lite"),
            (
                "USE1-Claude4.6Sonnet-output-tokens-cross-region-global",
                "Claude4.6Sonnet",
            ),
            (
                "USE1-Claude4.6Sonnet-cache-read-input-token-count",
                "Claude4.6Sonnet",
            ),
            (
                "USE1-openai.gpt-oss-120b-mantle-input-tokens-standard",
                "openai.gpt-oss-120b",
            ),
            ("EUC1-Llama3.3-70B-Output-Tokens", "Llama3.3-70B"),
            ("Tax", "Tax"),
            ("", ""),
        ];
        for (usage_type, want) in cases {
            assert_eq!(
                model_name(None, Some("Amazon Bedrock"), Some(usage_type)),
                want
            );
        }
        assert_eq!(model_name(None, None, None), "");
    }

    #[test]
    fn categories() {
        let cases = [
            (
                "USE1-ProvisionedThroughput-ModelUnits",
                false,
                UsageCategory::ProvisionedThroughput,
            ),
            (
                "USE1-Claude-ModelUnits-1Month",
                false,
                UsageCategory::ProvisionedThroughput,
            ),
            ("USE1-Reserved-Claude", false, UsageCategory::Reserved),
            (
                "USE1-Claude4.6Sonnet-batch-input-tokens",
                true,
                UsageCategory::Batch,
            ),
            (
                "USE1-Nova2.0Lite-input-tokens-flex",
                true,
                UsageCategory::Flex,
            ),
            (
                "USE1-Nova2.0Lite-output-tokens-priority",
                true,
                UsageCategory::Priority,
            ),
            (
                "USE2-Claude3.5Haiku-latency-optimized-input-tokens",
                true,
                UsageCategory::LatencyOptimized,
            ),
            (
                "USE1-Nova-Customization-Training",
                false,
                UsageCategory::Customization,
            ),
            (
                "USE1-CustomModelImport-Storage",
                false,
                UsageCategory::CustomModelImport,
            ),
            (
                "USE1-Claude4.6Sonnet-input-tokens",
                true,
                UsageCategory::OnDemand,
            ),
            (
                "USE1-Guardrail-ContentPolicy-Units",
                false,
                UsageCategory::Other,
            ),
        ];
        for (usage_type, tokens, want) in cases {
            assert_eq!(
                usage_category(Some(usage_type), tokens),
                want,
                "{usage_type}"
            );
        }
        assert_eq!(usage_category(None, false), UsageCategory::Other);
        for c in UsageCategory::ALL {
            assert_eq!(UsageCategory::from_code(c.code()), Some(c));
        }
    }

    /// One shape of §5's "seen in 2026" list: usage type, inference type, and what the
    /// rules must say (token kind, model from the usage type, category, routing).
    struct Shape {
        usage_type: &'static str,
        inference_type: Option<&'static str>,
        kind: Option<TokenKind>,
        model: &'static str,
        category: UsageCategory,
        routing: Routing,
    }

    fn shapes_2026() -> Vec<Shape> {
        use Routing::*;
        use TokenKind::*;
        let s = |usage_type, inference_type, kind, model, category, routing| Shape {
            usage_type,
            inference_type,
            kind,
            model,
            category,
            routing,
        };
        vec![
            // Geographic cross-region routing.
            s(
                "USE1-Claude4.5Sonnet-input-tokens-cross-region-geo",
                None,
                Some(Input),
                "Claude4.5Sonnet",
                UsageCategory::OnDemand,
                CrossRegionGeographic,
            ),
            s(
                "EUC1-Claude4.5Sonnet-Output-Tokens-Cross-Region-Geo",
                Some("Output tokens"),
                Some(Output),
                "Claude4.5Sonnet",
                UsageCategory::OnDemand,
                CrossRegionGeographic,
            ),
            // Mantle: token kind `cache-write-tokens`, then routing and tier.
            s(
                "USW2-anthropic.claude-opus-4-8-mantle-cache-write-tokens-global-standard",
                None,
                Some(CacheWrite),
                "anthropic.claude-opus-4-8",
                UsageCategory::OnDemand,
                CrossRegionGlobal,
            ),
            s(
                "USW2-anthropic.claude-opus-4-8-mantle-cache-read-tokens-global-standard",
                None,
                Some(CacheRead),
                "anthropic.claude-opus-4-8",
                UsageCategory::OnDemand,
                CrossRegionGlobal,
            ),
            s(
                "USW2-anthropic.claude-opus-4-8-mantle-input-tokens-global-flex",
                None,
                Some(Input),
                "anthropic.claude-opus-4-8",
                UsageCategory::Flex,
                CrossRegionGlobal,
            ),
            s(
                "USE1-openai.gpt-oss-120b-mantle-input-tokens-standard",
                None,
                Some(Input),
                "openai.gpt-oss-120b",
                UsageCategory::OnDemand,
                InRegion,
            ),
            // The model cut also works without the mantle marker.
            s(
                "USE1-Claude4.6Opus-cache-write-tokens",
                None,
                Some(CacheWrite),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                InRegion,
            ),
            s(
                "USE1-Claude4.6Opus-cache-read-tokens-cross-region-global",
                None,
                Some(CacheRead),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                CrossRegionGlobal,
            ),
            // One-hour cache writes: cache write.
            s(
                "USE1-Claude4.6Opus-cache-write-1h-input-token-count",
                None,
                Some(CacheWrite),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                InRegion,
            ),
            s(
                "USE1-Claude4.6Opus-cache-write-1h-tokens",
                None,
                Some(CacheWrite),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                InRegion,
            ),
            s(
                "USE1-Claude4.6Opus-cache-write-1h-input-token-count-cross-region-global",
                Some("Cache write input tokens"),
                Some(CacheWrite),
                "Claude4.6Opus",
                UsageCategory::OnDemand,
                CrossRegionGlobal,
            ),
            // Reserved tier: capacity per minute, no tokens whatever inference_type says.
            s(
                "USE1-Claude4.5Sonnet-reserved-3-month-input-tokens-per-minute-cross-region-geo",
                None,
                None,
                "Claude4.5Sonnet",
                UsageCategory::Reserved,
                CrossRegionGeographic,
            ),
            s(
                "USE1-Claude4.5Sonnet-reserved-1-month-output-tokens-per-minute",
                Some("Output tokens"),
                None,
                "Claude4.5Sonnet",
                UsageCategory::Reserved,
                InRegion,
            ),
            s(
                "USE1-Claude4.5Sonnet-Reserved-3-Month-Cache-Read-Input-Tokens-Per-Minute-Cross-Region-Global",
                Some("Cache read input tokens"),
                None,
                "Claude4.5Sonnet",
                UsageCategory::Reserved,
                CrossRegionGlobal,
            ),
            // Provisioned throughput that names a token kind: capacity as well.
            s(
                "USE1-ProvisionedThroughput-Claude-input-tokens-ModelUnits",
                Some("Input tokens"),
                None,
                "ProvisionedThroughput-Claude",
                UsageCategory::ProvisionedThroughput,
                InRegion,
            ),
            // Marketplace global routing.
            s(
                "USE1-MP:USE1_CacheReadInputTokenCount_Global-Units",
                None,
                Some(CacheRead),
                "MP:USE1_CacheReadInputTokenCount_Global-Units",
                UsageCategory::OnDemand,
                CrossRegionGlobal,
            ),
        ]
    }

    #[test]
    fn shapes_seen_in_2026() {
        for shape in shapes_2026() {
            let ut = Some(shape.usage_type);
            let kind = token_kind(shape.inference_type, ut);
            assert_eq!(kind, shape.kind, "kind of {}", shape.usage_type);
            assert_eq!(
                model_name(None, None, ut),
                shape.model,
                "model of {}",
                shape.usage_type
            );
            assert_eq!(
                usage_category(ut, kind.is_some()),
                shape.category,
                "category of {}",
                shape.usage_type
            );
            assert_eq!(
                routing(ut),
                shape.routing,
                "routing of {}",
                shape.usage_type
            );
        }
    }

    #[test]
    fn capacity_names_a_kind_but_counts_no_tokens() {
        for ut in [
            "USE1-Claude4.5Sonnet-reserved-3-month-input-tokens-per-minute-cross-region-geo",
            "Claude4.5Sonnet-reserved-3-month-input-tokens-per-minute-cross-region-geo",
            "USE1-ProvisionedThroughput-ModelUnits",
            "USE1-Claude-ModelUnits-1Month-output-tokens",
        ] {
            assert!(is_capacity(Some(ut)), "{ut}");
            for inference_type in [
                None,
                Some(""),
                Some("Input tokens"),
                Some("Cache write input tokens"),
            ] {
                assert_eq!(
                    token_kind(inference_type, Some(ut)),
                    None,
                    "{ut} / {inference_type:?}"
                );
            }
        }
        assert!(!is_capacity(None));
        assert!(!is_capacity(Some("USE1-Claude4.6Sonnet-input-tokens")));
        // The capacity rule reads the usage type only: an inference type alone is tokens.
        assert_eq!(
            token_kind(Some("Input tokens"), None),
            Some(TokenKind::Input)
        );
    }

    #[test]
    fn routings() {
        let cases = [
            ("USE1-Claude4.6Sonnet-input-tokens", Routing::InRegion),
            (
                "USE1-Claude4.6Sonnet-output-tokens-cross-region-global",
                Routing::CrossRegionGlobal,
            ),
            (
                "USE1-Claude4.6Sonnet-OUTPUT-TOKENS-CROSS-REGION-GLOBAL",
                Routing::CrossRegionGlobal,
            ),
            (
                "USE1-Claude4.5Sonnet-input-tokens-cross-region-geo",
                Routing::CrossRegionGeographic,
            ),
            (
                "USW2-anthropic.claude-opus-4-8-mantle-input-tokens-global-standard",
                Routing::CrossRegionGlobal,
            ),
            ("USE1-MP:USE1_InputTokenCount-Units", Routing::InRegion),
            (
                "USE1-MP:USE1_CacheReadInputTokenCount_Global-Units",
                Routing::CrossRegionGlobal,
            ),
            ("USE1-Nova2.0Lite-input-tokens-flex", Routing::InRegion),
            ("", Routing::InRegion),
        ];
        for (usage_type, want) in cases {
            assert_eq!(routing(Some(usage_type)), want, "{usage_type}");
        }
        assert_eq!(routing(None), Routing::InRegion);
        for r in Routing::ALL {
            assert_eq!(Routing::from_code(r.code()), Some(r));
        }
        assert_eq!(Routing::from_code(0), None);
    }
}
