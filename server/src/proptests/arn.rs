//! The caller ARN parser.

use proptest::prelude::*;

use super::hostile_string;
use crate::rules::arn::{Principal, PrincipalKind, is_account_id};

fn partition() -> impl Strategy<Value = String> {
    prop_oneof![Just("aws"), Just("aws-cn"), Just("aws-us-gov")].prop_map(str::to_owned)
}

fn account() -> impl Strategy<Value = String> {
    "[0-9]{12}"
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+=,.@_-]{1,32}"
}

proptest! {
    #[test]
    fn any_string_parses_without_panicking_and_keeps_the_arn(s in hostile_string()) {
        let p = Principal::parse(Some(&s));
        if s.is_empty() {
            prop_assert_eq!(p.kind, PrincipalKind::Unattributed);
            prop_assert_eq!(p.role_key(), None);
        } else {
            prop_assert_eq!(&p.arn, &s);
            prop_assert_ne!(p.kind, PrincipalKind::Unattributed);
            prop_assert!(p.role_key().is_some());
            prop_assert_eq!(p.to_string(), s.clone());
        }
        if let Some(a) = p.account_id {
            prop_assert!(is_account_id(a.as_str()));
            prop_assert!(s.contains(a.as_str()));
        }
    }

    #[test]
    fn assumed_role_sessions_collapse_to_their_role(
        partition in partition(),
        account in account(),
        role in name(),
        session in name(),
    ) {
        let arn = format!("arn:{partition}:sts::{account}:assumed-role/{role}/{session}");
        let p = Principal::parse(Some(&arn));
        prop_assert_eq!(p.kind, PrincipalKind::AssumedRole);
        prop_assert_eq!(&p.partition, &partition);
        prop_assert_eq!(p.account(), &account);
        prop_assert_eq!(&p.name, &role);
        prop_assert_eq!(&p.session_name, &session);
        prop_assert_eq!(
            p.role_key(),
            Some(format!("arn:{partition}:iam::{account}:role/{role}"))
        );
        prop_assert_eq!(p.account_key(), Some(account));
    }

    #[test]
    fn users_and_roles_keep_their_arn_as_role_key(
        partition in partition(),
        account in account(),
        user in any::<bool>(),
        path in proptest::collection::vec(name(), 0..3),
        leaf in name(),
    ) {
        let kind = if user { "user" } else { "role" };
        let mut resource = path.join("/");
        if !resource.is_empty() {
            resource.push('/');
        }
        resource.push_str(&leaf);
        let arn = format!("arn:{partition}:iam::{account}:{kind}/{resource}");
        let p = Principal::parse(Some(&arn));
        let expected = if user { PrincipalKind::IamUser } else { PrincipalKind::IamRole };
        prop_assert_eq!(p.kind, expected);
        prop_assert_eq!(p.account(), &account);
        prop_assert_eq!(p.role_key(), Some(arn.clone()));
        prop_assert_eq!(p.account_key(), Some(account));
    }

    #[test]
    fn account_ids_are_exactly_twelve_ascii_digits(s in hostile_string()) {
        let expected = s.len() == 12 && s.chars().all(|c| c.is_ascii_digit());
        prop_assert_eq!(is_account_id(&s), expected);
    }
}
