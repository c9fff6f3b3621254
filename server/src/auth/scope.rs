//! What a caller may see: a condition on line items, applied inside every query (see
//! [`crate::query::plan::id_predicate`]), so that rows, totals, `List*` answers and
//! allocation all cover the same line items, and a filter cannot widen it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{account::AccountId, error::Error, query::Filter};

/// A caller's scope. Fields AND together, the values of one field OR; an empty field
/// restricts nothing, so the default scope is every line item (admins, and every caller
/// when access control is off).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Usage account ids a line item must be billed to.
    pub accounts: BTreeSet<AccountId>,
    /// Tag key -> values: a line item must carry every key, with one of its values (a
    /// line item lacking the key is outside).
    pub tags: BTreeMap<String, BTreeSet<String>>,
    /// ARN prefixes, one of which the line item's caller must start with (spend without a
    /// caller is outside).
    pub principal_prefixes: BTreeSet<String>,
}

impl Scope {
    /// Whether the scope restricts nothing.
    pub fn is_all(&self) -> bool {
        self.accounts.is_empty() && self.tags.is_empty() && self.principal_prefixes.is_empty()
    }

    /// Whether a line item with caller `arn` (`""` when it has none) passes the
    /// principal part.
    pub fn allows_principal(&self, arn: &str) -> bool {
        self.principal_prefixes.is_empty()
            || (!arn.is_empty() && self.principal_prefixes.iter().any(|p| arn.starts_with(p)))
    }

    /// Whether a budget of the role `role_arn` (`arn:PARTITION:iam::ACCOUNT:role/NAME`,
    /// counting the role and every session of it) stays inside the principal part: the
    /// rule of an exact caller, applied to what the role stands for. Inside when the role
    /// ARN starts with one of the prefixes, or when every session of it does (the
    /// sessions' common start `arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/` starts
    /// with one).
    pub fn allows_role(&self, role_arn: &str) -> bool {
        if self.principal_prefixes.is_empty() {
            return true;
        }
        let role = crate::rules::arn::Principal::parse(Some(role_arn));
        let sessions = format!(
            "arn:{}:sts::{}:assumed-role/{}/",
            role.partition,
            role.account(),
            role.name
        );
        self.allows_principal(role_arn) || self.allows_principal(&sessions)
    }

