//! Where budgets are kept: the budgets file (`--budgets-file`, YAML or JSON, read-only,
//! re-read when it changes) and the state file of budgets created through the API
//! (`--budgets-state`, JSON, written atomically: a temporary file in the same folder,
//! flushed to disk, then renamed over the old one, so a crash leaves the old or the
//! new list, never half of one).
//!
//! A budgets file that cannot be read or validated keeps the definitions in force (none
//! at the first start) and is reported in `DataStatus`; a damaged state file is
//! reported too, and kept as it is: creating or deleting budgets is refused until it is
//! fixed, rather than overwriting what it held.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::{sync::watch, task::JoinHandle};

use super::{Budget, Definition, Draft, Fields, MAX_BUDGETS, Origin, valid_id, validate};
use crate::{error::Error, rules::money};

/// The name of the state file in the cache directory when `--budgets-state` is not given.
pub const STATE_FILE_NAME: &str = "budgets.json";

/// A number that may be written as text or as a YAML/JSON number: numbers are read as
/// the shortest decimal that gives them back (what was written, up to 15 significant
/// digits); quote longer amounts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum Decimalish {
    Text(String),
    Int(u64),
    Float(f64),
}

impl Decimalish {
    fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TagEntry {
    key: String,
    value: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScopeEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<TagEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

/// One budget as the budgets file and the state file write it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    name: String,
    scope: ScopeEntry,
    amount: Decimalish,
    currency: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    thresholds: Vec<Decimalish>,
    /// State file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// State file only (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Document {
    budgets: Vec<Entry>,
}

impl Entry {
    fn draft(&self) -> Draft {
        let s = &self.scope;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Draft {
            name: self.name.clone(),
            tag: s.tag.as_ref().map(|t| (t.key.clone(), t.value.clone())),
            principal_arn: text(&s.principal_arn),
            role_arn: text(&s.role_arn),
            account_id: text(&s.account_id),
            model: text(&s.model),
            amount: self.amount.text(),
            currency: self.currency.clone(),
            thresholds: self.thresholds.iter().map(Decimalish::text).collect(),
        }
    }

