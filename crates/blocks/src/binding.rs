//! Which block holds each of a contract's servers.
//!
//! Only the servers of the platform's environment are bound. A server is bound to the block
//! it is named after (`server: warehouse` → the block `warehouse`), or else to the one block
//! whose type takes servers of its type (`postgres` takes `postgres`; `lake` takes `local` and
//! `s3`; an `http` block the types its `serverTypes` lists). A server that no block takes, or
//! that several could take, or whose endpoint fields (PostgreSQL host, port, database; an S3
//! `endpointUrl`) are not its block's, is a binding problem: a condition on the contract,
//! never a guess, and never a connection to where the contract says.

use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::model::server::Server;

use crate::platform::Platform;

/// A server of the platform's environment and the block it is bound to, or why it is not.
pub type Binding<'c> = (&'c Server, Result<String, String>);

/// Every server of `contract` in the platform's environment, with its block.
pub fn bind<'c>(platform: &Platform, contract: &'c DataContract) -> Vec<Binding<'c>> {
    let ours = |s: &&Server| s.environment.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&platform.environment));
    let servers = contract.servers.as_deref().unwrap_or_default().iter().filter(ours);
    servers.map(|server| (server, block_for(platform, server))).collect()
}

fn block_for(platform: &Platform, server: &Server) -> Result<String, String> {
    let bound = choose(platform, server)?;
    let label = format!("server `{}` (type {})", server.server, server.kind);
    let block = platform.blocks.iter().find(|b| b.name == bound).ok_or_else(|| format!("{label}: no block {bound}"))?;
    // The server's endpoint fields must be its block's: a contract never chooses where the
    // server connects.
    if let Some((field, theirs, ours)) = block.config.foreign_endpoint(server) {
        return Err(format!("{label}: {field} {theirs} is not block `{bound}`'s ({ours})"));
    }
    Ok(bound)
}

fn choose(platform: &Platform, server: &Server) -> Result<String, String> {
    let label = format!("server `{}` (type {})", server.server, server.kind);
    if let Some(named) = platform.blocks.iter().find(|b| b.name == server.server) {
        return if named.config.takes(&server.kind.to_ascii_lowercase()) {
            Ok(named.name.clone())
        } else {
            Err(format!("{label}: block `{}` is of type {}, which does not take it", named.name, named.type_name))
        };
    }
    let candidates: Vec<&str> = platform
        .blocks
        .iter()
        .filter(|b| b.config.takes(&server.kind.to_ascii_lowercase()))
        .map(|b| b.name.as_str())
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(format!("{label}: no block of this platform takes {} servers", server.kind)),
        several => Err(format!(
            "{label}: several blocks could take it ({}); name the server after one of them",
            several.join(", ")
        )),
    }
}

/// The binding problems of a stored contract, for its `Bound` condition.
pub fn problems(platform: &Platform, contract: &DataContract) -> Vec<String> {
    bind(platform, contract).into_iter().filter_map(|(_, bound)| bound.err()).collect()
}
