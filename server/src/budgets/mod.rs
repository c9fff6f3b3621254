//! Budgets: a monthly amount for a scope of spend (a tag value, a caller, a role with
//! all its sessions, an account, a model, or several of them ANDed), with warning
//! thresholds, and where each stands in a month.
//!
//! [`store`] keeps the definitions: read-only ones from the budgets file (a ConfigMap)
//! and those created through the API, persisted atomically to a local JSON file.
//! [`spend`] turns a budget into a query over the layers (the planner's filters, the
//! caller's scope ANDed in) and runs one DataFusion plan for many budgets;
//! [`forecast`] is the run-rate method, plain exact integer arithmetic. Validation of a
//! definition lives here, shared by the file and the RPCs, with the field named.

pub mod forecast;
pub mod spend;
pub mod store;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::{
    account::AccountId,
    error::Error,
    query::{Filter, TagFilter},
    rules::{
        arn::{Principal, PrincipalKind},
        money,
    },
    service::convert,
};

/// Most budgets a server holds, from the file and the API together: each is a query
/// in every `BudgetStatus`, so the number is bounded like any other request size.
pub const MAX_BUDGETS: usize = 1000;
/// Most budgets one caller of the callers file may create through the API unless
/// `--max-budgets-per-caller` says otherwise: a tenth of [`MAX_BUDGETS`], so that one
/// caller (a script in a loop) cannot take every budget of the server.
pub const DEFAULT_BUDGETS_PER_CALLER: u16 = 100;
/// Longest budget name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Decimal places a threshold may have (`0.875`, `0.9999`).
pub const THRESHOLD_PLACES: u32 = 4;
/// Largest monthly amount, in whole currency units: far above any Bedrock bill, and
/// low enough that every product of amounts, thresholds and spend stays in `i128`.
pub const MAX_AMOUNT_UNITS: i128 = 1_000_000_000_000_000;
/// Thresholds of a budget that names none: warn at 80%, and at the amount.
pub const DEFAULT_THRESHOLDS: [&str; 2] = ["0.8", "1"];

/// Which spend a budget counts; the fields that are set AND together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetScope {
    /// Tag key and the one value a line item must carry.
    pub tag: Option<(String, String)>,
    /// Exact caller ARN.
    pub principal_arn: Option<String>,
    /// A role, `arn:PARTITION:iam::ACCOUNT:role/NAME`: the role itself and every
    /// assumed-role session of it.
    pub role_arn: Option<String>,
    /// Usage account.
    pub account_id: Option<AccountId>,
    /// Model name, as `ListModels` names it.
    pub model: Option<String>,
}

impl BudgetScope {
    /// The query filter of every field but the role (which is resolved against the
    /// snapshot's callers, see [`spend`]): the same filter machinery as every request.
    pub fn filter(&self) -> Filter {
        Filter {
            account_ids: self.account_id.into_iter().collect(),
            principals: self.principal_arn.iter().cloned().collect(),
            models: self.model.iter().cloned().collect(),
            tags: self
                .tag
                .iter()
                .map(|(key, value)| TagFilter {
                    key: key.clone(),
                    values: vec![value.clone()],
                    untagged: false,
                })
                .collect(),
            ..Filter::default()
        }
    }
}

/// A positive amount of one currency, in units of 1e-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// Units of 1e-10.
    pub units: i128,
}

/// A warning threshold: a fraction of the amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// As written back to callers, normalised (`0.8`, `1`).
    pub text: String,
    /// The fraction in units of 10^-[`THRESHOLD_PLACES`].
    pub scaled: i128,
}

impl Threshold {
    /// Whether `value` (units of 1e-10) reaches this fraction of `amount` (units of
    /// 1e-10), compared exactly: `value * 10^4 >= threshold * 10^4 * amount`.
    pub fn reached(&self, value: i128, amount: i128) -> bool {
        let scale = 10_i128.pow(THRESHOLD_PLACES);
        match (value.checked_mul(scale), self.scaled.checked_mul(amount)) {
            (Some(v), Some(limit)) => v >= limit,
            // Only spend beyond 10^24 currency units overflows: far past any limit.
            (None, _) => value > 0,
            (_, None) => false,
        }
    }
}

