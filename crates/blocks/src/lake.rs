//! The lake storage block: a root on the local filesystem or on an S3-compatible store, where
//! each contract server bound to it is a prefix holding the port's Parquet, CSV or NDJSON
//! files.
//!
//! - Paths are confined: the port's prefix (the server's `path` or `location` before any glob
//!   or `{object}` template, without a file name) must lie under the block's root, and every
//!   object's path, once templated, under the prefix — segment by segment, with no `..`
//!   anywhere, the glob's partial segment not counted, and for a local root on disk too
//!   (symbolic links resolved, and a prefix holding a link refused). Nothing else is ever
//!   read, listed or removed.
//! - Prefixes are exclusive: each carries the block's mark (`.meshplane-port`, JSON without
//!   an extension, so no data format reads it: installation, domain, contract, uid, fencing
//!   token, and the declared schema). A prefix that is another port's, lies inside another
//!   port's, holds another port's, or holds files that are no port's is refused with a
//!   condition before anything is written. A resource of the same domain and name made again
//!   takes its retained prefix back.
//! - Provisioning creates the prefix and writes the mark (claiming a new prefix atomically);
//!   it is idempotent, and refused when the mark holds a larger fencing token than the call.
//! - Observing reads the schema the files actually have (Parquet metadata; inference for CSV
//!   and NDJSON, through the contract-test engine) and reports as drift every declared column
//!   that is missing or of a type that does not fit, and every column not declared. A port
//!   with no file yet has no drift.
//! - Cleanup follows the deletion policy: `retain` keeps the prefix and reports it; `delete`
//!   removes the mark and the prefix if no file is left in it, and otherwise keeps the mark
//!   and reports the files. Data files are never removed by a cleanup; a purge removes them
//!   only while the prefix is still the one that resource left.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use meshplane_core::access::{AccessReport, AccessSync, Enforcement};
use meshplane_core::block::{BlockError, BlockFuture, BlockResult, Call, Leftover, Provisioned};
use meshplane_core::checking::{FileTarget, S3Access, TestTarget};
use meshplane_core::store::Record;
use meshplane_quality::files::{Location, S3Config, s3_store};
use meshplane_quality::plan::compile;
use meshplane_quality::target::{delimiter, file_columns, file_locations};
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::model::server::Server;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::platform::{DeletionPolicy, LakeConfig, Platform};
use crate::registry::{BlockType, Built, describe};
use crate::storage::{ServerStorage, Storage};

/// The name of the mark in a port's prefix.
const MARK: &str = ".meshplane-port";

/// The block, with its object store.
pub struct LakeBlock {
    name: String,
    config: LakeConfig,
    platform: Arc<Platform>,
    s3: S3Config,
    store: Arc<dyn ObjectStore>,
    /// Local paths are relative to this directory (the server's working directory).
    base: PathBuf,
}

/// A port's prefix: the key in the block's store, and how a user would name it.
struct Prefix {
    key: Key,
    shown: String,
    /// The directory, for a local root.
    local: Option<PathBuf>,
}

/// The mark of a port's prefix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Mark {
    installation: String,
    domain: String,
    contract: String,
    uid: String,
    fence: i64,
    /// What the port declares (version, server, format, schema), for people and tools.
    #[serde(default)]
    declared: serde_json::Value,
}

impl Mark {
    fn is_for(&self, record: &Record, call: &Call) -> bool {
        self.installation == call.installation && self.domain == record.domain && self.contract == record.name
    }
}

/// What a prefix's mark says of it, for one resource.
enum Standing {
    /// No mark.
    Absent,
    /// The resource's own port; `None` for one an earlier release marked for a contract of
    /// the same name (it is marked anew).
    Ours(Option<Mark>),
    /// Another port: whose.
    Foreign(String),
}

/// What a mark's text says: a mark, the contract of an earlier release's mark, or nothing.
fn read_mark(bytes: &[u8]) -> (Option<Mark>, Option<String>) {
    if let Ok(mark) = serde_json::from_slice::<Mark>(bytes) {
        return (Some(mark), None);
    }
    let legacy = serde_json::from_slice::<serde_json::Value>(bytes).ok();
    (None, legacy.and_then(|v| v.get("contract")?.as_str().map(str::to_string)))
}

