//! Where a contract test reads a port's data, as the block that holds the port describes it
//! ([`crate::block::Provisioner::test_target`]): the server never reads where a contract
//! says, only where the bound block says, with the block's credentials — and for PostgreSQL
//! with a login the block makes for the run alone (see the PostgreSQL block).
//!
//! A target is plain data handed to the sandboxed process that runs the test, so its
//! secrets are never printed: `Debug` shows `***`.
//!
//! ```
//! use meshplane_core::checking::{TestTarget, Tls};
//!
//! let target = TestTarget::Postgres {
//!     host: "db".into(), port: 5432, database: "sales".into(), schema: "orders_v1".into(),
//!     user: "mp_ab12_q1".into(), password: "s3cret".into(), tls: Tls::default(),
//! };
//! assert!(!format!("{target:?}").contains("s3cret"));
//! ```

use serde::{Deserialize, Serialize};

/// One object's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTarget {
    /// The object's physical name (what its SQL rules call it).
    pub table: String,
    /// A file, directory or glob, local (absolute) or `s3://bucket/key`, already confined to
    /// the port by the block.
    pub path: String,
    /// `parquet`, `csv` or `json`.
    pub format: String,
}

/// How to reach an S3-compatible store, from the block's configuration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Access {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Access")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// How a PostgreSQL connection is protected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// `disable` (the default), `require` (encrypted, the server not verified) or
    /// `verify-full` (encrypted, the server's certificate and name verified).
    pub mode: String,
    /// The CA certificate (PEM file) that verifies the server, for `verify-full`; the system's
    /// roots otherwise.
    pub root_cert: Option<String>,
}

/// Where a test run reads one server of a contract.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TestTarget {
    /// Files of a lake port.
    Files { files: Vec<FileTarget>, delimiter: u8, s3: Option<S3Access> },
    /// A PostgreSQL port, read as a login made for this run only.
    #[serde(rename_all = "camelCase")]
    Postgres { host: String, port: u16, database: String, schema: String, user: String, password: String, tls: Tls },
}

impl std::fmt::Debug for TestTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestTarget::Files { files, s3, .. } => {
                f.debug_struct("Files").field("files", files).field("s3", s3).finish_non_exhaustive()
            }
            TestTarget::Postgres { host, port, database, schema, user, .. } => f
                .debug_struct("Postgres")
                .field("host", host)
                .field("port", port)
                .field("database", database)
                .field("schema", schema)
                .field("user", user)
                .field("password", &"***")
                .finish_non_exhaustive(),
        }
    }
}
