//! What every storage block shares: a contract concerns a block when one of its servers is
//! bound to it, and it is provisioned and cleaned up server by server. A block says how to
//! handle one server ([`ServerStorage`]); [`Storage`] makes it a [`Provisioner`].

use meshplane_core::access::{AccessReport, AccessSync, Enforcement, Login};
use meshplane_core::block::{BlockError, BlockFuture, BlockResult, Call, Leftover, Provisioned, Provisioner};
use meshplane_core::checking::TestTarget;
use meshplane_core::resource::Kind;
use meshplane_core::store::Record;
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::model::server::Server;

use crate::binding::bind;
use crate::platform::Platform;

/// A storage block, one bound server at a time.
pub trait ServerStorage: Send + Sync {
    fn name(&self) -> &str;

    fn platform(&self) -> &Platform;

    /// Brings one server of the contract in line with it.
    fn provision_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Provisioned>>;

    /// Undoes one server's provisioning by the deletion policy; returns what it left in place.
    fn cleanup_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Vec<Leftover>>>;

    /// Removes, data and all, a place a cleanup left, unless a newer resource uses it.
    fn purge_place<'a>(&'a self, place: &'a str, call: &'a Call) -> BlockFuture<'a, BlockResult<()>>;

    /// Makes the grants on one server's port exactly `access.grants` (by default the block
    /// cannot enforce grants).
    fn sync_server_access<'a>(
        &'a self,
        _record: &'a Record,
        _contract: &'a DataContract,
        _server: &'a Server,
        _access: &'a AccessSync,
        _call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<AccessReport>> {
        Box::pin(async { Ok(AccessReport::of(Enforcement::Unsupported)) })
    }

    /// Where a test run reads one server's port, for `valid_for` (by default the block
    /// cannot say).
    fn test_server<'a>(
        &'a self,
        _record: &'a Record,
        _contract: &'a DataContract,
        server: &'a Server,
        _valid_for: std::time::Duration,
        _call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<TestTarget>> {
        Box::pin(async move {
            Err(BlockError::Unsupported(format!("block `{}` cannot test server `{}`", self.name(), server.server)))
        })
    }

    /// A test run on `target` is over.
    fn end_test_server<'a>(&'a self, _target: &'a TestTarget, _call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Creates the login role of a service account (by default the block cannot).
    fn create_login<'a>(&'a self, _installation: &'a str, account: &'a str) -> BlockFuture<'a, BlockResult<Login>> {
        Box::pin(async move {
            Err(BlockError::Unsupported(format!(
                "block `{}` cannot create logins (asked for `{account}`)",
                self.name()
            )))
        })
    }

    /// Whether the block's store answers.
    fn health_check(&self) -> BlockFuture<'_, Result<(), String>>;

    /// The servers of `contract` bound to this block.
    fn servers<'c>(&self, contract: &'c DataContract) -> Vec<&'c Server> {
        bound(self.platform(), self.name(), contract)
    }
}

/// The servers of `contract` bound to the block `name`.
pub fn bound<'c>(platform: &Platform, name: &str, contract: &'c DataContract) -> Vec<&'c Server> {
    let ours = |(_, b): &(&Server, Result<String, String>)| b.as_deref() == Ok(name);
    bind(platform, contract).into_iter().filter(ours).map(|(s, _)| s).collect()
}

/// A storage block as the reconcilers see it. Each server's answer keeps its class: a
/// refusal of what the contract declares (a path outside the block's root, a place another
/// port holds) is permanent; what the store answers otherwise (out of reach, a lock, a lost
/// connection) is transient, and the controller retries it.
pub struct Storage<T>(pub T);

fn no_contract() -> BlockError {
    BlockError::Permanent("the record holds no contract".into())
}

impl<T: ServerStorage> Provisioner for Storage<T> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn concerns(&self, record: &Record) -> bool {
        record.kind == Kind::DataContract && record.contract().is_some_and(|c| !self.0.servers(c).is_empty())
    }

    fn health(&self) -> BlockFuture<'_, Option<Result<(), String>>> {
        Box::pin(async { Some(self.0.health_check().await) })
    }

    fn provision<'a>(&'a self, record: &'a Record, call: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move {
            let contract = record.contract().ok_or_else(no_contract)?;
            let mut all = Provisioned::default();
            let mut summaries = Vec::new();
            for server in self.0.servers(contract) {
                let one = self.0.provision_server(record, contract, server, call).await?;
                summaries.push(one.summary);
                all.drift.extend(one.drift);
            }
            all.summary = summaries.join("; ");
            Ok(all)
        })
    }

    fn purge<'a>(&'a self, place: &'a str, call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        self.0.purge_place(place, call)
    }

    fn sync_access<'a>(
        &'a self,
        record: &'a Record,
        access: &'a AccessSync,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<AccessReport>> {
        Box::pin(async move {
            let Some(contract) = record.contract() else { return Ok(AccessReport::default()) };
            let mut report = AccessReport::default();
            for server in self.0.servers(contract) {
                report = report.merge(self.0.sync_server_access(record, contract, server, access, call).await?);
            }
            Ok(report)
        })
    }

    fn create_login<'a>(&'a self, installation: &'a str, account: &'a str) -> BlockFuture<'a, BlockResult<Login>> {
        self.0.create_login(installation, account)
    }

    fn test_target<'a>(
        &'a self,
        record: &'a Record,
        server: &'a str,
        valid_for: std::time::Duration,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<TestTarget>> {
        Box::pin(async move {
            let contract = record.contract().ok_or_else(no_contract)?;
            let Some(held) = self.0.servers(contract).into_iter().find(|s| s.server == server) else {
                return Err(BlockError::Permanent(format!(
                    "server `{server}` is not held by block `{}`",
                    self.0.name()
                )));
            };
            self.0.test_server(record, contract, held, valid_for, call).await
        })
    }

    fn end_test<'a>(&'a self, target: &'a TestTarget, call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        self.0.end_test_server(target, call)
    }

    fn cleanup<'a>(&'a self, record: &'a Record, call: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async move {
            let Some(contract) = record.contract() else { return Ok(Vec::new()) };
            let mut kept = Vec::new();
            for server in self.0.servers(contract) {
                kept.extend(self.0.cleanup_server(record, contract, server, call).await?);
            }
            Ok(kept)
        })
    }
}
