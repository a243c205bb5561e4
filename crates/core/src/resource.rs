//! What the registry stores, and how it tells resources apart.
//!
//! Identity follows the standards: a data contract is keyed by its `id` and major version
//! (`orders@v2`), so major versions coexist while a minor or patch replaces the previous one
//! of its major; a data product is keyed by its `id`. A version that is not semantic is its
//! own major (`orders@v2024-q1`).

use serde::Serialize;
use serde_json::Value as Any;

use meshplane_spec::model::common::Team;
use meshplane_spec::version::SemVer;
use meshplane_spec::{Diagnostic, Document, Loaded};

use crate::error::{Error, ErrorCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    DataContract,
    DataProduct,
    /// A Rego policy (`apiVersion: meshplane/v1`), keyed by its id.
    Policy,
    /// Resources a policy does not judge, until a time; keyed by its id.
    PolicyExemption,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DataContract => "DataContract",
            Kind::DataProduct => "DataProduct",
            Kind::Policy => "Policy",
            Kind::PolicyExemption => "PolicyExemption",
        }
    }

    /// Every kind, in the order the reconcilers start them.
    pub const ALL: [Kind; 4] = [Kind::Policy, Kind::PolicyExemption, Kind::DataContract, Kind::DataProduct];

    /// Whether it is a kind of governance (policies and their exemptions), which judges the
    /// catalog's resources rather than being one of them.
    pub fn governs(self) -> bool {
        matches!(self, Kind::Policy | Kind::PolicyExemption)
    }

    /// A kind by its name or the CLI's plural (`contracts`, `products`, `policies`).
    pub fn parse(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "datacontract" | "contract" | "contracts" => Some(Kind::DataContract),
            "dataproduct" | "product" | "products" => Some(Kind::DataProduct),
            "policy" | "policies" => Some(Kind::Policy),
            "policyexemption" | "exemption" | "exemptions" => Some(Kind::PolicyExemption),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which resource: its kind and its key within the kind (for a contract the key carries the
/// major version, `orders@v2`, since majors are resources of their own). Written
/// `DataContract/orders@v2` in queue keys, events, audit lines and log spans, and parsed back
/// from that form.
///
/// ```
/// use meshplane_core::resource::{Kind, ObjectRef};
///
/// let at: ObjectRef = "DataContract/orders@v2".parse().unwrap();
/// assert_eq!(at, ObjectRef::new(Kind::DataContract, "orders@v2"));
/// assert_eq!(at.to_string(), "DataContract/orders@v2");
/// assert!("Dataset/x".parse::<ObjectRef>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, name: impl Into<String>) -> ObjectRef {
        ObjectRef { kind, name: name.into() }
    }

    /// The contract of a contract key (`orders@v2` → `orders`); a product's key is its id.
    pub fn id(&self) -> &str {
        self.name.split('@').next().unwrap_or_default()
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl std::str::FromStr for ObjectRef {
    type Err = String;

    fn from_str(text: &str) -> Result<ObjectRef, String> {
        let (kind, name) = text.split_once('/').ok_or_else(|| format!("`{text}` is not KIND/NAME"))?;
        let kind = Kind::parse(kind).ok_or_else(|| format!("`{kind}` is not a kind of resource"))?;
        if name.is_empty() {
            return Err(format!("`{text}` names no resource"));
        }
        Ok(ObjectRef::new(kind, name))
    }
}

/// A port of a stored product that names a contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortLink {
    pub port: String,
    pub contract_id: String,
    /// An input port (the product consumes the contract); otherwise an output port.
    pub input: bool,
}

/// The ports of a product document, as stored (JSON), that name a contract: inputs first.
pub fn port_links(spec: &Any) -> Vec<PortLink> {
    [("inputPorts", true), ("outputPorts", false)]
        .into_iter()
        .flat_map(|(field, input)| {
            spec.get(field).and_then(Any::as_array).into_iter().flatten().filter_map(move |p| {
                Some(PortLink {
                    port: p.get("name").and_then(Any::as_str).unwrap_or("?").to_string(),
                    contract_id: p.get("contractId").and_then(Any::as_str)?.to_string(),
                    input,
                })
            })
        })
        .collect()
}

/// Who owns a document, as stored (JSON): its team's name (a group) and the usernames of its
/// members who have not left (no `dateOut`, or one still ahead). Recorded when a resource is
/// created; authorization reads that record, never a later document's team.
pub fn owners(spec: &Any) -> Vec<String> {
    let today = crate::store::now().get(..10).unwrap_or_default().to_string();
    let team = spec.get("team");
    let members = team.and_then(|t| t.get("members")).or(team.filter(|t| t.is_array()));
    let usernames = members.and_then(Any::as_array).into_iter().flatten().filter_map(|m| {
        let left =
            m.get("dateOut").and_then(Any::as_str).is_some_and(|out| out.get(..10).unwrap_or(out) < today.as_str());
        m.get("username").and_then(Any::as_str).filter(|_| !left)
    });
    let name = team.and_then(|t| t.get("name")).and_then(Any::as_str);
    let mut all: Vec<String> = name.into_iter().chain(usernames).map(str::to_string).collect();
    all.sort();
    all.dedup();
    all
}

/// A document ready to be stored: its identity, ownership and content.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: Kind,
    /// The key within the kind: `id@vMAJOR` for contracts, `id` for products.
    pub name: String,
    pub id: String,
    pub version: String,
    pub status: String,
    pub domain: String,
    /// The team's name (or its members' usernames, joined), as the document states it.
    pub team: Option<String>,
    pub tags: Vec<String>,
    /// The document as JSON, canonical (serialized from the model).
    pub spec: Any,
    pub document: Document,
}

