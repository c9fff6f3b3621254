//! Parsing caller ARNs (`line_item_iam_principal`) into kind, account, name and session.

use std::fmt;

use crate::account::AccountId;

/// What kind of IAM principal made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    /// `arn:aws:iam::ACCOUNT:user/NAME`.
    IamUser,
    /// `arn:aws:iam::ACCOUNT:role/NAME`.
    IamRole,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    AssumedRole,
    /// `arn:aws:sts::ACCOUNT:federated-user/NAME`.
    FederatedUser,
    /// `arn:aws:iam::ACCOUNT:root`.
    Root,
    /// No caller on the line item.
    Unattributed,
    /// A caller string of no known shape, kept verbatim.
    Other,
}

/// A caller ARN split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The ARN as it appeared (empty when unattributed).
    pub arn: String,
    /// The kind of principal.
    pub kind: PrincipalKind,
    /// `aws`, `aws-cn`, `aws-us-gov`...; empty for unattributed or unparseable callers.
    pub partition: String,
    /// The account; `None` for unattributed or unparseable callers.
    pub account_id: Option<AccountId>,
    /// User, role or federated user name (with path for users and roles).
    pub name: String,
    /// Session name of an assumed role.
    pub session_name: String,
}

impl Principal {
    /// Parses a caller ARN; `None` and the empty string mean "no caller".
    pub fn parse(arn: Option<&str>) -> Self {
        match arn {
            None | Some("") => Self::unattributed(),
            Some(arn) => parse_shape(arn).unwrap_or_else(|| Self::other(arn)),
        }
    }

    /// The group of spend that carries no caller.
    pub fn unattributed() -> Self {
        Self::bare(String::new(), PrincipalKind::Unattributed)
    }

    fn other(arn: &str) -> Self {
        Self::bare(arn.to_owned(), PrincipalKind::Other)
    }

    fn bare(arn: String, kind: PrincipalKind) -> Self {
        Self {
            arn,
            kind,
            partition: String::new(),
            account_id: None,
            name: String::new(),
            session_name: String::new(),
        }
    }

    /// The account id as text; empty for unattributed or unparseable callers.
    pub fn account(&self) -> &str {
        self.account_id.as_ref().map_or("", AccountId::as_str)
    }

    /// The key when sessions are collapsed to their role: an assumed-role session becomes
    /// `arn:PARTITION:iam::ACCOUNT:role/ROLE`; every other caller keeps its ARN.
    /// `None` for unattributed spend.
    pub fn role_key(&self) -> Option<String> {
        match self.kind {
            PrincipalKind::Unattributed => None,
            PrincipalKind::AssumedRole => Some(format!(
                "arn:{}:iam::{}:role/{}",
                self.partition,
                self.account(),
                self.name
            )),
            _ => Some(self.arn.clone()),
        }
    }

    /// The key when callers are grouped by account: the account id, or the verbatim
    /// string for a caller of unknown shape. `None` for unattributed spend.
    pub fn account_key(&self) -> Option<String> {
        match self.kind {
            PrincipalKind::Unattributed => None,
            PrincipalKind::Other => Some(self.arn.clone()),
            _ => Some(self.account().to_owned()),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PrincipalKind::Unattributed => f.write_str("UNATTRIBUTED"),
            _ => f.write_str(&self.arn),
        }
    }
}

/// Whether `s` is a twelve-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    AccountId::parse(s).is_some()
}