impl Prefix {
    /// How a cleanup names the prefix, for a purge to find it again and check it is still
    /// what `record` left.
    fn place(&self, record: &Record) -> String {
        json!({ "key": self.key.as_ref(), "shown": self.shown, "dir": self.local,
                "domain": record.domain, "contract": record.name, "uid": record.uid })
        .to_string()
    }

    fn from_place(place: &str) -> Result<(Prefix, serde_json::Value), String> {
        let at: serde_json::Value =
            serde_json::from_str(place).map_err(|e| format!("`{place}` is not a place of this block: {e}"))?;
        let key = at["key"].as_str().ok_or_else(|| format!("`{place}` names no prefix"))?;
        let prefix = Prefix {
            key: Key::from(key),
            shown: at["shown"].as_str().unwrap_or(key).to_string(),
            local: at["dir"].as_str().map(PathBuf::from),
        };
        Ok((prefix, at))
    }

    fn mark(&self) -> Key {
        self.key.clone().join(MARK)
    }
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` with every symbolic link of its longest existing part resolved (the rest kept as
/// written), so that a link inside the root cannot lead out of it.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(ToOwned::to_owned), existing.parent().map(Path::to_path_buf)) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    out.extend(rest.iter().rev());
    out
}

/// The part of a path before any glob.
fn before_glob(path: &str) -> &str {
    &path[..path.find(['*', '?', '[']).unwrap_or(path.len())]
}

/// A located path with its `.` and empty segments dropped, or `None` when it has a `..`
/// segment (which a glob would match literally, or a listing walk out of the prefix by).
fn cleaned(path: &str) -> Option<String> {
    let (scheme, rest) = path.strip_prefix("s3://").map_or(("", path), |rest| ("s3://", rest));
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            ".." => return None,
            "." | "" => {}
            part => parts.push(part),
        }
    }
    let lead = if scheme.is_empty() && rest.starts_with('/') { "/" } else { "" };
    let trail = if rest.ends_with('/') && !parts.is_empty() { "/" } else { "" };
    Some(format!("{scheme}{lead}{}{trail}", parts.join("/")))
}

/// What every file a path names lies under: the part before any glob without the glob's
/// partial segment (`orders*` also matches `orders-old`), or the whole path without one.
fn anchor(path: &str) -> &str {
    let literal = before_glob(path);
    if literal.len() < path.len() {
        literal.rsplit_once('/').map_or("", |(dir, _)| dir)
    } else {
        literal.trim_end_matches('/')
    }
}

/// Whether object key `key` is `root` or under it, segment by segment (`ports-old` is not
/// under `ports`).
fn within(key: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty() || key == root || key.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// Every file under a local directory, walked without following links: a link is refused,
/// since what it points to is not the port's to read or remove. Names the object store would
/// skip (`part#1`) are listed too.
fn local_files(dir: &Path, key: &Key, shown: &str) -> BlockResult<Vec<Key>> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), key.clone())];
    while let Some((at, key)) = pending.pop() {
        let entries = match std::fs::read_dir(&at) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && at == dir => return Ok(files),
            other => other.map_err(|e| format!("cannot list {}: {e}", at.display()))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", at.display()))?;
            let kind = entry.file_type().map_err(|e| format!("cannot list {}: {e}", entry.path().display()))?;
            let child = key.clone().join(entry.file_name().to_string_lossy().as_ref());
            if kind.is_symlink() {
                return Err(BlockError::Permanent(format!(
                    "prefix {shown} holds a symbolic link ({}): links are not followed; put the files themselves there",
                    entry.path().display()
                )));
            } else if kind.is_dir() {
                pending.push((entry.path(), child));
            } else {
                files.push(child);
            }
        }
    }
    Ok(files)
}

/// The directory part of a server's path: before any glob or template, and without a file
/// name (a last segment with an extension).
fn directory(path: &str) -> &str {
    let cut = &path[..path.find(['*', '?', '[', '{']).unwrap_or(path.len())];
    if cut.len() < path.len() || cut.ends_with('/') {
        return cut.rsplit_once('/').map_or("", |(dir, _)| dir);
    }
    match cut.rsplit_once('/') {
        Some((dir, last)) if last.contains('.') => dir,
        _ => cut,
    }
}