/// The key of a contract version: its id and major version.
pub fn contract_name(id: &str, version: &str) -> String {
    match SemVer::parse(version) {
        Some(v) => format!("{id}@v{}", v.major),
        None => format!("{id}@v{}", version.trim().trim_start_matches(['v', 'V'])),
    }
}

fn team_name(team: &Option<Team>) -> Option<String> {
    match team.as_ref()? {
        Team::Team(info) => info.name.clone().or_else(|| info.id.clone()),
        Team::Members(members) => Some(members.iter().map(|m| m.username.as_str()).collect::<Vec<_>>().join(",")),
    }
}

/// The longest id, domain or version the server keys resources by.
pub const MAX_KEY: usize = 200;

/// Refuses an id, domain or version the server could not use as a key (in names, paths,
/// markers in the stores, queue keys): 1 to [`MAX_KEY`] ASCII letters, digits and the
/// characters `allowed`, not starting with one of those, and never `..`. Says where it is.
fn check_key(loaded: &Loaded, field: &str, value: &str, allowed: &str) -> Result<(), Error> {
    let fine = !value.is_empty()
        && value.len() <= MAX_KEY
        && value.chars().all(|c| c.is_ascii_alphanumeric() || allowed.contains(c))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !value.contains("..");
    if fine {
        return Ok(());
    }
    let at = loaded.node.get(field).map(|n| n.span.start);
    let shown: String = value.chars().take(60).flat_map(char::escape_debug).collect();
    let message = format!(
        "`{field}` `{shown}` cannot be a key on the server: use 1 to {MAX_KEY} letters, digits and `{}`, \
         starting with a letter or digit, without `..`",
        allowed.chars().map(String::from).collect::<Vec<_>>().join("`, `")
    );
    let details = serde_json::json!([{
        "field": field, "message": message,
        "line": at.map(|p| p.line), "column": at.map(|p| p.col),
    }]);
    Err(Error::Invalid { code: ErrorCode::InvalidDocument, message, details })
}

