//! The lake storage block: a root on the local filesystem or on an S3-compatible store, where
//! each contract server bound to it is a prefix holding the port's Parquet, CSV or NDJSON
//! files.
//!
//! - The server's `path` (local) or `location` (S3) must lie under the block's root; the
//!   port's prefix is its directory part (before any glob or `{object}` template).
//! - Provisioning creates the prefix and records the expected schema in it
//!   (`.meshplane-port`, JSON without an extension, so no data format reads it); it is
//!   idempotent.
//! - Observing reads the schema the files actually have (Parquet metadata; inference for CSV
//!   and NDJSON, through the contract-test engine) and reports as drift every declared column
//!   that is missing or of a type that does not fit, and every column not declared. A port
//!   with no file yet has no drift.
//! - Cleanup follows the deletion policy: `retain` keeps the prefix and reports it; `delete`
//!   removes the schema record, and the prefix if no file is left in it. Data files are never
//!   removed by a cleanup: they are reported as left in place.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use meshplane_core::access::{AccessReport, AccessSync, Enforcement};
use meshplane_core::block::{BlockFuture, Leftover, Provisioned};
use meshplane_core::store::Record;
use meshplane_quality::files::{S3Config, s3_store};
use meshplane_quality::target::file_columns;
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::model::server::Server;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;

use crate::platform::{DeletionPolicy, LakeConfig, Platform};
use crate::storage::ServerStorage;

/// The name of the schema record in a port's prefix.
const RECORD: &str = ".meshplane-port";

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

impl Prefix {
    /// How a cleanup names the prefix, for a purge to find it again.
    fn place(&self) -> String {
        json!({ "key": self.key.as_ref(), "shown": self.shown, "dir": self.local }).to_string()
    }

