//! Where budgets are kept: the budgets file (`--budgets-file`, YAML or JSON, read-only,
//! re-read when it changes) and the state file of budgets created through the API
//! (`--budgets-state`, JSON, written atomically: a temporary file in the same folder,
//! flushed to disk, then renamed over the old one, so a crash leaves the old or the
//! new list, never half of one).
//!
//! Several processes may share one state file (two servers on one host, or pods on one
//! shared volume): every creation and deletion takes an exclusive lock on the sidecar
//! file `<state>.lock`, reads the state file as it is now, applies its change to that
//! list and writes it back before the lock is released, so no process writes over
//! another's acknowledged budgets. Each process also re-reads the state file (under a
//! shared lock) on every reload of the budgets file, so it sees the others' budgets
//! within `--budgets-reload-interval`, and at once after its own next write.
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
    /// SHA-256 of the state file as last read or written (`Some(None)`: it did not
    /// exist), so that an unchanged file is not parsed again; `None` before the first
    /// read.
    state_digest: Option<Option<[u8; 32]>>,
    /// Set while the state file is unusable: writes are refused.
    state_problem: Option<BudgetProblem>,
}

/// Where the budgets created through the API are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFile {
    /// In this file (`--budgets-state`, or `budgets.json` in the cache directory).
    Path(PathBuf),
    /// Nowhere: no `--budgets-state` and no cache directory.
    Nowhere,
    /// Nowhere, on purpose (`--no-api-budgets`): replicas without a shared volume.
    Off,
}