impl LakeBlock {
    /// Builds the block (resolving its S3 credentials); `base` is where relative local paths
    /// start.
    pub fn new(name: &str, config: &LakeConfig, platform: Arc<Platform>, base: &Path) -> Result<LakeBlock, String> {
        let secret = |s: &Option<crate::platform::Secret>, what: &str| {
            s.as_ref().map(|s| s.resolve().map_err(|e| format!("block `{name}`: {what}: {e}"))).transpose()
        };
        let s3 = S3Config {
            endpoint: config.endpoint.clone(),
            region: config.region.clone(),
            access_key_id: secret(&config.access_key_id, "accessKeyId")?,
            secret_access_key: secret(&config.secret_access_key, "secretAccessKey")?,
        };
        let store: Arc<dyn ObjectStore> = match config.s3() {
            Some((bucket, _)) => s3_store(bucket, s3.clone()).map_err(|e| format!("block `{name}`: {e}"))?,
            None => Arc::new(LocalFileSystem::new()),
        };
        Ok(LakeBlock { name: name.into(), config: config.clone(), platform, s3, store, base: base.to_path_buf() })
    }

    fn absolute(&self, path: &str) -> PathBuf {
        normalize(&self.base.join(path))
    }

    /// The local root, as written and with its links resolved.
    fn local_root(&self) -> (PathBuf, PathBuf) {
        let root = self.absolute(&self.config.local().unwrap_or_default().to_string_lossy());
        let real = resolved(&root);
        (root, real)
    }

    /// The port's prefix, which must lie under the block's root.
    fn prefix(&self, server: &Server) -> BlockResult<Prefix> {
        let path = server.path.as_deref().or(server.location.as_deref()).unwrap_or_default();
        let dir = directory(path);
        let outside = || {
            BlockError::Permanent(format!(
                "server `{}`: {path} is not under block `{}`'s root {}",
                server.server, self.name, self.config.root
            ))
        };
        match self.config.s3() {
            Some((bucket, root)) => {
                let key = dir.strip_prefix(&format!("s3://{bucket}/")).ok_or_else(outside)?;
                if key.split('/').any(|part| part == ".." || part == ".") || !within(key, root) {
                    return Err(outside());
                }
                Ok(Prefix { key: Key::from(key), shown: format!("s3://{bucket}/{key}"), local: None })
            }
            None => {
                let (root, real_root) = self.local_root();
                let dir = self.absolute(dir);
                if path.contains("://") || !dir.starts_with(&root) || !resolved(&dir).starts_with(&real_root) {
                    return Err(outside());
                }
                let key = Key::from_absolute_path(&dir).map_err(|e| BlockError::Permanent(e.to_string()))?;
                Ok(Prefix { key, shown: dir.display().to_string(), local: Some(dir) })
            }
        }
    }

    /// Where each of the contract's objects is read on `server`, each path confined to the
    /// port's prefix: no `..` anywhere (so neither a template, a physical name nor a glob can
    /// lead out of it), the part before any glob and its partial segment under the prefix
    /// segment by segment, and, for a local root, on disk too (links resolved).
    fn locations(&self, contract: &DataContract, server: &Server) -> BlockResult<(Prefix, Vec<(String, Location)>)> {
        let prefix = self.prefix(server)?;
        let plan = compile(contract, None);
        let mut located =
            file_locations(server, &plan, &self.base).map_err(|e| BlockError::Permanent(e.to_string()))?;
        for (table, location) in &mut located {
            let outside = |why: &str| {
                BlockError::Permanent(format!(
                    "server `{}`: object `{table}` is read from {}, which is not under the port's prefix {}{why}",
                    server.server, location.path, prefix.shown
                ))
            };
            let path = cleaned(&location.path).ok_or_else(|| outside(" (a path may not contain `..`)"))?;
            let anchor = anchor(&path);
            let inside = match (&prefix.local, self.config.s3()) {
                (Some(dir), _) => {
                    Path::new(anchor).starts_with(dir) && resolved(Path::new(anchor)).starts_with(resolved(dir))
                }
                (None, Some((bucket, _))) => anchor
                    .strip_prefix("s3://")
                    .and_then(|rest| rest.split_once('/').or(Some((rest, ""))))
                    .is_some_and(|(named, key)| named == bucket && within(key, prefix.key.as_ref())),
                (None, None) => false,
            };
            if !inside {
                return Err(outside(""));
            }
            // Read exactly what was checked.
            location.path = path;
        }
        Ok((prefix, located))
    }

