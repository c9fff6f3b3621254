//! Per-token prices of plain input and of cache reads, for the efficiency view's cache
//! saving: what the cache-read tokens would have cost as plain input, less what they
//! cost.
//!
//! The layers keep tokens by kind but one cost per row (line items that differ only in
//! token kind share a row), so the price of each kind is kept apart here, per *price
//! key*: usage month, model, region, usage category, routing and currency. A period adds
//! up its `Usage` line items of kind input and cache read ([`RateSheet`], tiny: a few
//! hundred keys); a snapshot merges its periods' sheets by usage month and turns each
//! key into the difference of the two prices ([`price_table`]), which plans join on.
//! Prices are in units of 1e-10 per million tokens (1e-16 per token), so that a saving
//! (tokens times a price difference) is an integer and sums exactly whatever layer or
//! grouping it comes from.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::{
    array::{Int64Array, RecordBatch, UInt8Array, UInt32Array},
    datatypes::{DataType, Field, Schema, SchemaRef},
    error::ArrowError,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{Amounts, LineKey, METRICS, dict::Dictionaries, month_start};
use crate::{query::CostMetric, rules::usage::TokenKind};

/// What a price depends on, with ids in some set of dictionaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PriceKey {
    /// Start of the usage month (µs).
    pub month: i64,
    /// Model id.
    pub model: u32,
    /// Region id.
    pub region: u32,
    /// Usage category code.
    pub category: u8,
    /// Routing code.
    pub routing: u8,
    /// Currency id.
    pub currency: u32,
}

impl PriceKey {
    /// The price key of a line item's fine-row key.
    pub fn of(key: &LineKey) -> Self {
        Self {
            month: month_start(key.start),
            model: key.model,
            region: key.region,
            category: key.category,
            routing: key.routing,
            currency: key.currency,
        }
    }
}

/// Tokens of one kind and what they cost (integer units of 1e-10, every metric).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSums {
    /// Tokens.
    pub tokens: i64,
    /// Their direct cost.
    pub cost: Amounts,
}

impl KindSums {
    fn merge(&mut self, other: &KindSums) -> Result<(), ArrowError> {
        self.tokens = self
            .tokens
            .checked_add(other.tokens)
            .ok_or_else(|| ArrowError::ComputeError("token count beyond i64".into()))?;
        self.cost = self.cost.checked_add(&other.cost)?;
        Ok(())
    }

    /// The price per million tokens under `metric`, in units of 1e-10, rounded half
    /// away from zero; none without tokens.
    pub fn price(&self, metric: CostMetric) -> Option<i128> {
        (self.tokens > 0).then(|| {
            let scaled = i128::from(self.cost.get(metric)) * 1_000_000;
            let tokens = i128::from(self.tokens);
            // Half away from zero: |x| / t rounded is (2|x| + t) / 2t.
            let rounded = (2 * scaled.abs() + tokens) / (2 * tokens);
            if scaled < 0 { -rounded } else { rounded }
        })
    }
}

/// Plain input and cache-read sums of one price key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySums {
    /// Uncached input tokens.
    pub input: KindSums,
    /// Cache-read tokens.
    pub cache_read: KindSums,
}

impl KeySums {
    fn merge(&mut self, other: &KeySums) -> Result<(), ArrowError> {
        self.input.merge(&other.input)?;
        self.cache_read.merge(&other.cache_read)
    }

    /// How much cheaper a cache-read token was than a plain input one under `metric`,
    /// per million tokens in units of 1e-10; none unless both kinds have tokens.
    pub fn saving_per_million(&self, metric: CostMetric) -> Option<i128> {
        Some(self.input.price(metric)? - self.cache_read.price(metric)?)
    }
}

/// One period's (or file's) sums by price key, with ids in its dictionaries.
#[derive(Debug, Clone, Default)]
pub struct RateSheet {
    keys: FxHashMap<PriceKey, KeySums>,
}

impl RateSheet {
    /// Adds a `Usage` line item of token kind `kind`; kinds other than input and cache
    /// read are not priced here.
    pub fn add(
        &mut self,
        key: &LineKey,
        kind: TokenKind,
        tokens: i64,
        cost: Amounts,
    ) -> Result<(), ArrowError> {
        let sums = KindSums { tokens, cost };
        let entry = self.keys.entry(PriceKey::of(key)).or_default();
        match kind {
            TokenKind::Input => entry.input.merge(&sums),
            TokenKind::CacheRead => entry.cache_read.merge(&sums),
            TokenKind::Output | TokenKind::CacheWrite => Ok(()),
        }
    }