    /// Whether a line item whose value for a tag key is `value(key)` passes the tag part.
    pub fn allows_tags<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.tags
            .iter()
            .all(|(key, values)| value(key).is_some_and(|v| values.contains(v)))
    }

    /// An unambiguous byte encoding (sorted sets, length-prefixed strings): what answer
    /// cache keys and page tokens include, so that two scopes never share either.
    pub fn canonical(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        let mut out = b"scope".to_vec();
        for (tag, list) in [
            (
                b'a',
                self.accounts
                    .iter()
                    .map(AccountId::as_str)
                    .collect::<Vec<_>>(),
            ),
            (
                b'p',
                self.principal_prefixes.iter().map(String::as_str).collect(),
            ),
        ] {
            out.push(tag);
            out.extend((list.len() as u64).to_le_bytes());
            for s in list {
                put(&mut out, s);
            }
        }
        out.push(b't');
        out.extend((self.tags.len() as u64).to_le_bytes());
        for (key, values) in &self.tags {
            put(&mut out, key);
            out.extend((values.len() as u64).to_le_bytes());
            for v in values {
                put(&mut out, v);
            }
        }
        out
    }

    /// Refuses a filter that reaches outside the scope, naming the field: an account,
    /// caller or tag value the caller may not see, or spend the scope excludes (without a
    /// caller, without a scoped tag). Filters inside the scope only narrow it further.
    pub fn check(&self, filter: &Filter, caller: &str) -> Result<(), Error> {
        let denied = |field: &'static str, reason: String| Error::PermissionDenied {
            what: field.to_owned(),
            reason: format!("{reason}, outside the scope of caller {caller}"),
        };
        if !self.accounts.is_empty()
            && let Some(outside) = filter
                .account_ids
                .iter()
                .find(|a| !self.accounts.contains(*a))
        {
            return Err(denied(
                "filter.account_ids",
                format!("account {outside:?} is named"),
            ));
        }
        if let Some(outside) = filter.principals.iter().find(|p| !self.allows_principal(p)) {
            let what = if outside.is_empty() {
                "unattributed spend (\"\") is asked for".to_owned()
            } else {
                format!("caller {outside:?} is named")
            };
            return Err(denied("filter.principals", what));
        }
        for tag in &filter.tags {
            let Some(allowed) = self.tags.get(&tag.key) else {
                continue;
            };
            if tag.untagged {
                return Err(denied(
                    "filter.tags",
                    format!("untagged spend of key {:?} is asked for", tag.key),
                ));
            }
            if let Some(outside) = tag.values.iter().find(|v| !allowed.contains(*v)) {
                return Err(denied(
                    "filter.tags",
                    format!("value {outside:?} of key {:?} is named", tag.key),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{account::test_id, query::TagFilter};

    fn scope() -> Scope {
        Scope {
            accounts: [test_id("111111111111")].into(),
            tags: [("team".to_owned(), ["ds".to_owned(), "ml".to_owned()].into())].into(),
            principal_prefixes: ["arn:aws:sts::111111111111:assumed-role/ds-".to_owned()].into(),
        }
    }

    #[test]
    fn default_is_everything() {
        let all = Scope::default();
        assert!(all.is_all());
        assert!(all.allows_principal(""));
        assert!(all.allows_tags(|_| None));
        assert!(
            all.check(
                &Filter {
                    principals: vec![String::new()],
                    ..Default::default()
                },
                "x"
            )
            .is_ok()
        );
    }

    #[test]
    fn a_role_is_inside_when_it_or_all_its_sessions_are() {
        let s = scope();
        assert!(s.allows_role("arn:aws:iam::111111111111:role/ds-etl"));
        assert!(
            !s.allows_role("arn:aws:iam::111111111111:role/web"),
            "neither the role nor its sessions start with the prefix"
        );
        assert!(
            !s.allows_role("arn:aws:iam::222222222222:role/ds-etl"),
            "another account's sessions are outside"
        );
        let one_session = Scope {
            principal_prefixes: ["arn:aws:sts::111111111111:assumed-role/ds-etl/alice".into()]
                .into(),
            ..Default::default()
        };
        assert!(
            !one_session.allows_role("arn:aws:iam::111111111111:role/ds-etl"),
            "only some sessions are inside"
        );
        let roles = Scope {
            principal_prefixes: ["arn:aws:iam::111111111111:role/ds-".into()].into(),
            ..Default::default()
        };
        assert!(roles.allows_role("arn:aws:iam::111111111111:role/ds-etl"));
        assert!(Scope::default().allows_role("arn:aws:iam::222222222222:role/x"));
    }

    #[test]
    fn principals_and_tags() {
        let s = scope();
        assert!(!s.is_all());
        assert!(s.allows_principal("arn:aws:sts::111111111111:assumed-role/ds-etl/job"));
        assert!(!s.allows_principal("arn:aws:sts::111111111111:assumed-role/web/job"));
        assert!(!s.allows_principal(""), "unattributed spend is outside");
        assert!(s.allows_tags(|k| (k == "team").then_some("ml")));
        assert!(!s.allows_tags(|k| (k == "team").then_some("web")));
        assert!(
            !s.allows_tags(|_| None),
            "a line item lacking the key is outside"
        );
    }

    #[test]
    fn filters_outside_are_denied_by_field() {
        let s = scope();
        let field = |f: Filter| match s.check(&f, "ds") {
            Err(Error::PermissionDenied { what, reason }) => {
                assert!(reason.contains("caller ds"), "{reason}");
                what
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(Filter {
                account_ids: vec![test_id("111111111111"), test_id("222222222222")],
                ..Default::default()
            }),
            "filter.account_ids"
        );
        assert_eq!(
            field(Filter {
                principals: vec![String::new()],
                ..Default::default()
            }),
            "filter.principals"
        );
        let tag = |values: &[&str], untagged| Filter {
            tags: vec![TagFilter {
                key: "team".into(),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
                untagged,
            }],
            ..Default::default()
        };
        assert_eq!(field(tag(&["web"], false)), "filter.tags");
        assert_eq!(field(tag(&["ds"], true)), "filter.tags");
        assert!(s.check(&tag(&["ds"], false), "ds").is_ok());
        let other_key = Filter {
            tags: vec![TagFilter {
                key: "project".into(),
                values: vec![],
                untagged: true,
            }],
            account_ids: vec![test_id("111111111111")],
            principals: vec!["arn:aws:sts::111111111111:assumed-role/ds-x/y".into()],
            ..Default::default()
        };
        assert!(s.check(&other_key, "ds").is_ok(), "narrowing is allowed");
    }

    #[test]
    fn canonical_encodings_differ_per_scope() {
        let a = scope();
        let mut b = scope();
        b.accounts.insert(test_id("222222222222"));
        assert_ne!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), Scope::default().canonical());
        // Moving a string between fields changes the encoding.
        let c = Scope {
            accounts: [test_id("111111111111")].into(),
            ..Default::default()
        };
        let d = Scope {
            principal_prefixes: ["111111111111".to_owned()].into(),
            ..Default::default()
        };
        assert_ne!(c.canonical(), d.canonical());
        assert_eq!(a.canonical(), scope().canonical());
    }
}
