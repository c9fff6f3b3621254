//! Dictionaries: every string a line item carries (caller, account, region, model, line
//! item type, currency, tag set) is stored once and referred to by a `u32` id.
//!
//! Ids are positions in append-only tables. A period is built with its own
//! dictionaries (so that its persisted layers are self-contained), then its ids are
//! mapped onto the snapshot's, which only ever grow: ids of periods already served stay
//! valid across refreshes.

use std::sync::Arc;

use datafusion::arrow::array::{StringArray, UInt32Array};
use rustc_hash::FxHashMap;

/// An append-only string table; id 0 is always the empty string, which stands for
/// "none" where a column allows none (no caller, no region).
#[derive(Debug, Clone)]
pub struct Dictionary {
    values: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
}

impl Default for Dictionary {
    fn default() -> Self {
        let mut d = Self {
            values: Vec::new(),
            ids: FxHashMap::default(),
        };
        d.intern("");
        d
    }
}

impl Dictionary {
    /// The id of `value`, adding it when new.
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(id) = self.ids.get(value) {
            return *id;
        }
        let id = self.values.len() as u32;
        let value: Arc<str> = value.into();
        self.values.push(value.clone());
        self.ids.insert(value, id);
        id
    }

    /// The id of `value`, if present.
    pub fn id(&self, value: &str) -> Option<u32> {
        self.ids.get(value).copied()
    }

    /// The value of `id` (the empty string for an unknown id).
    pub fn value(&self, id: u32) -> &str {
        self.values.get(id as usize).map_or("", |v| v)
    }

    /// Number of values, the empty string included.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether only the empty string is held.
    pub fn is_empty(&self) -> bool {
        self.values.len() <= 1
    }

    /// All values, indexed by id.
    pub fn values(&self) -> &[Arc<str>] {
        &self.values
    }

    /// A dictionary holding `values` in order; `None` unless the first is the empty string.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut d = Self {
            values: Vec::new(),
            ids: FxHashMap::default(),
        };
        for v in values {
            let id = d.values.len() as u32;
            let v: Arc<str> = v.into();
            d.values.push(v.clone());
            d.ids.entry(v).or_insert(id);
        }
        (d.values.first().is_some_and(|v| v.is_empty()) && d.ids.len() == d.values.len())
            .then_some(d)
    }

    /// The values as an Arrow array, indexed by id.
    pub fn to_array(&self) -> StringArray {
        StringArray::from_iter_values(self.values.iter().map(|v| &**v))
    }

    /// Adds every value of `other`, returning for each of its ids the id here.
    pub fn absorb(&mut self, other: &Dictionary) -> Vec<u32> {
        other.values.iter().map(|v| self.intern(v)).collect()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.values.iter().map(|v| v.len() + 32).sum::<usize>() * 2
    }
}

/// One line item's tags: `(key, value)` pairs sorted by key, keys unique.
pub type TagSet = Arc<[(String, String)]>;

/// Distinct tag maps; line items refer to them by id, so a tag query resolves a key once
/// per distinct map instead of once per line item. Id 0 is the empty map.
#[derive(Debug, Clone)]
pub struct TagSets {
    ids: FxHashMap<TagSet, u32>,
    sets: Vec<TagSet>,
}

impl Default for TagSets {
    fn default() -> Self {
        let mut sets = Self {
            ids: FxHashMap::default(),
            sets: Vec::new(),
        };
        sets.intern(Vec::new());
        sets
    }
}

impl TagSets {
    /// The id of a tag map given as entries sorted by key, keys unique.
    pub fn intern(&mut self, entries: Vec<(String, String)>) -> u32 {
        self.intern_set(entries.into())
    }

    fn intern_set(&mut self, entries: TagSet) -> u32 {
        if let Some(id) = self.ids.get(&entries) {
            return *id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(entries.clone());
        self.ids.insert(entries, id);
        id
    }

    /// All sets, indexed by id.
    pub fn sets(&self) -> &[TagSet] {
        &self.sets
    }

    /// The value of `key` in set `id`.
    pub fn value(&self, id: u32, key: &str) -> Option<&str> {
        let set = self.sets.get(id as usize)?;
        set.binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| set[i].1.as_str())
    }

