//! The callers file (`--auth-file`): YAML (so also JSON) naming each caller, how it
//! proves who it is (the SHA-256 of a bearer token, or a client certificate subject),
//! whether it is an admin, and its scope. Validated whole at load: a file that fails
//! names the caller entry and field. The file is re-read every few seconds; a change
//! that fails validation keeps the callers in force and logs why.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::{sync::watch, task::JoinHandle};

use super::{Caller, scope::Scope};
use crate::{account::AccountId, error::Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    callers: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    token_sha256: Option<String>,
    mtls_subject: Option<String>,
    #[serde(default)]
    admin: bool,
    scope: Option<ScopeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeEntry {
    accounts: Option<Vec<String>>,
    tags: Option<BTreeMap<String, Vec<String>>>,
    principal_prefixes: Option<Vec<String>>,
}

/// How a caller proves who it is.
enum Credential {
    /// SHA-256 of its bearer token.
    Token([u8; 32]),
    /// Subject of its client certificate.
    Subject(String),
}

/// The validated callers of one version of the file.
pub struct Callers {
    entries: Vec<(Credential, Arc<Caller>)>,
}

impl std::fmt::Debug for Callers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of logs too.
        f.debug_list()
            .entries(self.entries.iter().map(|(_, c)| c.name.as_str()))
            .finish()
    }
}