    fn from_place(place: &str) -> Result<Prefix, String> {
        let at: serde_json::Value =
            serde_json::from_str(place).map_err(|e| format!("`{place}` is not a place of this block: {e}"))?;
        let key = at["key"].as_str().ok_or_else(|| format!("`{place}` names no prefix"))?;
        Ok(Prefix {
            key: Key::from(key),
            shown: at["shown"].as_str().unwrap_or(key).to_string(),
            local: at["dir"].as_str().map(PathBuf::from),
        })
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

    /// The port's prefix, which must lie under the block's root.
    fn prefix(&self, server: &Server) -> Result<Prefix, String> {
        let path = server.path.as_deref().or(server.location.as_deref()).unwrap_or_default();
        let dir = directory(path);
        let outside = || {
            format!("server `{}`: {path} is not under block `{}`'s root {}", server.server, self.name, self.config.root)
        };
        match self.config.s3() {
            Some((bucket, root)) => {
                let key = dir.strip_prefix(&format!("s3://{bucket}/")).ok_or_else(outside)?;
                if !key.starts_with(root.trim_end_matches('/')) {
                    return Err(outside());
                }
                Ok(Prefix { key: Key::from(key), shown: format!("s3://{bucket}/{key}"), local: None })
            }
            None => {
                let root = self.absolute(&self.config.local().unwrap_or_default().to_string_lossy());
                let dir = self.absolute(dir);
                if path.contains("://") || !dir.starts_with(&root) {
                    return Err(outside());
                }
                let key = Key::from_absolute_path(&dir).map_err(|e| e.to_string())?;
                Ok(Prefix { key, shown: dir.display().to_string(), local: Some(dir) })
            }
        }
    }

    async fn provision_one(
        &self,
        record: &Record,
        contract: &DataContract,
        server: &Server,
    ) -> Result<Provisioned, String> {
        let prefix = self.prefix(server)?;
        let marker = prefix.key.clone().join(RECORD);
        let declared = json!({
            "contract": record.name, "version": record.version, "server": server.server,
            "format": server.format.clone().unwrap_or_else(|| "parquet".into()),
            "schema": contract.objects().iter().map(|o| json!({
                "name": o.name, "physicalName": o.physical_name,
                "properties": o.properties().iter().map(|p| json!({
                    "name": p.physical_name.as_deref().unwrap_or(&p.name), "logicalType": p.logical_type,
                    "physicalType": p.physical_type, "required": p.required })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec_pretty(&declared).map_err(|e| e.to_string())?;
        let current = match self.store.get(&marker).await {
            Ok(found) => Some(found.bytes().await.map_err(|e| e.to_string())?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(format!("cannot reach {}: {e}", prefix.shown)),
        };
        let mut summary = format!("prefix {} is as declared", prefix.shown);
        if current.as_deref() != Some(body.as_slice()) {
            if let Some(dir) = &prefix.local {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            self.store.put(&marker, body.into()).await.map_err(|e| format!("cannot write to {}: {e}", prefix.shown))?;
            summary = format!("recorded the schema in {}", prefix.shown);
        }
        let has_data = self.files(&prefix).await?.iter().any(|k| *k != marker);
        let drift = if has_data { self.observe(contract, server).await? } else { Vec::new() };
        Ok(Provisioned { summary, drift })
    }

    /// Where the files differ from the declared schema.
    async fn observe(&self, contract: &DataContract, server: &Server) -> Result<Vec<String>, String> {
        let found = file_columns(contract, server, &self.base, &self.s3).await.map_err(|e| e.to_string())?;
        let mut drift = Vec::new();
        for (object, columns) in found {
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

    /// Every object under the prefix (none when it does not exist).
    async fn files(&self, prefix: &Prefix) -> Result<Vec<Key>, String> {
        let listed = self.store.list(Some(&prefix.key)).map_ok(|meta| meta.location).try_collect().await;
        match listed {
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            other => other.map_err(|e| format!("cannot list {}: {e}", prefix.shown)),
        }
    }

    async fn cleanup_one(&self, server: &Server) -> Result<Vec<Leftover>, String> {
        let prefix = self.prefix(server)?;
        let files = self.files(&prefix).await?;
        let left = |note: String| Leftover { place: prefix.place(), note, purgeable: true };
        if self.config.deletion_policy == DeletionPolicy::Retain {
            let kept = left(format!("prefix {} (the retain policy keeps it)", prefix.shown));
            return Ok(if files.is_empty() { Vec::new() } else { vec![kept] });
        }
        let marker = prefix.key.clone().join(RECORD);
        let data: Vec<&Key> = files.iter().filter(|k| **k != marker).collect();
        if files.contains(&marker) {
            self.store.delete(&marker).await.map_err(|e| e.to_string())?;
        }
        if !data.is_empty() {
            let note = format!("prefix {} ({} file(s) of data: purge them to drop them)", prefix.shown, data.len());
            return Ok(vec![left(note)]);
        }
        if let Some(dir) = &prefix.local {
            // Only an empty directory goes; anything else in it stays.
            let _ = std::fs::remove_dir(dir);
        }
        Ok(Vec::new())
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
    ) -> BlockFuture<'a, Result<Provisioned, String>> {
        Box::pin(self.provision_one(record, contract, server))
    }

    fn cleanup_server<'a>(
        &'a self,
        _: &'a Record,
        _: &'a DataContract,
        server: &'a Server,
    ) -> BlockFuture<'a, Result<Vec<Leftover>, String>> {
        Box::pin(self.cleanup_one(server))
    }

    fn purge_place<'a>(&'a self, place: &'a str) -> BlockFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let prefix = Prefix::from_place(place)?;
            for key in self.files(&prefix).await? {
                self.store.delete(&key).await.map_err(|e| format!("cannot remove {key}: {e}"))?;
            }
            // The files are gone; what is left of the directory is empty folders.
            if let Some(dir) = prefix.local.as_ref().filter(|d| d.exists()) {
                std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
            }
            Ok(())
        })
    }

    /// Anyone who can read the folder or bucket can read a port: grants are recorded in the
    /// store, not enforced here.
    fn sync_server_access<'a>(
        &'a self,
        _record: &'a Record,
        _contract: &'a DataContract,
        _server: &'a Server,
        _access: &'a AccessSync,
    ) -> BlockFuture<'a, Result<AccessReport, String>> {
        Box::pin(async { Ok(AccessReport::of(Enforcement::Advisory)) })
    }

    fn health_check(&self) -> BlockFuture<'_, Result<(), String>> {
        Box::pin(async {
            match self.config.s3() {
                Some((_, root)) => {
                    let root = Key::from(root);
                    self.store.list(Some(&root)).try_next().await.map(|_| ()).map_err(|e| e.to_string())
                }
                None => {
                    let root = self.absolute(&self.config.local().unwrap_or_default().to_string_lossy());
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
}
