//! Page tokens: opaque to callers, bound to the request they came from and to the
//! snapshot that answered it, so that pages never mix data versions.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::Error;

/// Rows per page when the request leaves `page_size` at zero.
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Index of the first row.
    pub offset: usize,
    /// Rows per page.
    pub size: usize,
}

/// A stable 64-bit FNV-1a hash of a request's bytes (without its paging fields), so a
/// token cannot be replayed against another request.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Validates `page_size` and decodes `page_token`.
pub fn request(
    page_size: i32,
    page_token: &str,
    snapshot: u64,
    fingerprint: u64,
) -> Result<PageRequest, Error> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => {
            return Err(Error::invalid(
                "page_size",
                format!("{n} is negative; use 1..={MAX_PAGE_SIZE} or 0 for {DEFAULT_PAGE_SIZE}"),
            ));
        }
        n if n as usize > MAX_PAGE_SIZE => {
            return Err(Error::invalid(
                "page_size",
                format!(
                    "{n} is over the maximum of {MAX_PAGE_SIZE}; page through the answer instead"
                ),
            ));
        }
        n => n as usize,
    };
    if page_token.is_empty() {
        return Ok(PageRequest { offset: 0, size });
    }
    let bad = || {
        Error::invalid(
            "page_token",
            "not a token this server issued; pass next_page_token unchanged",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| bad())?;
    let [version, hash, offset]: [u64; 3] = bytes
        .chunks_exact(8)
        .map(|c| c.try_into().map(u64::from_be_bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    if hash != fingerprint {
        return Err(Error::invalid(
            "page_token",
            "the token belongs to a different request; keep every field but page_token and page_size unchanged while paging",
        ));
    }
    if version != snapshot {
        return Err(Error::StalePageToken {
            reason: format!(
                "the data was refreshed (snapshot {version} -> {snapshot}) since the first page; restart paging without a page_token"
            ),
        });
    }
    Ok(PageRequest {
        offset: offset as usize,
        size,
    })
}

/// The token of the page after `page`, or empty when `total` rows are exhausted.
pub fn next_token(page: PageRequest, total: usize, snapshot: u64, fingerprint: u64) -> String {
    let next = page.offset.saturating_add(page.size);
    if next >= total {
        return String::new();
    }
    let mut bytes = Vec::with_capacity(24);
    for v in [snapshot, fingerprint, next as u64] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The rows of `page` out of `rows`.
pub fn slice<T>(rows: &[T], page: PageRequest) -> &[T] {
    let start = page.offset.min(rows.len());
    let end = page.offset.saturating_add(page.size).min(rows.len());
    &rows[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound() {
        let first = request(2, "", 7, 99).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, PageRequest { offset: 0, size: 2 });
        let token = next_token(first, 5, 7, 99);
        let second = request(2, &token, 7, 99).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.offset, 2);
        assert!(matches!(
            request(2, &token, 7, 98),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            request(2, &token, 8, 99),
            Err(Error::StalePageToken { .. })
        ));
        assert!(matches!(
            request(2, "garbage!", 7, 99),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(next_token(PageRequest { offset: 4, size: 2 }, 5, 7, 99), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(
            request(0, "", 1, 1).map(|p| p.size).ok(),
            Some(DEFAULT_PAGE_SIZE)
        );
        assert!(request(-1, "", 1, 1).is_err());
        assert!(request(MAX_PAGE_SIZE as i32 + 1, "", 1, 1).is_err());
        assert_eq!(slice(&[1, 2, 3], PageRequest { offset: 2, size: 5 }), &[3]);
        assert!(slice(&[1, 2, 3], PageRequest { offset: 9, size: 5 }).is_empty());
    }
}
