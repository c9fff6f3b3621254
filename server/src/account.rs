//! AWS account ids: the usage and payer accounts of line items, in filters, scopes and
//! budgets.

use std::{fmt, str::FromStr};

/// A twelve-digit AWS account id (leading zeros are part of it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId([u8; 12]);

impl AccountId {
    /// Parses exactly twelve ASCII digits.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; 12] = text.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_digit).then_some(Self(bytes))
    }

    /// The id as written in the CUR.
    pub fn as_str(&self) -> &str {
        // Twelve ASCII digits, checked by `parse`, are always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl AsRef<str> for AccountId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// An id from a literal known to be one, for tests.
#[cfg(test)]
pub(crate) fn test_id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap_or_else(|| panic!("{text:?} is not an account id"))
}

/// Text that is not a twelve-digit account id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnAccountId;

impl fmt::Display for NotAnAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a 12-digit AWS account id")
    }
}

impl std::error::Error for NotAnAccountId {}

impl FromStr for AccountId {
    type Err = NotAnAccountId;

    fn from_str(s: &str) -> Result<Self, NotAnAccountId> {
        Self::parse(s).ok_or(NotAnAccountId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_digits_exactly() {
        let id = AccountId::parse("012345678901").unwrap_or_else(|| panic!("an id"));
        assert_eq!(id.as_str(), "012345678901");
        assert_eq!(id.to_string(), "012345678901");
        assert_eq!(format!("{id:?}"), "\"012345678901\"");
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "１２３４５６７８９０１２",
            "",
        ] {
            assert_eq!(AccountId::parse(bad), None, "{bad:?}");
        }
        assert!(test_id("111111111111") < test_id("222222222222"));
        assert_eq!("111111111111".parse(), Ok(test_id("111111111111")));
    }
}
