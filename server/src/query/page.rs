//! Page tokens: opaque to callers, bound to the request they came from, to the caller
//! and to the snapshot that answered it, so that pages never mix data versions; and
//! authenticated with HMAC-SHA256 under a server key, so a forged, truncated or edited
//! token is refused (INVALID_ARGUMENT) instead of selecting rows the caller did not ask
//! for. The key is shared by every replica and survives restarts (`--page-token-key-file`
//! or a key file in the cache directory, see [`PageKeys::load`]), so a token issued by one
//! replica pages on another as long as the data is the same.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Rows per page when the request leaves `page_size` at zero.
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Shortest page token key accepted: HMAC-SHA256 keys shorter than the digest are weak.
pub const MIN_KEY_BYTES: usize = 32;
/// Name of the generated key in the cache directory.
pub const KEY_FILE_NAME: &str = "page-token.key";

/// Token layout version (first byte), so a later layout can be told apart.
const TOKEN_VERSION: u8 = 1;
/// version byte, snapshot, fingerprint, offset, HMAC-SHA256 tag.
const TOKEN_BYTES: usize = 1 + 8 * 3 + 32;

type HmacSha256 = Hmac<Sha256>;

/// The key page tokens are authenticated with.
#[derive(Clone)]
pub struct PageKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("PageKeys(***)")
    }
}

/// Where the page token key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--page-token-key-file`.
    File(PathBuf),
    /// Generated once and kept in the cache directory.
    Cache(PathBuf),
    /// Random for this process only: tokens do not survive a restart.
    Process,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Index of the first row.
    pub offset: usize,
    /// Rows per page.
    pub size: usize,
}

