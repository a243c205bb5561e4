//! ODCS `servers`: where a contract's data lives.
//!
//! The standard gives every server type its own set of endpoint fields, some required.
//! One struct holds the union of all of them; [`SERVER_TYPES`] says which fields each type
//! allows and requires, and the decoder reports any other field as unknown for that type.

use serde::Serialize;
use serde_with::skip_serializing_none;

use super::common::{CustomProperty, stable_id};
use super::odcs::Role;
use crate::decode::{At, Cx, Decode, DocVersion, Obj};
use crate::diag::{Code, Diagnostic};
use crate::tree::Node;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub id: Option<String>,
    pub server: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: Option<String>,
    pub environment: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub account: Option<String>,
    pub catalog: Option<String>,
    pub database: Option<String>,
    pub dataset: Option<String>,
    pub delimiter: Option<String>,
    pub endpoint_url: Option<String>,
    pub format: Option<String>,
    pub host: Option<String>,
    pub location: Option<String>,
    pub path: Option<String>,
    pub port: Option<i64>,
    pub project: Option<String>,
    pub region: Option<String>,
    pub region_name: Option<String>,
    pub schema: Option<String>,
    pub service_name: Option<String>,
    pub staging_dir: Option<String>,
    pub stream: Option<String>,
    pub warehouse: Option<String>,
    pub workgroup: Option<String>,
    #[serde(skip)]
    pub at: At,
}

/// One server type: the endpoint fields it allows, those it requires, and the first
/// version of ODCS that knows it.
pub struct ServerType {
    pub name: &'static str,
    pub allowed: &'static [&'static str],
    pub required: &'static [&'static str],
    pub since: DocVersion,
}

const V30: DocVersion = DocVersion::Odcs300;
const V31: DocVersion = DocVersion::Odcs310;

macro_rules! server_types {
    ($( $name:literal $since:ident [$($allowed:literal),*] requires [$($required:literal),*]; )*) => {
        /// Every server type of ODCS v3.2.0 (earlier versions know a subset).
        pub const SERVER_TYPES: &[ServerType] = &[
            $( ServerType { name: $name, allowed: &[$($allowed),*], required: &[$($required),*], since: $since }, )*
        ];
    };
}

server_types! {
    "api" V30 ["location"] requires ["location"];
    "athena" V30 ["stagingDir", "schema", "catalog", "regionName", "workgroup"] requires ["schema"];
    "azure" V30 ["location", "format", "delimiter"] requires ["location", "format"];
    "bigquery" V30 ["project", "dataset"] requires ["project", "dataset"];
    "clickhouse" V30 ["host", "port", "database"] requires ["host", "port", "database"];
    "databricks" V30 ["host", "catalog", "schema"] requires ["catalog", "schema"];
    "denodo" V30 ["host", "port", "database"] requires ["host", "port"];
    "dremio" V30 ["host", "port", "schema"] requires ["host", "port"];
    "duckdb" V30 ["database", "schema"] requires ["database"];
    "glue" V30 ["account", "database", "location", "format"] requires ["account", "database"];
    "cloudsql" V30 ["host", "port", "database", "schema"] requires ["host", "port", "database", "schema"];
    "db2" V30 ["host", "port", "database", "schema"] requires ["host", "port", "database"];
    "hive" V31 ["host", "port", "database"] requires ["host", "database"];
    "impala" V31 ["host", "port", "database"] requires ["host", "database"];
    "informix" V30 ["host", "port", "database"] requires ["host", "database"];
    "kafka" V30 ["host", "format"] requires ["host"];
    "kinesis" V30 ["region", "format"] requires [];
    "local" V30 ["path", "format"] requires ["path", "format"];
    "mysql" V30 ["host", "port", "database"] requires ["host", "port", "database"];
    "oracle" V30 ["host", "port", "serviceName"] requires ["host", "port", "serviceName"];
    "postgresql" V30 ["host", "port", "database", "schema"] requires ["host", "port", "database", "schema"];
    "postgres" V30 ["host", "port", "database", "schema"] requires ["host", "port", "database", "schema"];
    "presto" V30 ["host", "catalog", "schema"] requires ["host"];
    "pubsub" V30 ["project"] requires ["project"];
    "redshift" V30 ["host", "database", "schema", "region", "account"] requires ["database", "schema"];
    "s3" V30 ["location", "endpointUrl", "format", "delimiter"] requires ["location"];
    "sftp" V30 ["location", "format", "delimiter"] requires ["location"];
    "snowflake" V30 ["host", "port", "account", "database", "schema", "warehouse"] requires ["account", "database", "schema"];
    "sqlserver" V30 ["host", "port", "database", "schema"] requires ["host", "database", "schema"];
    "synapse" V30 ["host", "port", "database"] requires ["host", "port", "database"];
    "trino" V30 ["host", "port", "catalog", "schema"] requires ["host", "port", "catalog", "schema"];
    "vertica" V30 ["host", "port", "database", "schema"] requires ["host", "port", "database", "schema"];
    "zen" V31 ["host", "port", "database"] requires ["host", "database"];
    "custom" V30 ["account", "catalog", "database", "dataset", "delimiter", "endpointUrl", "format", "host", "location", "path", "port", "project", "region", "regionName", "schema", "serviceName", "stagingDir", "warehouse", "stream"] requires [];
}