    fn of(b: &Budget) -> Self {
        let s = &b.scope;
        Self {
            id: b.id.clone(),
            name: b.name.clone(),
            scope: ScopeEntry {
                tag: s.tag.as_ref().map(|(key, value)| TagEntry {
                    key: key.clone(),
                    value: value.clone(),
                }),
                principal_arn: s.principal_arn.clone(),
                role_arn: s.role_arn.clone(),
                account_id: s.account_id.map(|a| a.to_string()),
                model: s.model.clone(),
            },
            amount: Decimalish::Text(plain_amount(b.amount.units)),
            currency: b.currency.clone(),
            thresholds: b
                .thresholds
                .iter()
                .map(|t| Decimalish::Text(t.text.clone()))
                .collect(),
            owner: b.owner.clone(),
            created_at: b.created_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// An amount as the shortest plain decimal (`1500`, `1234.5`).
pub fn plain_amount(units: i128) -> String {
    money::to_decimal(units).normalize().to_string()
}

/// Parses and validates a document of budgets from `origin`; a failure names the entry
/// and field (`budgets[2] ("search"): scope.account_id: ...`).
fn parse(text: &str, origin: Origin) -> Result<Vec<Budget>, String> {
    let doc: Document = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    if doc.budgets.len() > MAX_BUDGETS {
        return Err(format!(
            "budgets: {} entries; at most {MAX_BUDGETS}",
            doc.budgets.len()
        ));
    }
    let mut out: Vec<Budget> = Vec::with_capacity(doc.budgets.len());
    for (i, entry) in doc.budgets.iter().enumerate() {
        let at = |what: String| format!("budgets[{i}] ({:?}): {what}", entry.id);
        if !valid_id(&entry.id) {
            return Err(at(
                "id: must be 1 to 64 letters, digits, '-', '_' or '.'".into()
            ));
        }
        if out.iter().any(|b| b.id == entry.id) {
            return Err(at("id: another budget has the same id".into()));
        }
        let Definition {
            name,
            scope,
            currency,
            amount,
            thresholds,
        } = validate(&entry.draft(), Fields::FILE).map_err(|e| match e {
            Error::InvalidArgument { field, reason } => at(format!("{field}: {reason}")),
            other => at(other.to_string()),
        })?;
        let created_at = match (&entry.created_at, origin) {
            (Some(_), Origin::File) | (None, Origin::Api) => {
                return Err(at(
                    "created_at: only budgets created through the API have one".into(),
                ));
            }
            (Some(t), Origin::Api) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| at(format!("created_at: {e}")))?
                    .with_timezone(&Utc),
            ),
            (None, Origin::File) => None,
        };
        if origin == Origin::File && entry.owner.is_some() {
            return Err(at(
                "owner: budgets of the file have no owner; only admins see them".into(),
            ));
        }
        out.push(Budget {
            id: entry.id.clone(),
            name,
            scope,
            currency,
            amount,
            thresholds,
            owner: entry.owner.clone(),
            origin,
            created_at,
        });
    }
    Ok(out)
}

/// A problem with the budgets file or the state file, as `DataStatus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetProblem {
    /// The flag naming the file: `--budgets-file` or `--budgets-state`.
    pub source: &'static str,
    /// The file, as configured.
    pub file: String,
    /// When the refused content was read.
    pub at: DateTime<Utc>,
    /// When this content was first found unusable.
    pub since: DateTime<Utc>,
    /// What is wrong.
    pub message: String,
    /// What the server does about it: `serving_last_good` (earlier definitions kept) or
    /// `none` (there were none).
    pub impact: &'static str,
}

#[derive(Debug, Default)]
struct Inner {
    configured: Vec<Arc<Budget>>,
    /// SHA-256 of the budgets file text in force or last refused, so that an unchanged
    /// file is not parsed again.
    file_digest: Option<[u8; 32]>,
    file_problem: Option<BudgetProblem>,
    stored: Vec<Arc<Budget>>,
    /// Set while the state file is unusable: writes are refused.
    state_problem: Option<BudgetProblem>,
}

/// Every budget in force, and their persistence.
#[derive(Debug)]
pub struct BudgetStore {
    file: Option<PathBuf>,
    state: Option<PathBuf>,
    inner: RwLock<Inner>,
    /// Serialises creations and deletions, each a read-modify-write of the state file.
    writes: tokio::sync::Mutex<()>,
    /// Counts changes of the budgets in force, so that watch streams recompute when
    /// budgets are created, deleted or reloaded, not only when the data changes.
    changes: watch::Sender<u64>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The folder and the prefix of the temporary files of a state file.
fn temp_prefix(state: &Path) -> (PathBuf, String) {
    let dir = state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let name = state
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| STATE_FILE_NAME.to_owned());
    (dir, format!(".{name}.tmp-"))
}

/// Writes `bytes` to `path` atomically: a new temporary file in the same folder, its
/// content flushed to disk, renamed over `path`, and the folder flushed so the rename
/// itself survives a power cut.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let (dir, prefix) = temp_prefix(path);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(
        "{prefix}{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // Directories can be opened for reading and flushed on Unix.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl BudgetStore {
    /// The budgets of `file` (read-only) and `state` (API budgets; `None` when there is
    /// nowhere to keep them). Never fails: unusable files are problems, reported by
    /// [`Self::problems`], and the server serves without them. Temporary files left
    /// by a write that a crash interrupted are removed.
    pub fn open(file: Option<PathBuf>, state: Option<PathBuf>) -> Arc<Self> {
        let store = Arc::new(Self {
            file,
            state,
            inner: RwLock::new(Inner::default()),
            writes: tokio::sync::Mutex::new(()),
            changes: watch::Sender::new(0),
        });
        if let Some(state) = &store.state {
            remove_leftovers(state);
        }
        store.load_state();
        store.reload();
        store
    }