/// Every budget in force, and their persistence.
#[derive(Debug)]
pub struct BudgetStore {
    file: Option<PathBuf>,
    state: Option<PathBuf>,
    /// Whether API budgets were turned off rather than left without a file.
    api_off: bool,
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
    pub fn open(file: Option<PathBuf>, state: StateFile) -> Arc<Self> {
        let store = Arc::new(Self {
            file,
            api_off: state == StateFile::Off,
            state: match state {
                StateFile::Path(path) => Some(path),
                StateFile::Nowhere | StateFile::Off => None,
            },
            inner: RwLock::new(Inner::default()),
            writes: tokio::sync::Mutex::new(()),
            changes: watch::Sender::new(0),
        });
        // Under the exclusive lock, so that no write of another process sharing the
        // file is in progress; without the folder there is nothing to remove.
        if let Some(state) = &store.state
            && let Ok(file) = StateLock::open(state)
            && file.lock().is_ok()
        {
            let _lock = StateLock(file);
            remove_leftovers(state);
        }
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

    /// Re-reads the state file (absent = no budgets yet) when its content changed since
    /// this process last read or wrote it, under a shared lock so that no write of
    /// another process is half seen and no older list replaces a newer one.
    fn sync_state(&self) {
        let Some(path) = &self.state else {
            return;
        };
        // Without the folder there is no file yet, and nothing to lock.
        let lock = StateLock::shared(path).ok();
        let read = read_state(path);
        if let Ok((_, seen)) = &read
            && self.read_inner(|i| i.state_digest == Some(*seen) && i.state_problem.is_none())
        {
            return;
        }
        let parsed = read.and_then(|(text, seen)| match text {
            None => Ok((Vec::new(), seen)),
            Some(text) => parse(&text, Origin::Api).map(|b| (b, seen)),
        });
        match parsed {
            Ok((budgets, seen)) => {
                tracing::info!(path = %path.display(), budgets = budgets.len(), "budgets state loaded");
                self.adopt(budgets.into_iter().map(Arc::new).collect(), seen);
            }
            Err(message) => self.state_unusable(path, message),
        }
        drop(lock);
    }

    /// Takes `stored`, as the state file holds it now (its digest `seen`), as the API
    /// budgets in force; watchers wake when that changed them.
    fn adopt(&self, stored: Vec<Arc<Budget>>, seen: Option<[u8; 32]>) {
        let changed = self.write_inner(|inner| {
            inner.state_digest = Some(seen);
            inner.state_problem = None;
            let changed = inner.stored != stored;
            inner.stored = stored;
            changed
        });
        if changed {
            self.changed();
        }
    }

    /// Records that the state file cannot be used: it is kept as it is, and writes are
    /// refused until it is fixed.
    fn state_unusable(&self, path: &Path, message: String) {
        tracing::warn!(path = %path.display(), "budgets state file unusable, kept as it is; creating and deleting budgets is refused until it is fixed: {message}");
        let now = Utc::now();
        self.write_inner(|inner| {
            let since = inner.state_problem.as_ref().map_or(now, |p| p.since);
            inner.state_digest = None;
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
        });
    }

    /// Re-reads the state file and the budgets file when their content changed (the
    /// state file may have been written by another process sharing it). `true` when
    /// new definitions of the budgets file took effect.
    pub fn reload(&self) -> bool {
        self.sync_state();
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
    /// returned. `quota` is the most budgets `owner` may hold (`None`: only the
    /// server-wide [`MAX_BUDGETS`] bounds it); both are counted on the state file as it
    /// is when the budget is written, other processes' budgets included.
    pub async fn create(
        &self,
        definition: Definition,
        owner: Option<String>,
        quota: Option<usize>,
    ) -> Result<Arc<Budget>, Error> {
        let path = self.writable()?;
        let _write = self.writes.lock().await;
        let configured: Vec<String> =
            self.read_inner(|i| i.configured.iter().map(|b| b.id.clone()).collect());
        let created = self
            .change(path, move |stored| {
                if configured.len() + stored.len() >= MAX_BUDGETS {
                    return Err(Error::TooLarge {
                        reason: format!(
                            "the server already holds {MAX_BUDGETS} budgets, the most it keeps; delete some first"
                        ),
                    });
                }
                if let (Some(limit), Some(owner)) = (quota, &owner) {
                    let held = stored
                        .iter()
                        .filter(|b| b.owner.as_ref() == Some(owner))
                        .count();
                    if held >= limit {
                        return Err(Error::TooLarge {
                            reason: format!(
                                "caller {owner} already holds {held} budgets, the most one caller may ({limit}, --max-budgets-per-caller); delete some first"
                            ),
                        });
                    }
                }
                let taken = |id: &str| {
                    configured.iter().any(|c| c == id) || stored.iter().any(|b| b.id == id)
                };
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
                stored.push(budget.clone());
                Ok(budget)
            })
            .await?;
        tracing::info!(id = %created.id, owner = ?created.owner, "budget created");
        Ok(created)
    }

    /// Deletes the API budget `id` if `visible` to the caller; a budget of the file is
    /// FAILED_PRECONDITION, an unknown or invisible one NOT_FOUND. The budget is looked
    /// up in the state file as it is now, so one created by another process sharing
    /// it can be deleted too.
    pub async fn delete(
        &self,
        id: &str,
        visible: impl Fn(&Budget) -> bool + Send + 'static,
    ) -> Result<(), Error> {
        let not_found = {
            let id = id.to_owned();
            move || Error::NotFound {
                what: format!("budget {id:?}"),
                hint: "ListBudgets lists the budgets you may see".into(),
            }
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
        let wanted = id.to_owned();
        self.change(path, move |stored| {
            let Some(at) = stored.iter().position(|b| b.id == wanted && visible(b)) else {
                return Err(not_found());
            };
            stored.remove(at);
            Ok(())
        })
        .await?;
        tracing::info!(id, "budget deleted");
        Ok(())
    }

    /// Applies `change` to the API budgets as the state file holds them now, under the
    /// exclusive lock, and writes the result before the lock is released; the list in
    /// force becomes what the file then holds (also when `change` refuses, so that a
    /// refusal is never judged on a stale list twice). Runs off the serving threads.
    async fn change<T: Send + 'static>(
        &self,
        path: &Path,
        change: impl FnOnce(&mut Vec<Arc<Budget>>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let path = path.to_owned();
        let done = tokio::task::spawn_blocking(move || locked_change(&path, change))
            .await
            .map_err(|e| Error::Persist {
                reason: e.to_string(),
            })?;
        match done {
            Locked::Done { stored, seen, out } => {
                self.adopt(stored, seen);
                out
            }
            Locked::Unusable(message) => {
                if let Some(path) = &self.state {
                    self.state_unusable(path, message);
                }
                Err(damaged())
            }
            Locked::Failed(e) => Err(e),
        }
    }

    /// The state file, when budgets can be written to it.
    fn writable(&self) -> Result<&Path, Error> {
        if self.api_off {
            return Err(Error::Precondition {
                reason: "this server keeps no budgets created through the API (--no-api-budgets: its replicas share no state file, so a budget written by one would be unknown to the others and lost with its pod); budgets come from the budgets file (--budgets-file): ask an admin to add it there".into(),
            });
        }
        let Some(path) = &self.state else {
            return Err(Error::Precondition {
                reason: "this server has nowhere to keep budgets created through the API: start it with --budgets-state PATH, or with a --cache-dir (not --no-cache)".into(),
            });
        };
        if self.read_inner(|i| i.state_problem.is_some()) {
            return Err(damaged());
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

/// The refusal of writes while the state file is unusable.
fn damaged() -> Error {
    Error::Precondition {
        reason: "the server's budgets state file is damaged (DataStatus lists the problem); an admin must fix or remove it before budgets can be created or deleted".into(),
    }
}

/// The sidecar lock file of a state file: `budgets.json.lock` beside `budgets.json`.
/// It is never removed: removing a lock file while another process waits on it would
/// let two writers in at once.
fn lock_path(state: &Path) -> PathBuf {
    let mut name = state
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| STATE_FILE_NAME.into());
    name.push(".lock");
    state.with_file_name(name)
}

/// An advisory lock (`flock`) on the lock file of a state file, released when dropped.
/// Every process sharing the state file takes it, shared to read and exclusive to
/// write; it also orders the reads and writes of one process (each lock is its own
/// open file).
struct StateLock(std::fs::File);

impl StateLock {
    fn open(state: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path(state))
    }

    /// Waits for the exclusive lock, creating the folder and the lock file if needed.
    fn exclusive(state: &Path) -> std::io::Result<Self> {
        let (dir, _) = temp_prefix(state);
        std::fs::create_dir_all(&dir)?;
        let file = Self::open(state)?;
        file.lock()?;
        Ok(Self(file))
    }

    /// Waits for a shared lock; fails when the folder does not exist.
    fn shared(state: &Path) -> std::io::Result<Self> {
        let file = Self::open(state)?;
        file.lock_shared()?;
        Ok(Self(file))
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The state file's text (`None` when it does not exist) and its digest.
fn read_state(path: &Path) -> Result<(Option<String>, Option<[u8; 32]>), String> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, None)),
        Err(e) => Err(format!("cannot read it: {e}")),
        Ok(bytes) => {
            let seen = digest(&bytes);
            String::from_utf8(bytes)
                .map(|text| (Some(text), Some(seen)))
                .map_err(|_| "is not UTF-8 text".to_owned())
        }
    }
}

/// What a locked read-modify-write of the state file came to.
enum Locked<T> {
    /// The file was read; `stored` is what it holds now (changed and written when `out`
    /// is `Ok`), `seen` its digest.
    Done {
        stored: Vec<Arc<Budget>>,
        seen: Option<[u8; 32]>,
        out: Result<T, Error>,
    },
    /// The file cannot be read or parsed: nothing was written.
    Unusable(String),
    /// The lock could not be taken or the file not written: nothing changed.
    Failed(Error),
}

/// Under the exclusive lock: reads the state file, applies `change`, and writes the
/// new list when `change` succeeds.
fn locked_change<T>(
    path: &Path,
    change: impl FnOnce(&mut Vec<Arc<Budget>>) -> Result<T, Error>,
) -> Locked<T> {
    let persist_error = |what: &str, e: std::io::Error| {
        tracing::error!(path = %path.display(), "cannot {what} the budgets state file: {e}");
        Locked::Failed(Error::Persist {
            reason: e.kind().to_string(),
        })
    };
    let lock = match StateLock::exclusive(path) {
        Ok(lock) => lock,
        Err(e) => return persist_error("lock", e),
    };
    let (text, seen) = match read_state(path) {
        Ok(read) => read,
        Err(message) => return Locked::Unusable(message),
    };
    let mut stored: Vec<Arc<Budget>> = match text.map(|t| parse(&t, Origin::Api)) {
        None => Vec::new(),
        Some(Ok(budgets)) => budgets.into_iter().map(Arc::new).collect(),
        Some(Err(message)) => return Locked::Unusable(message),
    };
    let before = stored.clone();
    let out = change(&mut stored);
    if out.is_err() {
        return Locked::Done {
            stored: before,
            seen,
            out,
        };
    }
    let bytes = match serialize(&stored) {
        Ok(bytes) => bytes,
        Err(e) => return Locked::Failed(e),
    };
    if let Err(e) = write_atomically(path, &bytes) {
        return persist_error("write", e);
    }
    drop(lock);
    Locked::Done {
        stored,
        seen: Some(digest(&bytes)),
        out,
    }
}

/// A new API budget id: `b-` and 16 random hex digits.
fn new_id() -> String {
    format!("b-{:016x}", rand::random::<u64>())
}

/// The state file's content for `budgets`.
fn serialize(budgets: &[Arc<Budget>]) -> Result<Vec<u8>, Error> {
    let doc = Document {
        budgets: budgets.iter().map(|b| Entry::of(b)).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Persist {
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
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

    fn definition() -> Definition {
        let draft = Draft {
            name: "rocket".into(),
            account_id: "210987654321".into(),
            amount: "10".into(),
            currency: "USD".into(),
            ..Draft::default()
        };
        validate(&draft, Fields::RPC).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ids(store: &BudgetStore) -> Vec<String> {
        store.all().iter().map(|b| b.id.clone()).collect()
    }

    /// Two stores on one state file, as two processes hold it: each write re-reads the
    /// file under the lock, so neither loses the other's budgets, and a reload shows
    /// the other's; the per-owner quota counts what the file holds, and a deletion
    /// finds a budget the other store created.
    #[tokio::test]
    async fn two_stores_on_one_state_file_lose_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("budgets.json");
        let state = || StateFile::Path(path.clone());
        let (a, b) = (
            BudgetStore::open(None, state()),
            BudgetStore::open(None, state()),
        );
        let owner = || Some("ds".to_owned());
        a.create(definition(), owner(), Some(3))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..2 {
            b.create(definition(), owner(), Some(3))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let e = a
            .create(definition(), owner(), Some(3))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("caller ds already holds 3 budgets"), "{e}");
        a.create(definition(), Some("other".into()), Some(3))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&a).len(), 4, "a's writes kept b's budgets");
        b.reload();
        assert_eq!(ids(&a), ids(&b), "b's reload shows a's budgets");
        let theirs = ids(&a)[0].clone();
        b.delete(&theirs, |_| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        a.reload();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(ids(&a).len(), 3);
        let on_disk = parse(
            &std::fs::read_to_string(&path).unwrap_or_default(),
            Origin::Api,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_disk.len(), 3);
        assert!(path.with_file_name("budgets.json.lock").exists());
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