/// Every endpoint field any server type has: the fields that say where the data is.
pub const ENDPOINT_FIELDS: &[&str] = &[
    "account",
    "catalog",
    "database",
    "dataset",
    "delimiter",
    "endpointUrl",
    "format",
    "host",
    "location",
    "path",
    "port",
    "project",
    "region",
    "regionName",
    "schema",
    "serviceName",
    "stagingDir",
    "stream",
    "warehouse",
    "workgroup",
];

impl Decode for Server {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "server")?;
        let id = stable_id(&mut o);
        let server = o.req("server");
        let kind: String = o.req("type");
        let version = o.version();
        let server_type = SERVER_TYPES.iter().find(|t| t.name == kind);
        if let Some(t) = server_type
            && !version.at_least(t.since)
        {
            let span = o.span_of("type");
            o.cx.report(
                Diagnostic::new(
                    Code::NotInVersion,
                    span,
                    format!("server type `{kind}` is not part of ODCS {}", version.api_version()),
                )
                .hint(format!("set `apiVersion: {}` or later", t.since.api_version())),
            );
        }
        if server_type.is_none() && o.has("type") {
            let names: Vec<&str> = SERVER_TYPES.iter().filter(|t| version.at_least(t.since)).map(|t| t.name).collect();
            let span = o.span_of("type");
            o.cx.report(
                Diagnostic::new(
                    Code::InvalidValue,
                    span,
                    format!("`{kind}` is not a server type of ODCS {}", version.api_version()),
                )
                .hint(format!("use one of: {} (or `custom`)", names.join(", "))),
            );
        }
        if let Some(t) = server_type {
            for field in t.required {
                if !o.has(field) {
                    o.missing(field);
                }
            }
            for field in ENDPOINT_FIELDS {
                if o.has(field) && !t.allowed.contains(field) {
                    let span = o.key_span(field);
                    o.cx.report(
                        Diagnostic::new(
                            Code::UnknownField,
                            span,
                            format!("`{field}` is not a field of a server of type `{kind}`"),
                        )
                        .hint(format!("a `{kind}` server has: {}", t.allowed.join(", "))),
                    );
                }
            }
        }
        let mut server = Server {
            id,
            server,
            kind,
            description: o.opt("description"),
            environment: o.opt("environment"),
            roles: o.opt("roles"),
            custom_properties: o.opt("customProperties"),
            account: o.opt("account"),
            catalog: o.opt("catalog"),
            database: o.opt("database"),
            dataset: o.opt("dataset"),
            delimiter: o.opt("delimiter"),
            endpoint_url: o.opt("endpointUrl"),
            format: o.opt("format"),
            host: o.opt("host"),
            location: o.opt("location"),
            path: o.opt("path"),
            port: o.opt("port"),
            project: o.opt("project"),
            region: o.opt("region"),
            region_name: o.opt("regionName"),
            schema: o.opt("schema"),
            service_name: o.opt("serviceName"),
            staging_dir: o.opt("stagingDir"),
            stream: o.since("stream", DocVersion::Odcs310),
            warehouse: o.opt("warehouse"),
            workgroup: o.since("workgroup", DocVersion::Odcs320),
            at: At::default(),
        };
        server.at = o.finish();
        Some(server)
    }
}