    /// What the prefix's own mark says of it.
    async fn standing(&self, prefix: &Prefix, record: &Record, call: &Call) -> Result<Standing, String> {
        let Some(bytes) = self.read(&prefix.mark(), prefix).await? else { return Ok(Standing::Absent) };
        Ok(match read_mark(&bytes) {
            (Some(mark), _) if mark.is_for(record, call) => Standing::Ours(Some(mark)),
            (Some(mark), _) if mark.installation != call.installation => {
                Standing::Foreign(format!("prefix {} is the port of another meshplane installation", prefix.shown))
            }
            (Some(mark), _) => Standing::Foreign(format!(
                "prefix {} is the port of DataContract {} of domain `{}`",
                prefix.shown, mark.contract, mark.domain
            )),
            (None, Some(contract)) if contract == record.name => Standing::Ours(None),
            (None, contract) => Standing::Foreign(format!(
                "prefix {} is the port of DataContract {}",
                prefix.shown,
                contract.as_deref().unwrap_or("(unreadable mark)")
            )),
        })
    }

    /// An object's bytes, or `None` when it does not exist.
    async fn read(&self, key: &Key, prefix: &Prefix) -> Result<Option<Vec<u8>>, String> {
        match self.store.get(key).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| e.to_string())?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("cannot reach {}: {e}", prefix.shown)),
        }
    }

    /// Refuses a prefix that lies inside another port's, or holds another port or files that
    /// are no port's.
    async fn exclusive(&self, prefix: &Prefix, files: &[Key], own: bool) -> BlockResult<()> {
        let root = match self.config.s3() {
            Some((_, root)) => Key::from(root),
            None => Key::from_absolute_path(&self.local_root().0).map_err(|e| e.to_string())?,
        };
        let parts: Vec<_> = prefix.key.parts().collect();
        let depth = root.parts().count();
        for end in depth..parts.len() {
            let ancestor = Key::from_iter(parts[..end].iter().cloned());
            if let Some(bytes) = self.read(&ancestor.clone().join(MARK), prefix).await? {
                let whose = match read_mark(&bytes) {
                    (Some(mark), _) => format!("DataContract {} of domain `{}`", mark.contract, mark.domain),
                    (None, contract) => format!("DataContract {}", contract.unwrap_or_default()),
                };
                return Err(BlockError::Permanent(format!(
                    "prefix {} lies inside the port of {whose} ({ancestor})",
                    prefix.shown
                )));
            }
        }
        let own_mark = prefix.mark();
        if let Some(key) = files.iter().find(|k| **k != own_mark && k.filename() == Some(MARK)) {
            let whose = match self.read(key, prefix).await?.as_deref().map(read_mark) {
                Some((Some(mark), _)) => format!("DataContract {} of domain `{}`", mark.contract, mark.domain),
                _ => "another port".to_string(),
            };
            return Err(BlockError::Permanent(format!("prefix {} holds the port of {whose} (at {key})", prefix.shown)));
        }
        if !own && !files.is_empty() {
            return Err(BlockError::Permanent(format!(
                "prefix {} holds {} file(s) that are no port's: a port's prefix starts empty (choose another path, \
                 or move the files in once the port is provisioned)",
                prefix.shown,
                files.len()
            )));
        }
        Ok(())
    }

    async fn provision_one(
        &self,
        record: &Record,
        contract: &DataContract,
        server: &Server,
        call: &Call,
    ) -> BlockResult<Provisioned> {
        let (prefix, locations) = self.locations(contract, server)?;
        let found = match self.standing(&prefix, record, call).await? {
            Standing::Foreign(why) => return Err(BlockError::Permanent(why)),
            Standing::Absent => None,
            Standing::Ours(found) => Some(found),
        };
        let files = self.files(&prefix).await?;
        self.exclusive(&prefix, &files, found.is_some()).await?;
        let previous = found.flatten();
        if let Some(mark) = previous.as_ref().filter(|m| m.fence > call.token()) {
            return Err(BlockError::Transient(format!(
                "prefix {}: a newer reconcile (lease token {}) has written into it since this one's lease (token {}) \
                 was taken; nothing was changed",
                prefix.shown,
                mark.fence,
                call.token()
            )));
        }
        let mark = Mark {
            installation: call.installation.clone(),
            domain: record.domain.clone(),
            contract: record.name.clone(),
            uid: record.uid.clone(),
            fence: call.token().max(previous.as_ref().map_or(0, |m| m.fence)),
            declared: declared(record, contract, server),
        };
        let mut summary = format!("prefix {} is as declared", prefix.shown);
        if previous.as_ref() != Some(&mark) {
            if let Some(dir) = &prefix.local {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let body = serde_json::to_vec_pretty(&mark).map_err(|e| e.to_string())?;
            // A new prefix is claimed atomically: of two ports racing for it, one gets it.
            let mode = if previous.is_none() && !files.contains(&prefix.mark()) {
                PutMode::Create
            } else {
                PutMode::Overwrite
            };
            let key = prefix.mark();
            match self.store.put_opts(&key, body.into(), PutOptions { mode, ..PutOptions::default() }).await {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let why = format!("prefix {} was claimed by another port at the same time", prefix.shown);
                    return Err(BlockError::Permanent(why));
                }
                Err(e) => return Err(BlockError::Transient(format!("cannot write to {}: {e}", prefix.shown))),
            }
            summary = format!("recorded the schema in {}", prefix.shown);
        }
        let has_data = files.iter().any(|k| *k != prefix.mark());
        let drift = if has_data { self.observe(contract, server, locations).await? } else { Vec::new() };
        Ok(Provisioned { summary, drift })
    }

    /// Where the files differ from the declared schema.
    async fn observe(
        &self,
        contract: &DataContract,
        server: &Server,
        locations: Vec<(String, Location)>,
    ) -> Result<Vec<String>, String> {
        let plan = compile(contract, None);
        let delimiter = delimiter(server).map_err(|e| e.to_string())?;
        let found = file_columns(locations, delimiter, &self.s3).await.map_err(|e| e.to_string())?;
        let mut drift = Vec::new();
        for (table, columns) in found {
            let object = plan.objects.iter().find(|o| o.table == table).map(|o| o.name.clone()).unwrap_or(table);
            let (Some(columns), Some(declared)) = (columns, contract.object(&object)) else { continue };
            for p in declared.properties() {
                let name = p.physical_name.as_deref().unwrap_or(&p.name);
                match columns.iter().find(|(c, _)| c == name) {
                    None => drift.push(format!("{object}: column `{name}` is missing from the files")),
                    Some((_, kind)) => {
                        let fit = kind.fit(p.logical_type.as_deref(), p.physical_type.as_deref());
                        if !fit.fits {
                            let declared = p.physical_type.as_deref().or(p.logical_type.as_deref()).unwrap_or("?");
                            drift.push(format!("{object}: column `{name}` is {}, declared {declared}", fit.actual));
                        }
                    }
                }
            }
            for (column, _) in &columns {
                let known =
                    declared.properties().iter().any(|p| p.physical_name.as_deref().unwrap_or(&p.name) == column);
                if !known {
                    drift.push(format!("{object}: column `{column}` is not declared"));
                }
            }
        }
        Ok(drift)
    }

    /// Every object under the prefix (none when it does not exist); a local prefix holding a
    /// link is refused.
    async fn files(&self, prefix: &Prefix) -> BlockResult<Vec<Key>> {
        if let Some(dir) = &prefix.local {
            return local_files(dir, &prefix.key, &prefix.shown);
        }
        let listed = self.store.list(Some(&prefix.key)).map_ok(|meta| meta.location).try_collect().await;
        match listed {
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            other => other.map_err(|e| BlockError::Transient(format!("cannot list {}: {e}", prefix.shown))),
        }
    }

    async fn cleanup_one(&self, record: &Record, server: &Server, call: &Call) -> BlockResult<Vec<Leftover>> {
        // What never was this resource's port (outside the root, another's) was never touched.
        let Ok(prefix) = self.prefix(server) else { return Ok(Vec::new()) };
        let Standing::Ours(found) = self.standing(&prefix, record, call).await? else { return Ok(Vec::new()) };
        if let Some(mark) = found.as_ref().filter(|m| m.fence > call.token()) {
            let why = format!("prefix {}: a newer reconcile (lease token {}) owns it now", prefix.shown, mark.fence);
            return Err(BlockError::Transient(why));
        }
        let files = self.files(&prefix).await?;
        let left = |note: String| Leftover { place: prefix.place(record), note, purgeable: true };
        if self.config.deletion_policy == DeletionPolicy::Retain {
            let kept = left(format!("prefix {} (the retain policy keeps it)", prefix.shown));
            return Ok(if files.is_empty() { Vec::new() } else { vec![kept] });
        }
        let mark = prefix.mark();
        let data: Vec<&Key> = files.iter().filter(|k| **k != mark).collect();
        if !data.is_empty() {
            // The mark stays: it tells a purge that the files are still what this port left.
            let note = format!("prefix {} ({} file(s) of data: purge them to drop them)", prefix.shown, data.len());
            return Ok(vec![left(note)]);
        }
        if files.contains(&mark) {
            self.store.delete(&mark).await.map_err(|e| BlockError::Transient(e.to_string()))?;
        }
        if let Some(dir) = &prefix.local {
            // Only an empty directory goes; anything else in it stays.
            let _ = std::fs::remove_dir(dir);
        }
        Ok(Vec::new())
    }

    async fn purge_one(&self, place: &str, call: &Call) -> BlockResult<()> {
        let (prefix, left_by) = Prefix::from_place(place).map_err(BlockError::Permanent)?;
        let files = self.files(&prefix).await?;
        let refused = || {
            Err(BlockError::Permanent(format!(
                "prefix {} is not what was left there (a newer port uses it, or it holds another port); it is not purged",
                prefix.shown
            )))
        };
        let still_left = match self.read(&prefix.mark(), &prefix).await? {
            None => files.is_empty(),
            Some(bytes) => match read_mark(&bytes) {
                (Some(mark), _) => {
                    let field = |key: &str| left_by[key].as_str().unwrap_or_default().to_string();
                    mark.installation == call.installation
                        && mark.domain == field("domain")
                        && mark.contract == field("contract")
                        && mark.uid == field("uid")
                }
                // A place an earlier release left, whose mark no newer port has replaced.
                (None, _) => left_by.get("uid").is_none(),
            },
        };
        let nested = files.iter().any(|k| *k != prefix.mark() && k.filename() == Some(MARK));
        if !still_left || nested {
            return refused();
        }
        match prefix.local.as_ref() {
            // The walk found no link, so this removes the port's files and nothing else.
            Some(dir) if dir.exists() => {
                std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()).into())
            }
            Some(_) => Ok(()),
            None => {
                for key in files {
                    self.store
                        .delete(&key)
                        .await
                        .map_err(|e| BlockError::Transient(format!("cannot remove {key}: {e}")))?;
                }
                Ok(())
            }
        }
    }
}