fn parse_shape(arn: &str) -> Option<Principal> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let account = AccountId::parse(parts.next()?)?;
    let resource = parts.next()?;
    if partition.is_empty() || !region.is_empty() {
        return None;
    }
    let (kind, name, session) = match (service, resource) {
        ("iam", "root") => (PrincipalKind::Root, "", ""),
        ("iam", r) => {
            if let Some(name) = r.strip_prefix("user/") {
                (PrincipalKind::IamUser, name, "")
            } else if let Some(name) = r.strip_prefix("role/") {
                (PrincipalKind::IamRole, name, "")
            } else {
                return None;
            }
        }
        ("sts", r) => {
            if let Some(rest) = r.strip_prefix("assumed-role/") {
                let (role, session) = rest.split_once('/')?;
                if session.is_empty() {
                    return None;
                }
                (PrincipalKind::AssumedRole, role, session)
            } else if let Some(name) = r.strip_prefix("federated-user/") {
                (PrincipalKind::FederatedUser, name, "")
            } else {
                return None;
            }
        }
        _ => return None,
    };
    if kind != PrincipalKind::Root && name.is_empty() {
        return None;
    }
    Some(Principal {
        arn: arn.to_owned(),
        kind,
        partition: partition.to_owned(),
        account_id: Some(account),
        name: name.to_owned(),
        session_name: session.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Principal {
        Principal::parse(Some(s))
    }

    #[test]
    fn iam_user_with_and_without_path() {
        let p = parse("arn:aws:iam::123456789012:user/alice");
        assert_eq!(p.kind, PrincipalKind::IamUser);
        assert_eq!(p.account(), "123456789012");
        assert_eq!(p.name, "alice");
        assert_eq!(p.partition, "aws");
        let p = parse("arn:aws:iam::123456789012:user/ops/alice");
        assert_eq!(
            (p.kind, p.name.as_str()),
            (PrincipalKind::IamUser, "ops/alice")
        );
        let p = parse("arn:aws:iam::123456789012:user/BedrockAPIKey-x7f2");
        assert_eq!(p.name, "BedrockAPIKey-x7f2");
        assert_eq!(p.role_key().as_deref(), Some(p.arn.as_str()));
    }

    #[test]
    fn assumed_role_sessions_collapse_to_their_role() {
        let p = parse("arn:aws:sts::123456789012:assumed-role/BedrockUsers/alice@example.com");
        assert_eq!(p.kind, PrincipalKind::AssumedRole);
        assert_eq!(p.name, "BedrockUsers");
        assert_eq!(p.session_name, "alice@example.com");
        assert_eq!(
            p.role_key().as_deref(),
            Some("arn:aws:iam::123456789012:role/BedrockUsers")
        );
        assert_eq!(p.account_key().as_deref(), Some("123456789012"));
    }

    #[test]
    fn role_federated_user_and_root() {
        let p = parse("arn:aws:iam::123456789012:role/service/app-role");
        assert_eq!(
            (p.kind, p.name.as_str()),
            (PrincipalKind::IamRole, "service/app-role")
        );
        let p = parse("arn:aws:sts::123456789012:federated-user/bob");
        assert_eq!(
            (p.kind, p.name.as_str()),
            (PrincipalKind::FederatedUser, "bob")
        );
        let p = parse("arn:aws:iam::123456789012:root");
        assert_eq!((p.kind, p.name.as_str()), (PrincipalKind::Root, ""));
    }

    #[test]
    fn other_partitions() {
        let p = parse("arn:aws-us-gov:sts::123456789012:assumed-role/r/s");
        assert_eq!(p.partition, "aws-us-gov");
        assert_eq!(
            p.role_key().as_deref(),
            Some("arn:aws-us-gov:iam::123456789012:role/r")
        );
        let p = parse("arn:aws-cn:iam::123456789012:user/li");
        assert_eq!(
            (p.kind, p.partition.as_str()),
            (PrincipalKind::IamUser, "aws-cn")
        );
    }

    #[test]
    fn missing_caller_is_unattributed() {
        assert_eq!(Principal::parse(None).kind, PrincipalKind::Unattributed);
        assert_eq!(Principal::parse(Some("")).kind, PrincipalKind::Unattributed);
        assert_eq!(Principal::parse(None).role_key(), None);
        assert_eq!(Principal::parse(None).account_key(), None);
    }

    #[test]
    fn garbage_is_kept_verbatim_as_other() {
        for s in [
            "alice",
            "arn:aws:iam::12345:user/alice",
            "arn:aws:iam::123456789012:group/devs",
            "arn:aws:sts::123456789012:assumed-role/only-role",
            "arn:aws:sts::123456789012:assumed-role/role/",
            "arn:aws:iam::123456789012:user/",
            "arn::iam::123456789012:user/a",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:123456789012:user/a",
            "arn:aws:iam::12345678901x:root",
        ] {
            let p = parse(s);
            assert_eq!(p.kind, PrincipalKind::Other, "{s}");
            assert_eq!(p.arn, s);
            assert_eq!(p.role_key().as_deref(), Some(s));
            assert_eq!(p.account_key().as_deref(), Some(s));
        }
    }
}