/// Where a budget is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The budgets file: read-only through the API.
    File,
    /// Created through the API and persisted in the state file.
    Api,
}

/// A validated budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Unique among all budgets.
    pub id: String,
    /// For people.
    pub name: String,
    /// The spend it counts.
    pub scope: BudgetScope,
    /// ISO 4217-shaped currency code (three uppercase letters).
    pub currency: String,
    /// Amount per calendar month.
    pub amount: Amount,
    /// Warning thresholds, ascending, without repeats.
    pub thresholds: Vec<Threshold>,
    /// The caller that created it; `None` for the file's budgets and without access
    /// control.
    pub owner: Option<String>,
    /// Where it is defined.
    pub origin: Origin,
    /// When it was created (API budgets).
    pub created_at: Option<DateTime<Utc>>,
}

/// A budget definition as sent or written, before validation. Empty strings are unset
/// fields, as in proto3.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// Name.
    pub name: String,
    /// Tag key and value; `None` when not set.
    pub tag: Option<(String, String)>,
    /// Exact caller ARN.
    pub principal_arn: String,
    /// Role ARN.
    pub role_arn: String,
    /// Usage account.
    pub account_id: String,
    /// Model name.
    pub model: String,
    /// Decimal amount, e.g. `1500` or `1234.5`.
    pub amount: String,
    /// Currency code.
    pub currency: String,
    /// Decimal fractions; empty for the defaults.
    pub thresholds: Vec<String>,
}

/// The validated parts of a draft (everything but id, owner and origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Name.
    pub name: String,
    /// Scope.
    pub scope: BudgetScope,
    /// Currency code.
    pub currency: String,
    /// Amount.
    pub amount: Amount,
    /// Thresholds, ascending.
    pub thresholds: Vec<Threshold>,
}

/// Field names of a draft as its source spells them: the proto's for the RPC, the
/// file's keys for the budgets file.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// The amount field.
    pub amount: &'static str,
    /// The currency field.
    pub currency: &'static str,
}

impl Fields {
    /// `CreateBudgetRequest`'s names.
    pub const RPC: Self = Self {
        amount: "monthly_amount.exact",
        currency: "monthly_amount.currency_code",
    };
    /// The budgets file's and state file's names.
    pub const FILE: Self = Self {
        amount: "amount",
        currency: "currency",
    };
}

/// Validates a draft; a failure is INVALID_ARGUMENT naming the field (`scope.role_arn`,
/// `thresholds[1]`, ...) and saying what to send instead.
pub fn validate(draft: &Draft, fields: Fields) -> Result<Definition, Error> {
    let name = draft.name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            format!(
                "must be 1 to {MAX_NAME_CHARS} characters without control characters (got {chars})"
            ),
        ));
    }
    let scope = scope(draft)?;
    let currency = currency(fields.currency, &draft.currency)?;
    let amount = amount(fields.amount, &draft.amount)?;
    let thresholds = thresholds(&draft.thresholds)?;
    Ok(Definition {
        name: name.to_owned(),
        scope,
        currency,
        amount,
        thresholds,
    })
}