/// What a port declares, as its mark records it.
fn declared(record: &Record, contract: &DataContract, server: &Server) -> serde_json::Value {
    json!({
        "version": record.version, "server": server.server,
        "format": server.format.clone().unwrap_or_else(|| "parquet".into()),
        "schema": contract.objects().iter().map(|o| json!({
            "name": o.name, "physicalName": o.physical_name,
            "properties": o.properties().iter().map(|p| json!({
                "name": p.physical_name.as_deref().unwrap_or(&p.name), "logicalType": p.logical_type,
                "physicalType": p.physical_type, "required": p.required })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The `lake` block type.
impl BlockType for LakeConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.root.trim().is_empty() {
            problems.push(("root", "`root` must not be empty".to_string()));
        }
        if let Some((bucket, _)) = self.s3().filter(|(bucket, _)| bucket.is_empty()) {
            problems.push(("root", format!("`root` names no bucket: `s3://{bucket}`")));
        }
        if self.s3().is_none() && (self.endpoint.is_some() || self.access_key_id.is_some()) {
            problems.push(("root", "S3 settings are given but `root` is not an s3:// URL".into()));
        }
        problems
    }

    fn takes(&self, server_type: &str) -> bool {
        matches!(server_type, "local" | "s3")
    }

    fn foreign_endpoint(&self, server: &Server) -> Option<(&'static str, String, String)> {
        let endpoint = server.endpoint_url.as_ref().filter(|e| Some(*e) != self.endpoint.as_ref())?;
        Some(("endpointUrl", endpoint.clone(), self.endpoint.clone().unwrap_or_else(|| "none".into())))
    }

    fn build(&self, name: &str, platform: &Arc<Platform>, base: &Path) -> Result<Built, String> {
        Ok(Built::Storage(Arc::new(Storage(LakeBlock::new(name, self, Arc::clone(platform), base)?))))
    }

    fn describe(&self) -> serde_json::Value {
        describe(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl ServerStorage for LakeBlock {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn provision_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(self.provision_one(record, contract, server, call))
    }

    fn cleanup_server<'a>(
        &'a self,
        record: &'a Record,
        _: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(self.cleanup_one(record, server, call))
    }

    fn purge_place<'a>(&'a self, place: &'a str, call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(self.purge_one(place, call))
    }

    /// Anyone who can read the folder or bucket can read a port: grants are recorded in the
    /// store, not enforced here.
    fn sync_server_access<'a>(
        &'a self,
        _record: &'a Record,
        _contract: &'a DataContract,
        _server: &'a Server,
        _access: &'a AccessSync,
        _call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<AccessReport>> {
        Box::pin(async { Ok(AccessReport::of(Enforcement::Advisory)) })
    }

    /// The port's files, confined, with the block's S3 settings (never a contract's).
    fn test_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        _valid_for: std::time::Duration,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<TestTarget>> {
        Box::pin(async move {
            let (prefix, locations) = self.locations(contract, server)?;
            match self.standing(&prefix, record, call).await? {
                Standing::Ours(_) => {}
                Standing::Foreign(why) => return Err(BlockError::Permanent(why)),
                Standing::Absent => return Err(format!("prefix {} is not provisioned yet", prefix.shown).into()),
            }
            // A link in the prefix would lead the run's reads out of it.
            self.files(&prefix).await?;
            let files = locations
                .into_iter()
                .map(|(table, l)| FileTarget { table, path: l.path, format: l.format.name().to_string() })
                .collect();
            let s3 = self.config.s3().map(|_| S3Access {
                endpoint: self.s3.endpoint.clone(),
                region: self.s3.region.clone(),
                access_key_id: self.s3.access_key_id.clone(),
                secret_access_key: self.s3.secret_access_key.clone(),
            });
            let delimiter = delimiter(server).map_err(|e| BlockError::Permanent(e.to_string()))?;
            Ok(TestTarget::Files { files, delimiter, s3 })
        })
    }

    fn health_check(&self) -> BlockFuture<'_, Result<(), String>> {
        Box::pin(async {
            match self.config.s3() {
                Some((_, root)) => {
                    let root = Key::from(root);
                    self.store.list(Some(&root)).try_next().await.map(|_| ()).map_err(|e| e.to_string())
                }
                None => {
                    let root = self.local_root().0;
                    let usable = root.is_dir() || !root.exists();
                    if usable { Ok(()) } else { Err(format!("{} is not a directory", root.display())) }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_port_prefix_is_the_directory_before_any_glob_template_or_file_name() {
        for (path, dir) in [
            ("data/orders/", "data/orders"),
            ("data/orders", "data/orders"),
            ("data/orders/*.parquet", "data/orders"),
            ("data/{object}/part-*.csv", "data"),
            ("data/orders/orders.csv", "data/orders"),
            ("s3://b/ports/orders/", "s3://b/ports/orders"),
        ] {
            assert_eq!(super::directory(path), dir, "{path}");
        }
    }

    #[test]
    fn a_located_path_is_cleaned_and_anchored_before_its_glob() {
        for (path, cleaned, anchor) in [
            ("/r/./ports//orders/*.csv", Some("/r/ports/orders/*.csv"), "/r/ports/orders"),
            ("/r/ports/orders*", Some("/r/ports/orders*"), "/r/ports"),
            ("/r/ports/orders/", Some("/r/ports/orders/"), "/r/ports/orders"),
            ("s3://b/ports/o/part-?.csv", Some("s3://b/ports/o/part-?.csv"), "s3://b/ports/o"),
            ("/r/ports/orders/*/../../x/*.csv", None, ""),
            ("s3://b/ports/../x/", None, ""),
        ] {
            assert_eq!(super::cleaned(path).as_deref(), cleaned, "{path}");
            if let Some(cleaned) = cleaned {
                assert_eq!(super::anchor(cleaned), anchor, "{path}");
            }
        }
    }

    #[test]
    fn a_key_is_within_a_root_segment_by_segment() {
        assert!(super::within("ports/orders", "ports"));
        assert!(super::within("ports", "ports/"));
        assert!(super::within("anything", ""));
        assert!(!super::within("ports-old/orders", "ports"));
        assert!(!super::within("port", "ports"));
    }

    #[test]
    fn links_are_resolved_along_the_existing_part_of_a_path() {
        let dir = std::env::temp_dir().join(format!("mplinks-{}", std::process::id()));
        let (inside, outside) = (dir.join("root"), dir.join("elsewhere"));
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("link")).unwrap();
        let real = std::fs::canonicalize(&outside).unwrap();
        assert_eq!(super::resolved(&inside.join("link/not/yet")), real.join("not/yet"));
        assert!(!super::resolved(&inside.join("link")).starts_with(std::fs::canonicalize(&inside).unwrap()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
