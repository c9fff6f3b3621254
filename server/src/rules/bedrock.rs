//! Which CUR line items are Bedrock spend.

/// Product codes that are Bedrock by default. Claude is often billed through AWS
/// Marketplace under an opaque product code, so this list alone is not enough; see
/// [`BedrockRule::is_bedrock`].
pub const DEFAULT_PRODUCT_CODES: [&str; 3] = [
    "AmazonBedrock",
    "AmazonBedrockService",
    "AmazonBedrockFoundationModels",
];

const MARKETPLACE_ENTITY: &str = "AWS Marketplace";
const MARKETPLACE_SUFFIX: &str = "(Amazon Bedrock Edition)";
const PRODUCT_FAMILY: &str = "Amazon Bedrock";

/// The fields of a line item that decide whether it is Bedrock spend.
#[derive(Debug, Clone, Copy, Default)]
pub struct BedrockFields<'a> {
    /// `line_item_product_code`.
    pub product_code: Option<&'a str>,
    /// `product_product_family`.
    pub product_family: Option<&'a str>,
    /// `bill_billing_entity`.
    pub billing_entity: Option<&'a str>,
    /// `product['product_name']`.
    pub product_name: Option<&'a str>,
    /// `line_item_iam_principal`.
    pub principal: Option<&'a str>,
}

/// The configurable rule that picks Bedrock line items.
#[derive(Debug, Clone)]
pub struct BedrockRule {
    product_codes: Vec<String>,
}

impl Default for BedrockRule {
    fn default() -> Self {
        Self::new(
            DEFAULT_PRODUCT_CODES
                .iter()
                .map(|c| c.to_string())
                .collect(),
        )
    }
}

impl BedrockRule {
    /// A rule over the given product codes.
    pub fn new(product_codes: Vec<String>) -> Self {
        Self { product_codes }
    }

    /// The product codes counted as Bedrock.
    pub fn product_codes(&self) -> &[String] {
        &self.product_codes
    }

    /// A line item is Bedrock when its product code is listed, its product family is
    /// Amazon Bedrock, it is a Marketplace "(Amazon Bedrock Edition)" product, or it
    /// carries a caller (only Bedrock stamps callers).
    pub fn is_bedrock(&self, f: &BedrockFields<'_>) -> bool {
        f.product_code
            .is_some_and(|code| self.product_codes.iter().any(|c| c == code))
            || f.product_family == Some(PRODUCT_FAMILY)
            || (f.billing_entity == Some(MARKETPLACE_ENTITY)
                && f.product_name
                    .is_some_and(|n| n.ends_with(MARKETPLACE_SUFFIX)))
            || f.principal.is_some_and(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_membership() {
        let rule = BedrockRule::default();
        let yes = |f: BedrockFields<'_>| rule.is_bedrock(&f);
        assert!(yes(BedrockFields {
            product_code: Some("AmazonBedrock"),
            ..Default::default()
        }));
        assert!(yes(BedrockFields {
            product_family: Some("Amazon Bedrock"),
            ..Default::default()
        }));
        assert!(yes(BedrockFields {
            product_code: Some("c8a1b2opaque"),
            billing_entity: Some("AWS Marketplace"),
            product_name: Some("Claude Sonnet 4.6 (Amazon Bedrock Edition)"),
            ..Default::default()
        }));
        assert!(!yes(BedrockFields {
            billing_entity: Some("AWS Marketplace"),
            product_name: Some("Some SaaS"),
            ..Default::default()
        }));
        assert!(!yes(BedrockFields {
            billing_entity: Some("AWS"),
            product_name: Some("Claude Sonnet 4.6 (Amazon Bedrock Edition)"),
            ..Default::default()
        }));
        assert!(yes(BedrockFields {
            principal: Some("arn:aws:iam::123456789012:user/a"),
            ..Default::default()
        }));
        assert!(!yes(BedrockFields {
            product_code: Some("AmazonEC2"),
            principal: Some(""),
            ..Default::default()
        }));
        let custom = BedrockRule::new(vec!["AmazonBedrockAgentCore".into()]);
        assert!(custom.is_bedrock(&BedrockFields {
            product_code: Some("AmazonBedrockAgentCore"),
            ..Default::default()
        }));
    }
}
