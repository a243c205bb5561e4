//! ODPS data products, v1.0.0 and v0.9.0, as one model.
//!
//! A product's output ports link contracts by `contractId`; its input ports name the
//! contracts it consumes. The ODPS text keys an output port by its name and version, so one
//! product may offer several versions of one port side by side.

use serde::Serialize;
use serde_with::skip_serializing_none;

use super::common::{AuthoritativeDefinition, CustomProperty, Description, Support, Team};
use crate::decode::{At, Cx, Decode, Obj};
use crate::tree::Node;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataProduct {
    pub api_version: String,
    pub kind: String,
    pub id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub status: String,
    pub domain: Option<String>,
    pub tenant: Option<String>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub description: Option<Description>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub tags: Option<Vec<String>>,
    pub input_ports: Option<Vec<InputPort>>,
    pub output_ports: Option<Vec<OutputPort>>,
    pub management_ports: Option<Vec<ManagementPort>>,
    pub support: Option<Vec<Support>>,
    pub team: Option<Team>,
    pub product_created_ts: Option<String>,
    #[serde(skip)]
    pub at: At,
}

impl DataProduct {
    pub fn input_ports(&self) -> &[InputPort] {
        self.input_ports.as_deref().unwrap_or_default()
    }

    pub fn output_ports(&self) -> &[OutputPort] {
        self.output_ports.as_deref().unwrap_or_default()
    }
}

pub(crate) fn decode_product(node: &Node, cx: &mut Cx) -> Option<DataProduct> {
    let mut o = Obj::new(cx, node, "data product")?;
    if matches!(o.node("team").map(|n| &n.value), Some(crate::tree::Value::Seq(_))) {
        o.deprecated("team", "write `team:` as an object with `name` and `members:`");
    }
    let product = DataProduct {
        // `kind` and `apiVersion` were checked when the document was recognised.
        api_version: o.opt("apiVersion").unwrap_or_default(),
        kind: o.opt("kind").unwrap_or_default(),
        id: o.req("id"),
        name: o.opt("name"),
        version: o.opt("version"),
        status: o.req("status"),
        domain: o.opt("domain"),
        tenant: o.opt("tenant"),
        authoritative_definitions: o.opt("authoritativeDefinitions"),
        description: o.opt("description"),
        custom_properties: o.opt("customProperties"),
        tags: o.opt("tags"),
        input_ports: o.opt("inputPorts"),
        output_ports: o.opt("outputPorts"),
        management_ports: o.opt("managementPorts"),
        support: o.opt("support"),
        team: o.opt("team"),
        product_created_ts: o.opt("productCreatedTs"),
        at: At::default(),
    };
    Some(DataProduct { at: o.finish(), ..product })
}

/// A contract this product consumes.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputPort {
    pub name: String,
    pub version: String,
    pub contract_id: String,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for InputPort {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "input port")?;
        let port = InputPort {
            name: o.req("name"),
            version: o.req("version"),
            contract_id: o.req("contractId"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            at: At::default(),
        };
        Some(InputPort { at: o.finish(), ..port })
    }
}

/// What this product offers, under the contract `contractId`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputPort {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub version: String,
    pub contract_id: Option<String>,
    pub sbom: Option<Vec<Sbom>>,
    pub input_contracts: Option<Vec<InputContract>>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for OutputPort {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "output port")?;
        let port = OutputPort {
            name: o.req("name"),
            description: o.opt("description"),
            kind: o.opt("type"),
            version: o.req("version"),
            contract_id: o.opt("contractId"),
            sbom: o.opt("sbom"),
            input_contracts: o.opt("inputContracts"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            at: At::default(),
        };
        Some(OutputPort { at: o.finish(), ..port })
    }
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sbom {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: String,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Sbom {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "SBOM")?;
        let sbom = Sbom { kind: o.opt("type"), url: o.req("url"), at: At::default() };
        Some(Sbom { at: o.finish(), ..sbom })
    }
}

/// A contract an output port is derived from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InputContract {
    pub id: String,
    pub version: String,
    #[serde(skip)]
    pub at: At,
}

impl Decode for InputContract {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "input contract")?;
        let contract = InputContract { id: o.req("id"), version: o.req("version"), at: At::default() };
        Some(InputContract { at: o.finish(), ..contract })
    }
}

/// An access point for managing the product (a topic, a REST endpoint...).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementPort {
    pub name: String,
    pub content: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub channel: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for ManagementPort {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "management port")?;
        let port = ManagementPort {
            name: o.req("name"),
            content: o.req("content"),
            kind: o.opt("type"),
            url: o.opt("url"),
            channel: o.opt("channel"),
            description: o.opt("description"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            at: At::default(),
        };
        Some(ManagementPort { at: o.finish(), ..port })
    }
}