/// A stable 64-bit digest (SHA-256, truncated) of a request's bytes without its paging
/// fields: the answer cache and page tokens are keyed by it, so a caller must not be able
/// to craft two requests with the same fingerprint (FNV, used before, made that easy).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl PageKeys {
    /// A key from `bytes` (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "the page token key has {} bytes; use at least {MIN_KEY_BYTES} random bytes (e.g. head -c 32 /dev/urandom)",
                    bytes.len()
                ),
            });
        }
        Ok(Self { key: bytes })
    }

    /// A random key for this process.
    pub fn random() -> Result<Self, Error> {
        use rand::{TryRngCore, rngs::OsRng};
        let mut key = vec![0u8; MIN_KEY_BYTES];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| Error::InvalidConfig {
                reason: format!("cannot read random bytes for the page token key: {e}"),
            })?;
        Self::new(key)
    }

    /// The key of this server: read from `file` (`--page-token-key-file`, trailing
    /// whitespace ignored, so a Secret written with a newline works); else the key kept
    /// in `cache_dir`, generated there once (mode 0600) so tokens survive restarts;
    /// else a random key for this process only.
    pub fn load(file: Option<&Path>, cache_dir: Option<&Path>) -> Result<(Self, KeySource), Error> {
        if let Some(path) = file {
            let bytes = std::fs::read(path).map_err(|e| Error::InvalidConfig {
                reason: format!("cannot read --page-token-key-file {}: {e}", path.display()),
            })?;
            let end = bytes
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            return Ok((
                Self::new(bytes[..end].to_vec())?,
                KeySource::File(path.into()),
            ));
        }
        if let Some(dir) = cache_dir {
            let path = dir.join(KEY_FILE_NAME);
            match Self::cached(&path) {
                Ok(keys) => return Ok((keys, KeySource::Cache(path))),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "cannot keep the page token key in the cache directory: {e}"
                ),
            }
        }
        Ok((Self::random()?, KeySource::Process))
    }

    /// Reads the key at `path`, or writes a new one there (created 0600, never
    /// overwritten: two processes starting at once both end up with the first one).
    fn cached(path: &Path) -> Result<Self, String> {
        if let Ok(bytes) = std::fs::read(path) {
            return Self::new(bytes).map_err(|e| e.to_string());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let keys = Self::random().map_err(|e| e.to_string())?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut f) => {
                f.write_all(&keys.key).map_err(|e| e.to_string())?;
                f.sync_all().map_err(|e| e.to_string())?;
                Ok(keys)
            }
            // Another process wrote it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
                Self::new(bytes).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn mac(&self, body: &[u8], caller: &str) -> HmacSha256 {
        // HMAC accepts keys of any length; `new` checked the minimum.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(body);
        // The caller is authenticated, not carried: a token is only valid for its caller.
        mac.update(&(caller.len() as u64).to_be_bytes());
        mac.update(caller.as_bytes());
        mac
    }

    /// Validates `page_size` and decodes `page_token`: issued by this key for `caller`,
    /// for the request with `fingerprint`, on `snapshot`.
    pub fn request(
        &self,
        page_size: i32,
        page_token: &str,
        snapshot: u64,
        fingerprint: u64,
        caller: &str,
    ) -> Result<PageRequest, Error> {
        let size = page_size_of(page_size)?;
        if page_token.is_empty() {
            return Ok(PageRequest { offset: 0, size });
        }
        let bad = || {
            Error::invalid(
                "page_token",
                "not a token this server issued for this caller; pass next_page_token unchanged",
            )
        };
        if page_token.len() > 2 * TOKEN_BYTES {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| bad())?;
        if bytes.len() != TOKEN_BYTES || bytes[0] != TOKEN_VERSION {
            return Err(bad());
        }
        let (body, tag) = bytes.split_at(1 + 8 * 3);
        // Constant-time comparison of the tag.
        self.mac(body, caller)
            .verify_slice(tag)
            .map_err(|_| bad())?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&body[1 + 8 * i..1 + 8 * (i + 1)]);
            u64::from_be_bytes(w)
        };
        let (version, hash, offset) = (word(0), word(1), word(2));
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
            offset: usize::try_from(offset).map_err(|_| bad())?,
            size,
        })
    }

    /// The token of the page after `page`, or empty when `total` rows are exhausted.
    pub fn next_token(
        &self,
        page: PageRequest,
        total: usize,
        snapshot: u64,
        fingerprint: u64,
        caller: &str,
    ) -> String {
        let next = page.offset.saturating_add(page.size);
        if next >= total {
            return String::new();
        }
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(TOKEN_VERSION);
        for v in [snapshot, fingerprint, next as u64] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let tag = self.mac(&bytes, caller).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// Validates `page_size` (0 means the default).
fn page_size_of(page_size: i32) -> Result<usize, Error> {
    Ok(match page_size {
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
    })
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

    fn keys(byte: u8) -> PageKeys {
        PageKeys::new(vec![byte; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tokens_round_trip_and_are_bound() {
        let k = keys(1);
        let first = k
            .request(2, "", 7, 99, "a")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, PageRequest { offset: 0, size: 2 });
        let token = k.next_token(first, 5, 7, 99, "a");
        let second = k
            .request(2, &token, 7, 99, "a")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.offset, 2);
        assert!(matches!(
            k.request(2, &token, 7, 98, "a"),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            k.request(2, &token, 8, 99, "a"),
            Err(Error::StalePageToken { .. })
        ));
        assert!(matches!(
            k.request(2, "garbage!", 7, 99, "a"),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(
            k.next_token(PageRequest { offset: 4, size: 2 }, 5, 7, 99, "a"),
            ""
        );
    }

    #[test]
    fn forged_truncated_reencoded_or_foreign_tokens_are_invalid() {
        let k = keys(1);
        let token = k.next_token(PageRequest { offset: 0, size: 2 }, 50, 7, 99, "a");
        let invalid = |t: &str, keys: &PageKeys, caller: &str| {
            matches!(
                keys.request(2, t, 7, 99, caller),
                Err(Error::InvalidArgument { ref field, .. }) if field == "page_token"
            )
        };
        // Another caller, another server key.
        assert!(invalid(&token, &k, "b"));
        assert!(invalid(&token, &keys(2), "a"));
        // Truncated, extended, padded, standard alphabet.
        assert!(invalid(&token[..token.len() - 1], &k, "a"));
        assert!(invalid(&token[..10], &k, "a"));
        assert!(invalid(&format!("{token}AA"), &k, "a"));
        assert!(invalid(&format!("{token}="), &k, "a"));
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap_or_default();
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        if standard != token {
            assert!(invalid(&standard, &k, "a"));
        }
        // Every single bit flipped: never accepted, never a panic.
        for i in 0..bytes.len() * 8 {
            let mut forged = bytes.clone();
            forged[i / 8] ^= 1 << (i % 8);
            let t = URL_SAFE_NO_PAD.encode(&forged);
            assert!(k.request(2, &t, 7, 99, "a").is_err(), "bit {i}");
        }
        // A forged offset without the key: the old unauthenticated layout.
        let mut old = Vec::new();
        for v in [7u64, 99, 1_000_000] {
            old.extend_from_slice(&v.to_be_bytes());
        }
        assert!(invalid(&URL_SAFE_NO_PAD.encode(old), &k, "a"));
        assert!(invalid(&"A".repeat(100_000), &k, "a"));
    }

    #[test]
    fn keys_from_a_file_the_cache_or_the_process() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", "k".repeat(40))).unwrap_or_else(|e| panic!("{e}"));
        let (a, source) = PageKeys::load(Some(&file), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source, KeySource::File(file.clone()));
        assert_eq!(
            a.key,
            "k".repeat(40).into_bytes(),
            "trailing newline ignored"
        );
        std::fs::write(&file, "short").unwrap_or_else(|e| panic!("{e}"));
        assert!(PageKeys::load(Some(&file), None).is_err(), "too short");
        assert!(PageKeys::load(Some(&dir.path().join("none")), None).is_err());

        let cache = dir.path().join("cache");
        let (first, source) = PageKeys::load(None, Some(&cache)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source, KeySource::Cache(cache.join(KEY_FILE_NAME)));
        let (again, _) = PageKeys::load(None, Some(&cache)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.key, again.key, "the same key after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(cache.join(KEY_FILE_NAME))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_default();
            assert_eq!(mode, 0o600);
        }
        let (p, source) = PageKeys::load(None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source, KeySource::Process);
        assert_ne!(p.key, first.key);
    }

    #[test]
    fn sizes() {
        assert_eq!(page_size_of(0).ok(), Some(DEFAULT_PAGE_SIZE));
        assert!(page_size_of(-1).is_err());
        assert!(page_size_of(MAX_PAGE_SIZE as i32 + 1).is_err());
        assert_eq!(slice(&[1, 2, 3], PageRequest { offset: 2, size: 5 }), &[3]);
        assert!(slice(&[1, 2, 3], PageRequest { offset: 9, size: 5 }).is_empty());
    }
}