    fn read_inner<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        match self.inner.read() {
            Ok(g) => f(&g),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write_inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.inner.write() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Reads the state file (absent = no budgets yet).
    fn load_state(&self) {
        let Some(path) = &self.state else {
            return;
        };
        let loaded = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read it: {e}")),
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| "is not UTF-8 text".to_owned())
                .and_then(|text| parse(&text, Origin::Api)),
        };
        let now = Utc::now();
        self.write_inner(|inner| match loaded {
            Ok(budgets) => {
                tracing::info!(path = %path.display(), budgets = budgets.len(), "budgets state loaded");
                inner.stored = budgets.into_iter().map(Arc::new).collect();
                inner.state_problem = None;
                self.changed();
            }
            Err(message) => {
                tracing::warn!(path = %path.display(), "budgets state file unusable, kept as it is; creating and deleting budgets is refused until it is fixed: {message}");
                let since = inner.state_problem.as_ref().map_or(now, |p| p.since);
                inner.state_problem = Some(BudgetProblem {
                    source: "--budgets-state",
                    file: path.display().to_string(),
                    at: now,
                    since,
                    message: format!(
                        "budgets state file unusable (kept as it is; CreateBudget and DeleteBudget refused until it is fixed or removed): {message}"
                    ),
                    impact: "none",
                });
            }
        });
    }

    /// Re-reads the budgets file when its content changed (and the state file while it
    /// is unusable). `true` when new definitions took effect.
    pub fn reload(&self) -> bool {
        if self.read_inner(|i| i.state_problem.is_some()) {
            self.load_state();
        }
        let Some(path) = &self.file else {
            return false;
        };
        let now = Utc::now();
        let (text, hash) = match std::fs::read(path) {
            Ok(bytes) => {
                let hash = digest(&bytes);
                if self.read_inner(|i| i.file_digest) == Some(hash) {
                    return false;
                }
                (
                    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned()),
                    Some(hash),
                )
            }
            Err(e) => (Err(format!("cannot read it: {e}")), None),
        };
        let stored: Vec<String> =
            self.read_inner(|i| i.stored.iter().map(|b| b.id.clone()).collect());
        let parsed = text.and_then(|t| parse(&t, Origin::File)).and_then(|budgets| {
            match budgets.iter().find(|b| stored.contains(&b.id)) {
                Some(b) => Err(format!(
                    "id {:?} is also the id of a budget created through the API; rename it in the file",
                    b.id
                )),
                None if budgets.len() + stored.len() > MAX_BUDGETS => Err(format!(
                    "{} budgets with the {} created through the API; at most {MAX_BUDGETS}",
                    budgets.len(),
                    stored.len()
                )),
                None => Ok(budgets),
            }
        });
        self.write_inner(|inner| {
            inner.file_digest = hash;
            match parsed {
                Ok(budgets) => {
                    tracing::info!(path = %path.display(), budgets = budgets.len(), "budgets file loaded");
                    inner.configured = budgets.into_iter().map(Arc::new).collect();
                    inner.file_problem = None;
                    self.changed();
                    true
                }
                Err(message) => {
                    let kept = inner.configured.len();
                    tracing::warn!(path = %path.display(), kept, "budgets file refused, earlier definitions kept: {message}");
                    let since = inner.file_problem.as_ref().map_or(now, |p| p.since);
                    inner.file_problem = Some(BudgetProblem {
                        source: "--budgets-file",
                        file: path.display().to_string(),
                        at: now,
                        since,
                        message: format!(
                            "budgets file refused, {kept} earlier definitions kept: {message}"
                        ),
                        impact: if kept > 0 { "serving_last_good" } else { "none" },
                    });
                    false
                }
            }
        })
    }

    /// Marks a change of the budgets in force (after it took effect).
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Follows changes of the budgets in force: the value changes after each creation,
    /// deletion or reload that changed them.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every budget in force, ordered by id.
    pub fn all(&self) -> Vec<Arc<Budget>> {
        let mut all: Vec<Arc<Budget>> =
            self.read_inner(|i| i.configured.iter().chain(&i.stored).cloned().collect());
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Problems with the budgets file and the state file.
    pub fn problems(&self) -> Vec<BudgetProblem> {
        self.read_inner(|i| {
            i.file_problem
                .iter()
                .chain(&i.state_problem)
                .cloned()
                .collect()
        })
    }

    /// Stores a new budget owned by `owner`, with a new id; persisted before it is
    /// returned.
    pub async fn create(
        &self,
        definition: Definition,
        owner: Option<String>,
    ) -> Result<Arc<Budget>, Error> {
        let path = self.writable()?;
        let _write = self.writes.lock().await;
        let (configured, stored) = self.read_inner(|i| (i.configured.clone(), i.stored.clone()));
        if configured.len() + stored.len() >= MAX_BUDGETS {
            return Err(Error::TooLarge {
                reason: format!(
                    "the server already holds {MAX_BUDGETS} budgets, the most it keeps; delete some first"
                ),
            });
        }
        let taken = |id: &str| configured.iter().chain(&stored).any(|b| b.id == id);
        let mut id = new_id();
        while taken(&id) {
            id = new_id();
        }
        let budget = Arc::new(Budget {
            id,
            name: definition.name,
            scope: definition.scope,
            currency: definition.currency,
            amount: definition.amount,
            thresholds: definition.thresholds,
            owner,
            origin: Origin::Api,
            created_at: Some(Utc::now()),
        });
        let mut next = stored;
        next.push(budget.clone());
        persist(path, &next).await?;
        self.write_inner(|i| i.stored = next);
        self.changed();
        tracing::info!(id = %budget.id, owner = ?budget.owner, "budget created");
        Ok(budget)
    }

    /// Deletes the API budget `id` if `visible` to the caller; a budget of the file is
    /// FAILED_PRECONDITION, an unknown or invisible one NOT_FOUND.
    pub async fn delete(&self, id: &str, visible: impl Fn(&Budget) -> bool) -> Result<(), Error> {
        let not_found = || Error::NotFound {
            what: format!("budget {id:?}"),
            hint: "ListBudgets lists the budgets you may see".into(),
        };
        if let Some(b) = self.read_inner(|i| i.configured.iter().find(|b| b.id == id).cloned()) {
            if !visible(&b) {
                return Err(not_found());
            }
            return Err(Error::Precondition {
                reason: format!(
                    "budget {id:?} is defined in the budgets file (--budgets-file); change the file to remove it"
                ),
            });
        }
        let path = self.writable()?;
        let _write = self.writes.lock().await;
        let stored = self.read_inner(|i| i.stored.clone());
        let Some(at) = stored.iter().position(|b| b.id == id && visible(b)) else {
            return Err(not_found());
        };
        let mut next = stored;
        next.remove(at);
        persist(path, &next).await?;
        self.write_inner(|i| i.stored = next);
        self.changed();
        tracing::info!(id, "budget deleted");
        Ok(())
    }

    /// The state file, when budgets can be written to it.
    fn writable(&self) -> Result<&Path, Error> {
        let Some(path) = &self.state else {
            return Err(Error::Precondition {
                reason: "this server has nowhere to keep budgets created through the API: start it with --budgets-state PATH, or with a --cache-dir (not --no-cache)".into(),
            });
        };
        if self.read_inner(|i| i.state_problem.is_some()) {
            return Err(Error::Precondition {
                reason: "the server's budgets state file is damaged (DataStatus lists the problem); an admin must fix or remove it before budgets can be created or deleted".into(),
            });
        }
        Ok(path)
    }

    /// Re-reads the budgets file every `every` until `shutdown` turns true (a ConfigMap
    /// volume swaps the file; comparing content catches that and any edit), and the
    /// state file while it is damaged.
    pub fn spawn_reloader(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                let store = self.clone();
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
            }
        })
    }
}

