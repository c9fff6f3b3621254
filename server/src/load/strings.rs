//! String columns of raw batches as the file stores them, and the memo that turns their
//! values into dictionary ids.
//!
//! CUR files dictionary-encode their low-cardinality columns (caller, account, usage
//! type, tag keys and values...), and the reader keeps that encoding when asked
//! (`file::scan`): a batch then carries small integer keys into a dictionary shared by
//! the batches of a row group. A [`Memo`] interns each dictionary value once, on first
//! use, so that a value repeated on millions of line items costs an array lookup per
//! row instead of hashing and comparing its text. Columns a file stores plainly are read
//! as plain strings and interned row by row, as before.

use datafusion::arrow::{
    array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray},
    compute::cast,
    datatypes::{DataType, Int32Type},
    error::ArrowError,
};

/// The type string columns are read as when dictionary-encoded.
pub fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// One string column of a batch.
#[derive(Debug)]
pub enum Strings {
    /// Each row's text.
    Plain(StringArray),
    /// Each row's key into `values` (null keys are null rows).
    Dictionary {
        /// Per row.
        keys: Int32Array,
        /// Shared by the batches of a row group.
        values: StringArray,
    },
}

impl Strings {
    /// `array` as strings: dictionaries of any key and string type as
    /// `Dictionary(Int32, Utf8)` (a no-op for that type), anything else cast to `Utf8`.
    pub fn of(array: &ArrayRef) -> Result<Self, ArrowError> {
        if let DataType::Dictionary(_, _) = array.data_type() {
            let d = cast(array, &dictionary_type())?;
            let d = d.as_dictionary::<Int32Type>();
            return Ok(Self::Dictionary {
                keys: d.keys().clone(),
                values: d.values().as_string::<i32>().clone(),
            });
        }
        Ok(Self::Plain(
            cast(array, &DataType::Utf8)?.as_string::<i32>().clone(),
        ))
    }

    /// Column `name` of `batch`, if the file has it.
    pub fn column(batch: &RecordBatch, name: &str) -> Result<Option<Self>, ArrowError> {
        batch.column_by_name(name).map(Self::of).transpose()
    }

    /// The text of `row` (`None` when null).
    pub fn get(&self, row: usize) -> Option<&str> {
        match self {
            Self::Plain(a) => a.is_valid(row).then(|| a.value(row)),
            Self::Dictionary { keys, values } => {
                let key = keys.is_valid(row).then(|| keys.value(row) as usize)?;
                values.is_valid(key).then(|| values.value(key))
            }
        }
    }
}

/// Marks a dictionary value not interned yet.
const UNSET: u32 = u32::MAX;

/// The ids one column's values have in an interner, remembered per dictionary value for
/// as long as the column's batches share a dictionary.
#[derive(Debug, Default)]
pub struct Memo {
    /// The dictionary the ids belong to. Holding it keeps its buffers alive, so a new
    /// dictionary can never reuse their addresses: equal addresses mean this dictionary.
    held: Option<StringArray>,
    ids: Vec<u32>,
}

impl Memo {
    /// The id of `row`'s text in the interner behind `intern` (`None` when null),
    /// calling `intern` once per dictionary value, or on every row of a plain column.
    pub fn id(
        &mut self,
        column: &Strings,
        row: usize,
        intern: impl FnOnce(&str) -> u32,
    ) -> Option<u32> {
        match column {
            Strings::Plain(a) => a.is_valid(row).then(|| intern(a.value(row))),
            Strings::Dictionary { keys, values } => {
                if !keys.is_valid(row) {
                    return None;
                }
                let key = keys.value(row) as usize;
                if !values.is_valid(key) {
                    return None;
                }
                if !self.holds(values) {
                    self.held = Some(values.clone());
                    self.ids.clear();
                    self.ids.resize(values.len(), UNSET);
                }
                let id = &mut self.ids[key];
                if *id == UNSET {
                    *id = intern(values.value(key));
                }
                Some(*id)
            }
        }
    }

    fn holds(&self, values: &StringArray) -> bool {
        self.held.as_ref().is_some_and(|held| {
            held.len() == values.len()
                && held.value_offsets().as_ptr() == values.value_offsets().as_ptr()
                && held.value_data().as_ptr() == values.value_data().as_ptr()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::DictionaryArray;

    use super::*;
    use crate::layers::dict::Dictionary;

    fn dictionary(keys: &[Option<i32>], values: &[Option<&str>]) -> ArrayRef {
        let values: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys.to_vec()), values)
                .expect("a valid dictionary"),
        )
    }

    #[test]
    fn dictionary_values_are_interned_once_per_dictionary() {
        let mut interned = Dictionary::default();
        let mut calls = 0;
        let mut memo = Memo::default();
        let a = Strings::of(&dictionary(
            &[Some(0), Some(1), Some(0), None, Some(2), Some(1)],
            &[Some("alice"), Some("bob"), None],
        ))
        .expect("strings");
        let ids: Vec<Option<u32>> = (0..6)
            .map(|row| {
                memo.id(&a, row, |s| {
                    calls += 1;
                    interned.intern(s)
                })
            })
            .collect();
        assert_eq!(calls, 2, "alice and bob, once each");
        let (alice, bob) = (interned.id("alice"), interned.id("bob"));
        assert_eq!(ids, vec![alice, bob, alice, None, None, bob]);
        assert_eq!(a.get(1), Some("bob"));
        assert_eq!((a.get(3), a.get(4)), (None, None));

        // Another dictionary, with the same keys meaning other values.
        let b = Strings::of(&dictionary(
            &[Some(0), Some(1)],
            &[Some("bob"), Some("carol")],
        ))
        .expect("strings");
        let ids: Vec<Option<u32>> = (0..2)
            .map(|row| memo.id(&b, row, |s| interned.intern(s)))
            .collect();
        assert_eq!(ids, vec![bob, interned.id("carol")]);
    }

    #[test]
    fn plain_columns_and_other_string_types_are_read_as_text() {
        let plain: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None]));
        let s = Strings::of(&plain).expect("strings");
        assert!(matches!(s, Strings::Plain(_)));
        let mut memo = Memo::default();
        let mut interned = Dictionary::default();
        assert_eq!(memo.id(&s, 0, |v| interned.intern(v)), interned.id("x"));
        assert_eq!(memo.id(&s, 1, |v| interned.intern(v)), None);

        let keys = datafusion::arrow::array::UInt8Array::from(vec![1, 0]);
        let values: ArrayRef = Arc::new(datafusion::arrow::array::StringViewArray::from(vec![
            "p", "q",
        ]));
        let small: ArrayRef =
            Arc::new(DictionaryArray::try_new(keys, values).expect("a valid dictionary"));
        let s = Strings::of(&small).expect("strings");
        assert!(matches!(s, Strings::Dictionary { .. }));
        assert_eq!((s.get(0), s.get(1)), (Some("q"), Some("p")));
    }
}