fn set(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn scope(draft: &Draft) -> Result<BudgetScope, Error> {
    let mut scope = BudgetScope::default();
    if let Some((key, value)) = &draft.tag {
        let key = convert::tag_key("scope.tag.key", key)?;
        if value.is_empty() {
            return Err(Error::invalid(
                "scope.tag.value",
                "is required with scope.tag: the exact value, e.g. \"search\"",
            ));
        }
        convert::tag_value(value).map_err(|reason| Error::invalid("scope.tag.value", reason))?;
        scope.tag = Some((key, value.clone()));
    }
    if let Some(arn) = set(&draft.principal_arn) {
        convert::principal_filter(&arn)
            .map_err(|reason| Error::invalid("scope.principal_arn", reason))?;
        scope.principal_arn = Some(arn);
    }
    if let Some(arn) = set(&draft.role_arn) {
        let p = Principal::parse(Some(&arn));
        if p.kind != PrincipalKind::IamRole || arn.chars().any(char::is_control) {
            return Err(Error::invalid(
                "scope.role_arn",
                format!(
                    "{:?} is not a role ARN: use arn:PARTITION:iam::ACCOUNT:role/NAME, e.g. arn:aws:iam::123456789012:role/app (its sessions are included)",
                    arn.chars().take(80).collect::<String>()
                ),
            ));
        }
        scope.role_arn = Some(arn);
    }
    if let Some(account) = set(&draft.account_id) {
        scope.account_id = Some(
            convert::account(&account)
                .map_err(|reason| Error::invalid("scope.account_id", reason))?,
        );
    }
    if let Some(model) = set(&draft.model) {
        convert::text(&model, convert::MAX_NAME_CHARS, "names")
            .map_err(|reason| Error::invalid("scope.model", reason))?;
        scope.model = Some(model);
    }
    if scope == BudgetScope::default() {
        return Err(Error::invalid(
            "scope",
            "is empty: set at least one of tag, principal_arn, role_arn, account_id, model (a budget of all spend needs an account or a tag)",
        ));
    }
    Ok(scope)
}

/// ISO 4217-shaped: three uppercase ASCII letters. The data's own currencies are not
/// required, so a budget can be set before its first line item arrives.
fn currency(field: &'static str, code: &str) -> Result<String, Error> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code.to_owned())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{:?} is not a currency code: three uppercase letters (ISO 4217), e.g. \"USD\"",
                code.chars().take(20).collect::<String>()
            ),
        ))
    }
}

/// A plain positive decimal (`1500`, `1234.5`), at most ten decimal places and
/// [`MAX_AMOUNT_UNITS`].
fn amount(field: &'static str, text: &str) -> Result<Amount, Error> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && !text.starts_with('.')
        && !text.ends_with('.');
    let invalid = |reason: &str| {
        Error::invalid(
            field,
            format!("{:?} {reason}", text.chars().take(40).collect::<String>()),
        )
    };
    if !plain {
        return Err(invalid(
            "is not a positive decimal amount: digits with an optional decimal point, e.g. \"1500\" or \"1234.50\"",
        ));
    }
    let places = text.split_once('.').map_or(0, |(_, f)| f.len());
    if places > money::SCALE as usize {
        return Err(invalid("has more than ten decimal places"));
    }
    let decimal: Decimal = text
        .parse()
        .map_err(|_| invalid("is too large; at most 1000000000000000"))?;
    let units = money::to_scaled(decimal);
    if units <= 0 {
        return Err(invalid("is not positive"));
    }
    if units > MAX_AMOUNT_UNITS * 10_i128.pow(money::SCALE) {
        return Err(invalid("is too large; at most 1000000000000000"));
    }
    Ok(Amount { units })
}

fn thresholds(texts: &[String]) -> Result<Vec<Threshold>, Error> {
    let defaults: Vec<String> = DEFAULT_THRESHOLDS.iter().map(|t| (*t).to_owned()).collect();
    let texts = if texts.is_empty() { &defaults } else { texts };
    if texts.len() > 10 {
        return Err(Error::invalid(
            "thresholds",
            format!("has {} values; at most 10", texts.len()),
        ));
    }
    let mut out: Vec<Threshold> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let field = format!("thresholds[{i}]");
        let invalid = || {
            Error::invalid(
                field.clone(),
                format!(
                    "{:?} is not a fraction in (0, 10] with at most {THRESHOLD_PLACES} decimal places, e.g. \"0.8\" for 80%",
                    text.chars().take(40).collect::<String>()
                ),
            )
        };
        let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let decimal: Decimal = if plain {
            text.parse().map_err(|_| invalid())?
        } else {
            return Err(invalid());
        };
        if decimal.scale() > THRESHOLD_PLACES && decimal.normalize().scale() > THRESHOLD_PLACES {
            return Err(invalid());
        }
        let mut scaled = decimal.normalize();
        scaled.rescale(THRESHOLD_PLACES);
        let scaled = scaled.mantissa();
        if scaled <= 0 || scaled > 10 * 10_i128.pow(THRESHOLD_PLACES) {
            return Err(invalid());
        }
        if out.iter().any(|t| t.scaled == scaled) {
            return Err(Error::invalid(field, format!("{text:?} is listed twice")));
        }
        out.push(Threshold {
            text: decimal.normalize().to_string(),
            scaled,
        });
    }
    out.sort_by_key(|t| t.scaled);
    Ok(out)
}

