//! Page tokens: authenticated, bound to caller, request and snapshot.

use proptest::prelude::*;

use super::hostile_string;
use crate::{
    error::Error,
    query::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_KEY_BYTES, PageKeys, PageRequest, slice},
};

fn keys() -> impl Strategy<Value = PageKeys> {
    proptest::collection::vec(any::<u8>(), MIN_KEY_BYTES..64)
        .prop_map(|bytes| PageKeys::new(bytes).expect("long enough"))
}

/// A page that has a next one: its token and what was asked.
fn issued() -> impl Strategy<Value = (PageKeys, u64, u64, String, PageRequest, usize)> {
    (
        keys(),
        any::<u64>(),
        any::<u64>(),
        "[a-z-]{0,12}",
        0usize..1_000_000,
        1usize..=MAX_PAGE_SIZE,
    )
        .prop_flat_map(|(keys, snapshot, fingerprint, caller, offset, size)| {
            let next = offset + size;
            (
                Just(keys),
                Just(snapshot),
                Just(fingerprint),
                Just(caller),
                Just(PageRequest { offset, size }),
                (next + 1)..(next + 1_000_000),
            )
        })
}

fn is_invalid(r: &Result<PageRequest, Error>) -> bool {
    matches!(r, Err(Error::InvalidArgument { .. }))
}

proptest! {
    #[test]
    fn a_token_leads_to_the_next_page(
        (keys, snapshot, fingerprint, caller, page, total) in issued()
    ) {
        let token = keys.next_token(page, total, snapshot, fingerprint, &caller);
        prop_assert!(!token.is_empty());
        let next = keys.request(page.size as i32, &token, snapshot, fingerprint, &caller);
        prop_assert_eq!(next.ok(), Some(PageRequest { offset: page.offset + page.size, size: page.size }));
        // The last page has no token.
        prop_assert_eq!(keys.next_token(page, page.offset + page.size, snapshot, fingerprint, &caller), "");
    }

    #[test]
    fn a_token_is_refused_for_another_caller_request_snapshot_or_key(
        (keys, snapshot, fingerprint, caller, page, total) in issued(),
        other_keys in keys(),
        other in "[A-Z]{1,12}",
    ) {
        let token = keys.next_token(page, total, snapshot, fingerprint, &caller);
        prop_assert!(is_invalid(&keys.request(0, &token, snapshot, fingerprint, &other)));
        prop_assert!(is_invalid(&keys.request(0, &token, snapshot, fingerprint ^ 1, &caller)));
        prop_assert!(matches!(
            keys.request(0, &token, snapshot.wrapping_add(1), fingerprint, &caller),
            Err(Error::StalePageToken { .. })
        ), "a token from another snapshot is stale");
        prop_assert!(is_invalid(&other_keys.request(0, &token, snapshot, fingerprint, &caller)));
    }

    #[test]
    fn a_changed_or_truncated_token_is_refused(
        (keys, snapshot, fingerprint, caller, page, total) in issued(),
        at in any::<prop::sample::Index>(),
        replacement in proptest::char::any(),
        cut in any::<prop::sample::Index>(),
    ) {
        let token = keys.next_token(page, total, snapshot, fingerprint, &caller);
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(is_invalid(&keys.request(0, &changed, snapshot, fingerprint, &caller)));
        let truncated = &token[..cut.index(token.len())];
        let r = keys.request(0, truncated, snapshot, fingerprint, &caller);
        if truncated.is_empty() {
            prop_assert_eq!(r.ok(), Some(PageRequest { offset: 0, size: DEFAULT_PAGE_SIZE }));
        } else {
            prop_assert!(is_invalid(&r));
        }
    }

    #[test]
    fn any_string_is_refused_or_a_first_page(keys in keys(), token in hostile_string(), size in any::<i32>()) {
        let r = keys.request(size, &token, 1, 2, "caller");
        if !(0..=MAX_PAGE_SIZE as i32).contains(&size) {
            prop_assert!(is_invalid(&r), "page_size {size}");
        } else if token.is_empty() {
            prop_assert_eq!(r.ok().map(|p| p.offset), Some(0));
        } else {
            prop_assert!(is_invalid(&r));
        }
    }

    #[test]
    fn a_slice_stays_inside_the_rows(len in 0usize..2000, offset in any::<usize>(), size in 0usize..3000) {
        let rows: Vec<usize> = (0..len).collect();
        let s = slice(&rows, PageRequest { offset, size });
        prop_assert!(s.len() <= size);
        if let Some(first) = s.first() {
            prop_assert_eq!(*first, offset);
        }
    }
}