    /// Adds `other`'s keys, mapping its ids through `map` (its dictionaries onto ours).
    pub fn absorb(
        &mut self,
        other: &RateSheet,
        map: impl Fn(&PriceKey) -> PriceKey,
    ) -> Result<(), ArrowError> {
        for (key, sums) in &other.keys {
            self.keys.entry(map(key)).or_default().merge(sums)?;
        }
        Ok(())
    }

    /// The sheet with its ids replaced by the names in `dicts`, ordered, for storing
    /// and for merging into a snapshot with other dictionaries.
    pub fn named(&self, dicts: &Dictionaries) -> Vec<Rate> {
        let mut rates: Vec<Rate> = self
            .keys
            .iter()
            .map(|(k, sums)| Rate {
                month: k.month,
                model: dicts.models.value(k.model).to_owned(),
                region: dicts.regions.value(k.region).to_owned(),
                category: k.category,
                routing: k.routing,
                currency: dicts.currencies.value(k.currency).to_owned(),
                sums: *sums,
            })
            .collect();
        rates.sort_by(|a, b| {
            (
                a.month,
                &a.model,
                &a.region,
                a.category,
                a.routing,
                &a.currency,
            )
                .cmp(&(
                    b.month,
                    &b.model,
                    &b.region,
                    b.category,
                    b.routing,
                    &b.currency,
                ))
        });
        rates
    }

    /// Number of price keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A price key by name, with its sums: what a period keeps and persists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Start of the usage month (µs).
    pub month: i64,
    /// Model name.
    pub model: String,
    /// Region code (empty: none).
    pub region: String,
    /// Usage category code.
    pub category: u8,
    /// Routing code.
    pub routing: u8,
    /// Currency code.
    pub currency: String,
    /// Plain input and cache-read sums.
    pub sums: KeySums,
}

/// Column names of the price table.
pub mod col {
    /// Start of the usage month, µs (`Int64`).
    pub const MONTH: &str = "p_month";
    /// Model id.
    pub const MODEL: &str = "p_model";
    /// Region id.
    pub const REGION: &str = "p_region";
    /// Usage category code.
    pub const CATEGORY: &str = "p_category";
    /// Routing code.
    pub const ROUTING: &str = "p_routing";
    /// Currency id.
    pub const CURRENCY: &str = "p_currency";
}

/// The price table column of a metric's saving per million cache-read tokens.
pub fn saving_column(metric: CostMetric) -> &'static str {
    match metric {
        CostMetric::Unblended => "p_saving_unblended",
        CostMetric::NetUnblended => "p_saving_net_unblended",
        CostMetric::Blended => "p_saving_blended",
        CostMetric::PublicOnDemand => "p_saving_public_on_demand",
    }
}

/// Schema of the price table.
pub static PRICE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(col::MONTH, DataType::Int64, false),
        Field::new(col::MODEL, DataType::UInt32, false),
        Field::new(col::REGION, DataType::UInt32, false),
        Field::new(col::CATEGORY, DataType::UInt8, false),
        Field::new(col::ROUTING, DataType::UInt8, false),
        Field::new(col::CURRENCY, DataType::UInt32, false),
    ];
    for m in METRICS {
        fields.push(Field::new(saving_column(m), DataType::Int64, true));
    }
    Arc::new(Schema::new(fields))
});