/// Hex digits to bytes; `None` unless exactly 64 hex digits.
fn sha256_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// SHA-256 of a presented token.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Callers {
    /// Parses and validates a callers file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Document = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        if doc.callers.is_empty() {
            return Err(
                "callers: the list is empty, so nobody could call; name at least one caller".into(),
            );
        }
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut subjects = HashSet::new();
        let mut entries = Vec::with_capacity(doc.callers.len());
        for (i, entry) in doc.callers.into_iter().enumerate() {
            let at = |field: &str| {
                if entry.name.is_empty() {
                    format!("callers[{i}]: {field}")
                } else {
                    format!("callers[{i}] ({:?}): {field}", entry.name)
                }
            };
            if entry.name.trim().is_empty() || entry.name.chars().any(char::is_control) {
                return Err(at(
                    "name: must be a non-empty name without control characters",
                ));
            }
            if !names.insert(entry.name.clone()) {
                return Err(at("name: another caller has the same name"));
            }
            let credential = match (&entry.token_sha256, &entry.mtls_subject) {
                (Some(hash), None) => {
                    let hash = sha256_hex(hash.trim()).ok_or_else(|| {
                        at("token_sha256: must be the hex SHA-256 of the token, 64 hex digits (e.g. `printf %s \"$TOKEN\" | sha256sum`)")
                    })?;
                    if !hashes.insert(hash) {
                        return Err(at("token_sha256: another caller has the same token"));
                    }
                    Credential::Token(hash)
                }
                (None, Some(subject)) => {
                    if subject.trim().is_empty() {
                        return Err(at("mtls_subject: is empty"));
                    }
                    if !subjects.insert(subject.clone()) {
                        return Err(at("mtls_subject: another caller has the same subject"));
                    }
                    Credential::Subject(subject.clone())
                }
                _ => {
                    return Err(at(
                        "token_sha256, mtls_subject: give exactly one of the two",
                    ));
                }
            };
            let scope = match entry.scope {
                None => Scope::default(),
                Some(s) => scope(s).map_err(|field| at(&field))?,
            };
            if entry.admin && !scope.is_all() {
                return Err(at(
                    "scope: an admin sees every line item; drop the scope or `admin: true`",
                ));
            }
            entries.push((
                credential,
                Arc::new(Caller {
                    name: entry.name,
                    admin: entry.admin,
                    scope,
                }),
            ));
        }
        Ok(Self { entries })
    }

    /// The caller whose token hashes to `digest`. Every caller's hash is compared, each
    /// in constant time, so the time taken tells nothing of how close a guess came.
    pub fn by_token_digest(&self, digest: &[u8; 32]) -> Option<Arc<Caller>> {
        let mut found = None;
        for (credential, caller) in &self.entries {
            if let Credential::Token(hash) = credential
                && bool::from(hash.ct_eq(digest))
            {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// The caller identified by a client certificate with this subject.
    pub fn by_subject(&self, subject: &str) -> Option<Arc<Caller>> {
        self.entries
            .iter()
            .find_map(|(credential, caller)| match credential {
                Credential::Subject(s) if s == subject => Some(caller.clone()),
                _ => None,
            })
    }

    /// Whether `caller` is still one of these callers, with the same rights and scope:
    /// a stream opened by a caller whose entry changed or went away must end.
    pub fn holds(&self, caller: &Caller) -> bool {
        self.entries.iter().any(|(_, c)| **c == *caller)
    }

    /// Number of callers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no callers (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A validated scope, or the failing field.
fn scope(s: ScopeEntry) -> Result<Scope, String> {
    fn list(field: &str, values: Option<Vec<String>>) -> Result<BTreeSet<String>, String> {
        match values {
            None => Ok(BTreeSet::new()),
            Some(v) if v.is_empty() => Err(format!(
                "{field}: is an empty list, which would match nothing; leave the field out to not restrict by it"
            )),
            Some(v) => match v.iter().position(|s| s.is_empty()) {
                Some(j) => Err(format!("{field}[{j}]: is empty")),
                None => Ok(v.into_iter().collect()),
            },
        }
    }
    let accounts = list("scope.accounts", s.accounts)?
        .iter()
        .map(|a| {
            AccountId::parse(a)
                .ok_or_else(|| format!("scope.accounts: {a:?} is not a 12-digit AWS account id"))
        })
        .collect::<Result<_, _>>()?;
    let principal_prefixes = list("scope.principal_prefixes", s.principal_prefixes)?;
    let mut tags = BTreeMap::new();
    match s.tags {
        Some(t) if t.is_empty() => {
            return Err(
                "scope.tags: is an empty map; leave the field out to not restrict by tags".into(),
            );
        }
        Some(t) => {
            for (key, values) in t {
                if key.is_empty() {
                    return Err("scope.tags: a tag key is empty".into());
                }
                let values = list(&format!("scope.tags[{key:?}]"), Some(values))?;
                tags.insert(key, values);
            }
        }
        None => {}
    }
    Ok(Scope {
        accounts,
        tags,
        principal_prefixes,
    })
}

/// The callers file in force, re-read when its content changes.
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    state: RwLock<Loaded>,
    /// Counts the reloads that took effect, so that open streams check their caller's
    /// rights as soon as they change, not at their next event.
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct Loaded {
    callers: Arc<Callers>,
    /// SHA-256 of the text they came from.
    digest: [u8; 32],
}

fn read(path: &Path) -> Result<(String, [u8; 32]), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let digest = token_digest(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    Ok((text, digest))
}

impl AuthFile {
    /// Loads and validates `path`; an unusable file is a configuration error naming the
    /// caller entry and field.
    pub fn load(path: &Path) -> Result<Arc<Self>, Error> {
        let invalid = |reason: String| Error::InvalidConfig {
            reason: format!("--auth-file {}: {reason}", path.display()),
        };
        let (text, digest) = read(path).map_err(invalid)?;
        let callers = Callers::parse(&text).map_err(invalid)?;
        tracing::info!(path = %path.display(), callers = callers.len(), "access control on");
        Ok(Arc::new(Self {
            path: path.to_owned(),
            state: RwLock::new(Loaded {
                callers: Arc::new(callers),
                digest,
            }),
            changes: watch::Sender::new(0),
        }))
    }

    /// The callers in force.
    pub fn callers(&self) -> Arc<Callers> {
        match self.state.read() {
            Ok(s) => s.callers.clone(),
            Err(poisoned) => poisoned.into_inner().callers.clone(),
        }
    }

    /// Re-reads the file: `Ok(true)` when new callers took effect, `Ok(false)` when the
    /// content is unchanged, `Err` (callers kept) when it cannot be read or validated.
    pub fn reload(&self) -> Result<bool, String> {
        let (text, digest) = read(&self.path)?;
        let current = match self.state.read() {
            Ok(s) => s.digest,
            Err(poisoned) => poisoned.into_inner().digest,
        };
        if current == digest {
            return Ok(false);
        }
        let callers = Callers::parse(&text)?;
        let n = callers.len();
        let loaded = Loaded {
            callers: Arc::new(callers),
            digest,
        };
        match self.state.write() {
            Ok(mut s) => *s = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        tracing::info!(path = %self.path.display(), callers = n, "auth file reloaded");
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(true)
    }

    /// Follows the reloads: the value changes after each one that put new callers in
    /// force.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Re-reads the file every `every` until `shutdown` turns true. A Kubernetes Secret
    /// volume swaps the file's symlink; comparing content catches that and any edit.
    pub fn spawn_reloader(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut failing: Option<String> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                match self.reload() {
                    Ok(_) => failing = None,
                    Err(reason) => {
                        // Warn once per distinct problem, not every few seconds.
                        if failing.as_deref() != Some(reason.as_str()) {
                            tracing::warn!(path = %self.path.display(), "auth file not reloaded, the callers in force stay: {reason}");
                            failing = Some(reason);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"

    fn err(text: &str) -> String {
        match Callers::parse(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let text = format!(
            r#"
callers:
  - name: finance
    token_sha256: "{HASH_A}"
    admin: true
  - name: data-science-chargeback
    token_sha256: "{}"
    scope:
      accounts: ["111111111111"]
      tags: {{"iamPrincipal/team": ["data-science"]}}
      principal_prefixes: ["arn:aws:sts::111111111111:assumed-role/ds-"]
  - name: bi-backend
    mtls_subject: "CN=bi-backend,O=Acme"
    scope: {{accounts: ["111111111111", "222222222222"]}}
"#,
            "ab".repeat(32)
        );
        let callers = Callers::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(callers.len(), 3);
        let finance = callers
            .by_token_digest(&token_digest(b"test"))
            .unwrap_or_else(|| panic!("finance"));
        assert_eq!(finance.name, "finance");
        assert!(finance.admin && finance.scope.is_all());
        assert!(callers.by_token_digest(&token_digest(b"tesT")).is_none());
        let ds = callers
            .by_token_digest(&[0xab; 32])
            .unwrap_or_else(|| panic!("ds"));
        assert!(!ds.admin);
        assert_eq!(ds.scope.tags["iamPrincipal/team"].len(), 1);
        let bi = callers
            .by_subject("CN=bi-backend,O=Acme")
            .unwrap_or_else(|| panic!("bi"));
        assert_eq!(bi.scope.accounts.len(), 2);
        assert!(callers.by_subject("CN=bi-backend").is_none());
        assert!(!format!("{callers:?}").contains(HASH_A), "no hash in Debug");
    }

    #[test]
    fn json_is_yaml() {
        let text = format!(r#"{{"callers": [{{"name": "a", "token_sha256": "{HASH_A}"}}]}}"#);
        assert_eq!(Callers::parse(&text).map(|c| c.len()), Ok(1));
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let one = |body: &str| {
            format!("callers:\n  - name: ok\n    token_sha256: \"{HASH_A}\"\n  - {body}\n")
        };
        for (body, expect) in [
            (
                "name: b\n    token_sha256: \"abc\"",
                "callers[1] (\"b\"): token_sha256",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    token_sha256: \"00\"",
                "give exactly one",
            ),
            ("name: b", "callers[1] (\"b\"): token_sha256, mtls_subject"),
            ("name: ok\n    mtls_subject: CN=x", "same name"),
            (
                &format!("name: b\n    token_sha256: \"{HASH_A}\""),
                "same token",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    scope: {accounts: []}",
                "scope.accounts: is an empty list",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    scope: {accounts: [\"12345\"]}",
                "12-digit",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    scope: {tags: {team: []}}",
                "scope.tags[\"team\"]",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    scope: {principal_prefixes: [\"\"]}",
                "scope.principal_prefixes[0]",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    admin: true\n    scope: {accounts: [\"111111111111\"]}",
                "an admin sees every",
            ),
            (
                "name: b\n    mtls_subject: CN=b\n    scope: {acounts: [\"111111111111\"]}",
                "unknown field `acounts`",
            ),
        ] {
            let e = err(&one(body));
            assert!(e.contains(expect), "{body:?}: {e}");
        }
        assert!(err("callers: []").contains("empty"));
        assert!(err("nobody: 1").contains("unknown field"));
    }

    #[test]
    fn reload_keeps_the_callers_when_the_new_file_fails() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("callers.yaml");
        let write = |text: &str| std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        write(&format!(
            "callers: [{{name: a, token_sha256: \"{HASH_A}\"}}]"
        ));
        let file = AuthFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let reloads = file.subscribe();
        assert_eq!(file.reload(), Ok(false), "unchanged");
        write("callers: [{name: a, token_sha256: nope}]");
        assert!(file.reload().is_err());
        assert!(
            file.callers()
                .by_token_digest(&token_digest(b"test"))
                .is_some()
        );
        write(&format!(
            "callers: [{{name: b, token_sha256: \"{}\"}}]",
            "cd".repeat(32)
        ));
        assert!(
            !reloads.has_changed().unwrap_or(true),
            "no change took effect yet"
        );
        assert_eq!(file.reload(), Ok(true));
        assert!(reloads.has_changed().unwrap_or(false), "streams are told");
        assert!(
            file.callers()
                .by_token_digest(&token_digest(b"test"))
                .is_none()
        );
        assert_eq!(
            file.callers()
                .by_token_digest(&[0xcd; 32])
                .map(|c| c.name.clone()),
            Some("b".to_owned())
        );
        let missing = AuthFile::load(&dir.path().join("none.yaml"));
        assert!(
            matches!(missing, Err(Error::InvalidConfig { reason }) if reason.contains("--auth-file"))
        );
    }
}