/// A new API budget id: `b-` and 16 random hex digits.
fn new_id() -> String {
    format!("b-{:016x}", rand::random::<u64>())
}

/// Writes the API budgets to the state file, off the serving threads.
async fn persist(path: &Path, budgets: &[Arc<Budget>]) -> Result<(), Error> {
    let doc = Document {
        budgets: budgets.iter().map(|b| Entry::of(b)).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Persist {
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    let path_shown = path.display().to_string();
    let path = path.to_owned();
    let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(path = %path_shown, "cannot write the budgets state file: {e}");
            Err(Error::Persist {
                reason: e.kind().to_string(),
            })
        }
        Err(e) => Err(Error::Persist {
            reason: e.to_string(),
        }),
    }
}

/// Removes the temporary files of `state` that a crash mid-write left behind.
fn remove_leftovers(state: &Path) {
    let (dir, prefix) = temp_prefix(state);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(path = %entry.path().display(), "removing a budgets state file left half written");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budgets the Kubernetes base deploys (a ConfigMap) are valid as they stand.
    #[test]
    fn the_kubernetes_budgets_file_is_valid() {
        let text = include_str!("../../../k8s/base/budgets.yaml");
        let budgets = parse(text, Origin::File).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(budgets.len(), 3);
    }

    const FILE: &str = r#"
budgets:
  - id: search
    name: Search team
    scope: {tag: {key: iamPrincipal/team, value: search}}
    amount: 1500.5
    currency: USD
    thresholds: [0.5, "0.9", 1]
  - id: ds-role
    name: Data science role
    scope:
      role_arn: arn:aws:iam::210987654321:role/ds
      account_id: "210987654321"
    amount: "99.0000000001"
    currency: EUR
"#;

    #[test]
    fn the_file_format() {
        let budgets = parse(FILE, Origin::File).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(budgets.len(), 2);
        assert_eq!(plain_amount(budgets[0].amount.units), "1500.5");
        let t: Vec<_> = budgets[0]
            .thresholds
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(t, ["0.5", "0.9", "1"]);
        assert_eq!(budgets[1].amount.units, 990_000_000_001);
        assert_eq!(budgets[1].thresholds.len(), 2);
        let err = parse(&FILE.replace("\"210987654321\"", "\"2109\""), Origin::File)
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("budgets[1] (\"ds-role\"): scope.account_id:"),
            "{err}"
        );
        let err = parse(&FILE.replace("id: ds-role", "id: search"), Origin::File)
            .err()
            .unwrap_or_default();
        assert!(err.contains("same id"), "{err}");
        assert!(parse("budgets: [{id: x}]", Origin::File).is_err());
        assert!(parse("nonsense: true", Origin::File).is_err());
    }

    #[test]
    fn state_round_trips() {
        let mut budgets = parse(FILE, Origin::File).unwrap_or_else(|e| panic!("{e}"));
        for b in &mut budgets {
            b.origin = Origin::Api;
            b.owner = Some("ds".into());
            b.created_at = DateTime::parse_from_rfc3339("2026-07-02T03:04:05Z")
                .ok()
                .map(|t| t.with_timezone(&Utc));
        }
        let doc = Document {
            budgets: budgets.iter().map(Entry::of).collect(),
        };
        let text = serde_json::to_string(&doc).unwrap_or_default();
        let back = parse(&text, Origin::Api).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, budgets);
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("budgets.json");
        write_atomically(&path, b"one").unwrap_or_else(|e| panic!("{e}"));
        write_atomically(&path, b"two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["budgets.json"]);
    }
}