/// The snapshot's price table: the periods' rates merged by price key (a usage month
/// read in two periods counts both), with ids in `dicts`, and per metric the saving per
/// million cache-read tokens (NULL where a key lacks plain input or cache-read tokens,
/// or the difference leaves i64).
pub fn price_table<'a>(
    rates: impl IntoIterator<Item = &'a Rate>,
    dicts: &Dictionaries,
) -> Result<RecordBatch, ArrowError> {
    let mut merged: FxHashMap<PriceKey, KeySums> = FxHashMap::default();
    for r in rates {
        let (Some(model), Some(region), Some(currency)) = (
            dicts.models.id(&r.model),
            dicts.regions.id(&r.region),
            dicts.currencies.id(&r.currency),
        ) else {
            // Every name of a served period is in the snapshot's dictionaries.
            continue;
        };
        let key = PriceKey {
            month: r.month,
            model,
            region,
            category: r.category,
            routing: r.routing,
            currency,
        };
        merged.entry(key).or_default().merge(&r.sums)?;
    }
    let mut keys: Vec<(&PriceKey, &KeySums)> = merged.iter().collect();
    keys.sort_by_key(|(k, _)| {
        (
            k.month, k.model, k.region, k.category, k.routing, k.currency,
        )
    });
    let ids = |f: fn(&PriceKey) -> u32| {
        Arc::new(UInt32Array::from_iter_values(
            keys.iter().map(|(k, _)| f(k)),
        ))
    };
    let codes = |f: fn(&PriceKey) -> u8| {
        Arc::new(UInt8Array::from_iter_values(keys.iter().map(|(k, _)| f(k))))
    };
    let mut columns: Vec<datafusion::arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            keys.iter().map(|(k, _)| k.month),
        )),
        ids(|k| k.model),
        ids(|k| k.region),
        codes(|k| k.category),
        codes(|k| k.routing),
        ids(|k| k.currency),
    ];
    for m in METRICS {
        columns.push(Arc::new(Int64Array::from_iter(keys.iter().map(
            |(_, s)| s.saving_per_million(m).and_then(|v| i64::try_from(v).ok()),
        ))));
    }
    RecordBatch::try_new(PRICE_SCHEMA.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(unblended: i64) -> Amounts {
        Amounts {
            unblended,
            net_unblended: unblended / 2,
            ..Amounts::default()
        }
    }

    #[test]
    fn prices_round_half_away_from_zero_and_need_tokens() {
        let sums = |tokens, c| KindSums {
            tokens,
            cost: cost(c),
        };
        // $3 per million: 3e-6 per token, 30 units of 1e-10 per... token count 1000.
        assert_eq!(
            sums(1000, 30_000_000).price(CostMetric::Unblended),
            Some(30_000_000_000)
        );
        assert_eq!(sums(3, 1).price(CostMetric::Unblended), Some(333_333));
        assert_eq!(sums(2_000_000, 1).price(CostMetric::Unblended), Some(1));
        assert_eq!(sums(2_000_000, -1).price(CostMetric::Unblended), Some(-1));
        assert_eq!(sums(3_000_000, 1).price(CostMetric::Unblended), Some(0));
        assert_eq!(sums(0, 5).price(CostMetric::Unblended), None);
    }

    #[test]
    fn sheets_merge_by_key_and_name_their_ids() {
        let mut dicts = Dictionaries::default();
        let model = dicts.models.intern("claude");
        let region = dicts.regions.intern("us-east-1");
        let usd = dicts.currencies.intern("USD");
        let jan = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        let key = |start| LineKey {
            start,
            model,
            region,
            currency: usd,
            category: 1,
            routing: 1,
            ..LineKey::default()
        };
        let mut sheet = RateSheet::default();
        let hour = 3_600_000_000;
        let add = |s: &mut RateSheet, t, kind, tokens, c| {
            s.add(&key(t), kind, tokens, cost(c))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        add(&mut sheet, jan, TokenKind::Input, 1_000_000, 30_000_000_000);
        add(
            &mut sheet,
            jan + hour,
            TokenKind::Input,
            1_000_000,
            30_000_000_000,
        );
        add(
            &mut sheet,
            jan,
            TokenKind::CacheRead,
            500_000,
            1_500_000_000,
        );
        add(&mut sheet, jan, TokenKind::Output, 7, 99);
        assert_eq!(sheet.len(), 1, "one month, one key; output is not priced");
        let named = sheet.named(&dicts);
        assert_eq!(named[0].model, "claude");
        assert_eq!(named[0].sums.input.tokens, 2_000_000);
        // Input $3/M, cache read $0.30/M: $2.70 per million saved.
        assert_eq!(
            named[0].sums.saving_per_million(CostMetric::Unblended),
            Some(27_000_000_000)
        );
        // Two periods reading the same month add up; an unknown name is skipped.
        let mut other = named[0].clone();
        other.sums.cache_read.tokens = 500_000;
        other.sums.cache_read.cost = cost(0);
        let mut stranger = other.clone();
        stranger.model = "not-in-dicts".into();
        let table =
            price_table([&named[0], &other, &stranger], &dicts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(table.num_rows(), 1);
        let saving = table
            .column_by_name(saving_column(CostMetric::Unblended))
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
            .unwrap_or_else(|| panic!("saving column"));
        // Input: 4M tokens for $12, $3/M; cache reads: 1M tokens for $0.15, $0.15/M.
        assert_eq!(saving.value(0), 28_500_000_000);
        let blended = table
            .column_by_name(saving_column(CostMetric::Blended))
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
            .unwrap_or_else(|| panic!("blended column"));
        assert_eq!(blended.value(0), 0, "zero prices, zero saving");
    }
}