    /// For each set id, the value of `key` (NULL where the set lacks it), as an Arrow
    /// array indexed by id: the lookup table a tag query joins with.
    pub fn values_of(&self, key: &str) -> StringArray {
        StringArray::from_iter((0..self.sets.len() as u32).map(|id| self.value(id, key)))
    }

    /// Adds every set of `other`, returning for each of its ids the id here.
    pub fn absorb(&mut self, other: &TagSets) -> Vec<u32> {
        other
            .sets
            .iter()
            .map(|s| self.intern_set(s.clone()))
            .collect()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.sets
            .iter()
            .map(|s| 48 + s.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>())
            .sum::<usize>()
            * 2
    }
}

/// Every dictionary a period's or a snapshot's layers refer to.
#[derive(Debug, Clone, Default)]
pub struct Dictionaries {
    /// Caller ARNs as they appear in the CUR; id 0 (empty) is no caller.
    pub principals: Dictionary,
    /// Payer and usage account ids.
    pub accounts: Dictionary,
    /// Region codes; id 0 is none.
    pub regions: Dictionary,
    /// Model names; id 0 is none.
    pub models: Dictionary,
    /// CUR line item types.
    pub line_item_types: Dictionary,
    /// Currency codes.
    pub currencies: Dictionary,
    /// Tag maps.
    pub tag_sets: TagSets,
}

/// For each dictionary of a period, its ids' ids in the snapshot's dictionaries.
#[derive(Debug, Clone, Default)]
pub struct Remap {
    /// Caller ids.
    pub principals: Vec<u32>,
    /// Account ids (payer and usage).
    pub accounts: Vec<u32>,
    /// Region ids.
    pub regions: Vec<u32>,
    /// Model ids.
    pub models: Vec<u32>,
    /// Line item type ids.
    pub line_item_types: Vec<u32>,
    /// Currency ids.
    pub currencies: Vec<u32>,
    /// Tag set ids.
    pub tag_sets: Vec<u32>,
}

impl Dictionaries {
    /// Adds every value of `other`, returning how its ids map onto these.
    pub fn absorb(&mut self, other: &Dictionaries) -> Remap {
        Remap {
            principals: self.principals.absorb(&other.principals),
            accounts: self.accounts.absorb(&other.accounts),
            regions: self.regions.absorb(&other.regions),
            models: self.models.absorb(&other.models),
            line_item_types: self.line_item_types.absorb(&other.line_item_types),
            currencies: self.currencies.absorb(&other.currencies),
            tag_sets: self.tag_sets.absorb(&other.tag_sets),
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.principals.heap_bytes()
            + self.accounts.heap_bytes()
            + self.regions.heap_bytes()
            + self.models.heap_bytes()
            + self.line_item_types.heap_bytes()
            + self.currencies.heap_bytes()
            + self.tag_sets.heap_bytes()
    }
}

/// Maps every id of `ids` through `map`; an id outside it (never produced by the
/// builders) maps to 0.
pub fn remap_ids(ids: &UInt32Array, map: &[u32]) -> UInt32Array {
    UInt32Array::from_iter_values(
        ids.values()
            .iter()
            .map(|id| map.get(*id as usize).copied().unwrap_or(0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_absorbed() {
        let mut a = Dictionary::default();
        assert_eq!(a.intern(""), 0);
        assert_eq!(a.intern("x"), 1);
        assert_eq!(a.intern("y"), 2);
        assert_eq!(a.intern("x"), 1);
        let mut b = Dictionary::default();
        b.intern("y");
        b.intern("z");
        assert_eq!(a.absorb(&b), vec![0, 2, 3]);
        assert_eq!(a.value(3), "z");
        assert_eq!(a.id("z"), Some(3));
        assert_eq!(
            Dictionary::from_values(["", "p", "q"]).and_then(|d| d.id("q")),
            Some(2)
        );
        assert!(Dictionary::from_values(["p"]).is_none());
    }

    #[test]
    fn tag_values_per_set() {
        let mut t = TagSets::default();
        let id = t.intern(vec![
            ("a".into(), "1".into()),
            ("iamPrincipal/team".into(), "risk".into()),
        ]);
        assert_eq!(id, 1);
        assert_eq!(t.value(id, "iamPrincipal/team"), Some("risk"));
        assert_eq!(t.value(0, "iamPrincipal/team"), None);
        let values = t.values_of("a");
        assert!(datafusion::arrow::array::Array::is_null(&values, 0));
        assert_eq!(values.value(1), "1");
    }
}