/// Whether a budget id is well formed: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            name: "search".into(),
            tag: Some(("iamPrincipal/team".into(), "search".into())),
            amount: "1500.25".into(),
            currency: "USD".into(),
            ..Draft::default()
        }
    }

    fn field_of(d: &Draft) -> String {
        match validate(d, Fields::RPC) {
            Err(Error::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_valid_draft_gets_defaults() {
        let def = validate(&draft(), Fields::RPC).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(def.amount.units, 15_002_500_000_000);
        let texts: Vec<_> = def.thresholds.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["0.8", "1"]);
        assert_eq!(def.scope.filter().tags[0].values, ["search"]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |f: fn(&mut Draft)| {
            let mut d = draft();
            f(&mut d);
            field_of(&d)
        };
        assert_eq!(with(|d| d.name = String::new()), "name");
        assert_eq!(with(|d| d.name = "x".repeat(129)), "name");
        assert_eq!(with(|d| d.tag = None), "scope");
        assert_eq!(
            // Any character may be asked for (NUL and TAB included); only length is bounded.
            with(|d| d.tag = Some((format!("iamPrincipal/{}", "k".repeat(1000)), "v".into()))),
            "scope.tag.key"
        );
        assert_eq!(
            with(|d| d.tag = Some(("iamPrincipal/team".into(), String::new()))),
            "scope.tag.value"
        );
        assert_eq!(
            with(|d| d.principal_arn = "arn:aws:iam::12:user/x".into()),
            "scope.principal_arn"
        );
        assert_eq!(
            with(|d| d.role_arn = "arn:aws:sts::123456789012:assumed-role/r/s".into()),
            "scope.role_arn"
        );
        assert_eq!(with(|d| d.account_id = "12345".into()), "scope.account_id");
        assert_eq!(with(|d| d.model = "m\n".into()), "scope.model");
        for bad in [
            "",
            "-5",
            "0",
            "1e3",
            "1.",
            "1.12345678901",
            "+3",
            "0.00000000001",
        ] {
            assert_eq!(with_amount(bad), "monthly_amount.exact", "{bad:?}");
        }
        for bad in ["usd", "US", "EURO", ""] {
            let mut d = draft();
            d.currency = bad.into();
            assert_eq!(field_of(&d), "monthly_amount.currency_code", "{bad:?}");
        }
        for (list, at) in [
            (vec!["0"], "thresholds[0]"),
            (vec!["0.5", "10.0001"], "thresholds[1]"),
            (vec!["0.5", "-1"], "thresholds[1]"),
            (vec!["0.12345"], "thresholds[0]"),
            (vec!["0.8", "0.80"], "thresholds[1]"),
        ] {
            let mut d = draft();
            d.thresholds = list.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(field_of(&d), at, "{list:?}");
        }
    }

    fn with_amount(text: &str) -> String {
        let mut d = draft();
        d.amount = text.into();
        field_of(&d)
    }

    #[test]
    fn thresholds_compare_exactly() {
        let mut d = draft();
        d.thresholds = vec!["1.0".into(), "0.9999".into(), "10".into()];
        let def = validate(&d, Fields::RPC).unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<_> = def.thresholds.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["0.9999", "1", "10"]);
        let amount = 100 * 10_i128.pow(10);
        // 99.99 reaches 0.9999 of 100 exactly; one unit less does not.
        assert!(def.thresholds[0].reached(9_999 * 10_i128.pow(8), amount));
        assert!(!def.thresholds[0].reached(9_999 * 10_i128.pow(8) - 1, amount));
        assert!(def.thresholds[1].reached(amount, amount));
        assert!(!def.thresholds[2].reached(amount * 10 - 1, amount));
    }

    #[test]
    fn ids() {
        assert!(valid_id("search-2026.q3_x"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