impl Resource {
    /// The resource of a loaded document, or why the server will not store it: lint errors
    /// (with their positions), an unknown kind, or no `domain`.
    pub fn from_loaded(loaded: &Loaded) -> Result<Resource, Error> {
        let errors: Vec<&Diagnostic> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
        if !errors.is_empty() {
            let details = Any::Array(errors.iter().map(|d| d.to_json()).collect());
            let message = format!("the document has {} error(s)", errors.len());
            return Err(Error::Invalid { code: ErrorCode::InvalidDocument, message, details });
        }
        let Some(document) = loaded.document.clone() else {
            return Err(Error::invalid(
                ErrorCode::UnsupportedKind,
                "the document is neither a DataContract, a DataProduct, a Policy nor a PolicyExemption",
            ));
        };
        let (kind, id, version, status, domain, team, tags, spec) = match &document {
            Document::Contract(c) => (
                Kind::DataContract,
                c.id.clone(),
                c.version.clone(),
                c.status.clone().unwrap_or_else(|| "draft".into()),
                c.domain.clone(),
                team_name(&c.team),
                c.tags.clone().unwrap_or_default(),
                serde_json::to_value(c),
            ),
            Document::Product(p) => (
                Kind::DataProduct,
                p.id.clone(),
                p.version.clone().unwrap_or_default(),
                p.status.clone(),
                p.domain.clone(),
                team_name(&p.team),
                p.tags.clone().unwrap_or_default(),
                serde_json::to_value(p),
            ),
            Document::Policy(p) => {
                // Only what can be checked without parsing: a server parses a module in a
                // policy worker, once the caller may write it (`governance::trial`).
                if let Err(problems) = meshplane_policy::prescan(p) {
                    let details = Any::Array(problems.iter().map(|d| d.to_json()).collect());
                    let message = format!("the policy's Rego module does not compile ({} problem(s))", problems.len());
                    return Err(Error::Invalid { code: ErrorCode::InvalidDocument, message, details });
                }
                (
                    Kind::Policy,
                    p.id.clone(),
                    p.version.clone(),
                    "active".to_string(),
                    p.domain.clone(),
                    team_name(&p.team),
                    p.tags.clone().unwrap_or_default(),
                    serde_json::to_value(p),
                )
            }
            Document::Exemption(e) => {
                if crate::store::epoch_ms(&e.expires).is_none() {
                    let at = e.at.field("expires").start;
                    let message =
                        format!("`expires` `{}` is not an RFC 3339 time (e.g. 2027-03-31T00:00:00Z)", e.expires);
                    let details = serde_json::json!([{ "field": "expires", "message": message, "line": at.line, "column": at.col }]);
                    return Err(Error::Invalid { code: ErrorCode::InvalidDocument, message, details });
                }
                (
                    Kind::PolicyExemption,
                    e.id.clone(),
                    e.version.clone(),
                    "active".to_string(),
                    e.domain.clone(),
                    None,
                    Vec::new(),
                    serde_json::to_value(e),
                )
            }
        };
        let domain = domain.filter(|d| !d.trim().is_empty()).ok_or_else(|| {
            Error::invalid(
                ErrorCode::MissingDomain,
                format!("{} `{id}` names no `domain`; the server needs one to record who owns it", kind.as_str()),
            )
        })?;
        check_key(loaded, "id", &id, "-_.:")?;
        check_key(loaded, "domain", &domain, "-_.")?;
        if !version.is_empty() {
            check_key(loaded, "version", &version, "-_.+")?;
        }
        let name = if kind == Kind::DataContract { contract_name(&id, &version) } else { id.clone() };
        Ok(Resource {
            kind,
            name,
            id,
            version,
            status,
            domain,
            team,
            tags,
            spec: spec.map_err(|e| Error::Store(e.to_string()))?,
            document,
        })
    }

    /// Whether the version may still change in place (`draft` or `proposed`).
    pub fn is_draft(status: &str) -> bool {
        matches!(status, "draft" | "proposed")
    }
}
