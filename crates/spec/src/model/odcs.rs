//! ODCS data contracts, v3.0.x, v3.1.0 and v3.2.0, as one model.
//!
//! The model is the union of the three versions; the decoder allows exactly the fields of
//! the document's own `apiVersion` (a v3.1.0 contract may not use `enum`, added in v3.2.0).
//! Every declared field is kept, so serializing a model and reading it again gives the same
//! model. Free-form values (`customProperties` values, `examples`, operator values,
//! `arguments`, `logicalTypeOptions`) are kept as JSON values exactly as written.

use serde::Serialize;
use serde_json::Value as Any;
use serde_with::skip_serializing_none;

use super::common::{AuthoritativeDefinition, CustomProperty, Description, Support, Team, stable_id};
use super::server::Server;
use crate::decode::{AnyMap, At, Cx, Decode, DocVersion, Obj, scalar};
use crate::diag::{Code, Diagnostic};
use crate::tree::{Node, Value};

const V31: DocVersion = DocVersion::Odcs310;
const V32: DocVersion = DocVersion::Odcs320;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataContract {
    pub api_version: String,
    pub kind: String,
    pub id: String,
    pub version: String,
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub tags: Option<Vec<String>>,
    pub status: Option<String>,
    pub servers: Option<Vec<Server>>,
    pub data_product: Option<String>,
    pub description: Option<Description>,
    pub domain: Option<String>,
    pub context: Option<Context>,
    pub schema: Option<Vec<SchemaObject>>,
    pub support: Option<Vec<Support>>,
    pub price: Option<Pricing>,
    pub team: Option<Team>,
    pub roles: Option<Vec<Role>>,
    pub sla_default_element: Option<String>,
    pub sla_properties: Option<Vec<SlaProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub contract_created_ts: Option<String>,
    #[serde(skip)]
    pub at: At,
}

impl DataContract {
    pub fn objects(&self) -> &[SchemaObject] {
        self.schema.as_deref().unwrap_or_default()
    }

    pub fn object(&self, name: &str) -> Option<&SchemaObject> {
        self.objects().iter().find(|o| o.name == name)
    }
}

/// Decodes a contract whose apiVersion has already been recognised as `cx.version`.
pub(crate) fn decode_contract(node: &Node, cx: &mut Cx) -> Option<DataContract> {
    let mut o = Obj::new(cx, node, "data contract")?;
    let v = o.version();
    // v3.0.x and v3.1.0 require `status`; v3.2.0 made it optional.
    let status = if v.at_least(V32) { o.opt("status") } else { Some(o.req("status")) };
    if v == DocVersion::Odcs310 {
        o.deprecated("dataProduct", "name the data product in an ODPS document whose output port links this contract");
    }
    o.deprecated("slaDefaultElement", "give each SLA property its own `element`");
    if v.at_least(V31) && matches!(o.node("team").map(|n| &n.value), Some(Value::Seq(_))) {
        o.deprecated(
            "team",
            "write `team:` as an object with `name` and `members:` (the list form goes away in ODCS 4.0)",
        );
    }
    let team: Option<Team> = o.opt("team");
    if let Some(Team::Team(_)) = &team
        && !v.at_least(V31)
    {
        let span = o.key_span("team");
        o.cx.report(
            Diagnostic::new(
                Code::NotInVersion,
                span,
                format!("in ODCS {} `team` is a list of members; the object form came in v3.1.0", v.api_version()),
            )
            .hint("set `apiVersion: v3.1.0` or later, or write the members as a list"),
        );
    }
    let contract = DataContract {
        // `kind` and `apiVersion` were checked when the document was recognised.
        api_version: o.opt("apiVersion").unwrap_or_default(),
        kind: o.opt("kind").unwrap_or_default(),
        id: o.req("id"),
        version: o.req("version"),
        name: o.opt("name"),
        tenant: o.opt("tenant"),
        tags: o.opt("tags"),
        status,
        servers: o.opt("servers"),
        data_product: o.opt("dataProduct"),
        description: o.opt("description"),
        domain: o.opt("domain"),
        context: o.since("context", V32),
        schema: o.opt("schema"),
        support: o.opt("support"),
        price: o.opt("price"),
        team,
        roles: o.opt("roles"),
        sla_default_element: o.opt("slaDefaultElement"),
        sla_properties: o.opt("slaProperties"),
        authoritative_definitions: o.opt("authoritativeDefinitions"),
        custom_properties: o.opt("customProperties"),
        contract_created_ts: o.opt("contractCreatedTs"),
        at: At::default(),
    };
    Some(DataContract { at: o.finish(), ..contract })
}

/// AI and semantic context (v3.2.0): a plain instruction, or the structured block.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Context {
    Instructions(String),
    Block(ContextBlock),
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextBlock {
    pub instructions: Option<String>,
    pub verified_statements: Option<Vec<VerifiedStatement>>,
    pub constraints: Option<Vec<ContextConstraint>>,
    #[serde(skip)]
    pub at: At,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedStatement {
    pub id: Option<String>,
    pub question: String,
    pub answer: Option<String>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextConstraint {
    pub id: Option<String>,
    pub constraint: String,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Context {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        if let Value::Str(s) = &node.value {
            return Some(Context::Instructions(s.clone()));
        }
        let mut o = Obj::new(cx, node, "context")?;
        let block = ContextBlock {
            instructions: o.opt("instructions"),
            verified_statements: o.opt("verifiedStatements"),
            constraints: o.opt("constraints"),
            at: At::default(),
        };
        Some(Context::Block(ContextBlock { at: o.finish(), ..block }))
    }
}

impl Decode for VerifiedStatement {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "verified statement")?;
        let s = VerifiedStatement {
            id: o.opt("id"),
            question: o.req("question"),
            answer: o.opt("answer"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            at: At::default(),
        };
        Some(VerifiedStatement { at: o.finish(), ..s })
    }
}

impl Decode for ContextConstraint {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "context constraint")?;
        let c = ContextConstraint {
            id: o.opt("id"),
            constraint: o.req("constraint"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            at: At::default(),
        };
        Some(ContextConstraint { at: o.finish(), ..c })
    }
}

/// One schema object: a table, a view, a topic, a document...
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaObject {
    pub id: Option<String>,
    pub name: String,
    pub physical_name: Option<String>,
    pub physical_type: Option<String>,
    pub description: Option<String>,
    pub business_name: Option<String>,
    pub synonyms: Option<Vec<Synonym>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub logical_type: Option<String>,
    pub data_granularity_description: Option<String>,
    pub properties: Option<Vec<Property>>,
    pub relationships: Option<Vec<Relationship>>,
    pub quality: Option<Vec<Quality>>,
    pub context: Option<Context>,
    #[serde(skip)]
    pub at: At,
}

impl SchemaObject {
    pub fn properties(&self) -> &[Property] {
        self.properties.as_deref().unwrap_or_default()
    }

    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties().iter().find(|p| p.name == name)
    }

    pub fn rules(&self) -> &[Quality] {
        self.quality.as_deref().unwrap_or_default()
    }
}

impl Decode for SchemaObject {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "schema object")?;
        let object = SchemaObject {
            id: stable_id(&mut o),
            name: o.req("name"),
            physical_name: o.opt("physicalName"),
            physical_type: o.opt("physicalType"),
            description: o.opt("description"),
            business_name: o.opt("businessName"),
            synonyms: o.since("synonyms", V32),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            logical_type: o.one_of("logicalType", &["object"]),
            data_granularity_description: o.opt("dataGranularityDescription"),
            properties: o.opt("properties"),
            relationships: o
                .since::<Vec<SchemaRelationship>>("relationships", V31)
                .map(|r| r.into_iter().map(|r| r.0).collect()),
            quality: o.opt("quality"),
            context: o.since("context", V32),
            at: At::default(),
        };
        Some(SchemaObject { at: o.finish(), ..object })
    }
}

/// The logical types of ODCS properties, with the version that introduced each.
pub const LOGICAL_TYPES: &[(&str, DocVersion)] = &[
    ("string", DocVersion::Odcs300),
    ("date", DocVersion::Odcs300),
    ("timestamp", V32),
    ("time", V32),
    ("number", DocVersion::Odcs300),
    ("integer", DocVersion::Odcs300),
    ("object", DocVersion::Odcs300),
    ("array", DocVersion::Odcs300),
    ("boolean", DocVersion::Odcs300),
    ("map", V32),
];

/// A property of an object, an array's `items`, or a map's `key` or `value`. Only a
/// property of an object has a name; for the others `name` is empty.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub id: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub physical_type: Option<String>,
    pub description: Option<String>,
    pub business_name: Option<String>,
    pub synonyms: Option<Vec<Synonym>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub primary_key: Option<bool>,
    pub primary_key_position: Option<i64>,
    pub logical_type: Option<String>,
    pub logical_type_options: Option<AnyMap>,
    pub physical_name: Option<String>,
    pub required: Option<bool>,
    pub unique: Option<bool>,
    pub semantic_type: Option<String>,
    pub partitioned: Option<bool>,
    pub partition_key_position: Option<i64>,
    pub classification: Option<String>,
    pub encrypted_name: Option<String>,
    pub transform_source_objects: Option<Vec<String>>,
    pub transform_logic: Option<String>,
    pub transform_description: Option<String>,
    pub examples: Option<Vec<Any>>,
    #[serde(rename = "enum")]
    pub enum_values: Option<Vec<EnumValue>>,
    pub critical_data_element: Option<bool>,
    pub relationships: Option<Vec<Relationship>>,
    pub quality: Option<Vec<Quality>>,
    pub properties: Option<Vec<Property>>,
    pub items: Option<Box<Property>>,
    pub map: Option<Box<MapType>>,
    #[serde(skip)]
    pub at: At,
}

impl Property {
    pub fn rules(&self) -> &[Quality] {
        self.quality.as_deref().unwrap_or_default()
    }

    /// A logicalTypeOptions entry, when present.
    pub fn option(&self, key: &str) -> Option<&Any> {
        self.logical_type_options.as_ref()?.get(key)
    }
}

/// A map's key and value definitions (v3.2.0).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MapType {
    pub key: Property,
    pub value: Property,
    #[serde(skip)]
    pub at: At,
}

impl Decode for MapType {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "map definition")?;
        if !o.has("key") {
            o.missing("key");
        }
        if !o.has("value") {
            o.missing("value");
        }
        let key = o.opt_with("key", |n, cx| decode_property(n, cx, false)).unwrap_or_default();
        let value = o.opt_with("value", |n, cx| decode_property(n, cx, false)).unwrap_or_default();
        Some(MapType { key, value, at: o.finish() })
    }
}

impl Decode for Property {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        decode_property(node, cx, true)
    }
}

fn decode_property(node: &Node, cx: &mut Cx, named: bool) -> Option<Property> {
    let mut o = Obj::new(cx, node, if named { "property" } else { "item definition" })?;
    let logical_type = o.opt::<String>("logicalType");
    if let Some(t) = &logical_type {
        let v = o.version();
        let span = o.span_of("logicalType");
        match LOGICAL_TYPES.iter().find(|(name, _)| name == t) {
            Some((_, since)) if !v.at_least(*since) => o.cx.report(
                Diagnostic::new(
                    Code::NotInVersion,
                    span,
                    format!("logicalType `{t}` is not part of ODCS {}", v.api_version()),
                )
                .hint(format!("set `apiVersion: {}` or later", since.api_version())),
            ),
            Some(_) => {}
            None => {
                let names: Vec<&str> = LOGICAL_TYPES.iter().filter(|(_, s)| v.at_least(*s)).map(|(n, _)| *n).collect();
                o.cx.report(
                    Diagnostic::new(
                        Code::InvalidValue,
                        span,
                        format!("`{t}` is not a logicalType of ODCS {}", v.api_version()),
                    )
                    .hint(format!("use one of: {}", names.join(", "))),
                );
            }
        }
    }
    let lt = logical_type.as_deref();
    let options = o.opt_with("logicalTypeOptions", |n, cx| decode_type_options(n, cx, lt));
    // `properties` belong to objects (and to item definitions), `items` to arrays, `map` to maps.
    let properties = if named && lt.is_some_and(|t| t != "object") {
        shape_field(&mut o, "properties", lt, "object")
    } else {
        o.opt("properties")
    };
    let items = if lt.is_some_and(|t| t != "array") {
        shape_field(&mut o, "items", lt, "array")
    } else {
        o.opt_with("items", |n, cx| decode_property(n, cx, false).map(Box::new))
    };
    let map = if lt.is_some_and(|t| t != "map") { shape_field(&mut o, "map", lt, "map") } else { o.since("map", V32) };
    let property = Property {
        id: stable_id(&mut o),
        name: if named { o.req("name") } else { o.opt("name").unwrap_or_default() },
        physical_type: o.opt("physicalType"),
        description: o.opt("description"),
        business_name: o.opt("businessName"),
        synonyms: o.since("synonyms", V32),
        authoritative_definitions: o.opt("authoritativeDefinitions"),
        tags: o.opt("tags"),
        custom_properties: o.opt("customProperties"),
        primary_key: o.opt("primaryKey"),
        primary_key_position: o.opt("primaryKeyPosition"),
        logical_type,
        logical_type_options: options,
        physical_name: o.opt("physicalName"),
        required: o.opt("required"),
        unique: o.opt("unique"),
        semantic_type: if o.has("semanticType") && !o.version().at_least(V32) {
            o.since("semanticType", V32)
        } else {
            o.one_of("semanticType", &["column", "measure", "dimension"])
        },
        partitioned: o.opt("partitioned"),
        partition_key_position: o.opt("partitionKeyPosition"),
        classification: o.opt("classification"),
        encrypted_name: o.opt("encryptedName"),
        transform_source_objects: o.opt("transformSourceObjects"),
        transform_logic: o.opt("transformLogic"),
        transform_description: o.opt("transformDescription"),
        examples: o.opt("examples"),
        enum_values: o.since("enum", V32),
        critical_data_element: o.opt("criticalDataElement"),
        relationships: o
            .since::<Vec<PropertyRelationship>>("relationships", V31)
            .map(|r| r.into_iter().map(|r| r.0).collect()),
        quality: o.opt("quality"),
        properties,
        items,
        map,
        at: At::default(),
    };
    Some(Property { at: o.finish(), ..property })
}

/// Reports a structural field used on a property of another logicalType.
fn shape_field<T>(o: &mut Obj, key: &'static str, actual: Option<&str>, needs: &str) -> Option<T> {
    if o.has(key) {
        let span = o.key_span(key);
        o.skip(key);
        o.cx.report(
            Diagnostic::new(
                Code::TypeOptionMismatch,
                span,
                format!("`{key}` applies to logicalType {needs}, but this property is {}", actual.unwrap_or("untyped")),
            )
            .hint(format!("set `logicalType: {needs}` or remove `{key}`")),
        );
    }
    None
}

/// The kind of value a logicalTypeOptions entry takes.
#[derive(Clone, Copy, PartialEq)]
enum OptionKind {
    NonNegativeInt,
    PositiveNumber,
    Text,
    Bool,
    TextList,
    /// A bound: a number for numeric types, a string for dates and times.
    Bound,
}

/// Which logicalTypeOptions apply to which logical types.
const TYPE_OPTIONS: &[(&str, OptionKind, &[&str])] = &[
    ("minLength", OptionKind::NonNegativeInt, &["string"]),
    ("maxLength", OptionKind::NonNegativeInt, &["string"]),
    ("pattern", OptionKind::Text, &["string"]),
    ("format", OptionKind::Text, &["string", "date", "timestamp", "time", "integer", "number"]),
    ("minimum", OptionKind::Bound, &["date", "timestamp", "time", "integer", "number"]),
    ("maximum", OptionKind::Bound, &["date", "timestamp", "time", "integer", "number"]),
    ("exclusiveMinimum", OptionKind::Bound, &["date", "timestamp", "time", "integer", "number"]),
    ("exclusiveMaximum", OptionKind::Bound, &["date", "timestamp", "time", "integer", "number"]),
    ("timezone", OptionKind::Bool, &["timestamp", "time"]),
    ("defaultTimezone", OptionKind::Text, &["timestamp", "time"]),
    ("multipleOf", OptionKind::PositiveNumber, &["integer", "number"]),
    ("maxProperties", OptionKind::NonNegativeInt, &["object"]),
    ("minProperties", OptionKind::NonNegativeInt, &["object"]),
    ("required", OptionKind::TextList, &["object"]),
    ("maxItems", OptionKind::NonNegativeInt, &["array"]),
    ("minItems", OptionKind::NonNegativeInt, &["array"]),
    ("uniqueItems", OptionKind::Bool, &["array"]),
];

const INTEGER_FORMATS: &[&str] = &["i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "u128"];
const NUMBER_FORMATS: &[&str] = &["f32", "f64"];

/// Decodes logicalTypeOptions, checking each entry against the logical type and the kind of
/// value it takes. Entries are kept as written (the mapping is lossless).
fn decode_type_options(node: &Node, cx: &mut Cx, logical_type: Option<&str>) -> Option<AnyMap> {
    let entries = match node.entries() {
        Some(entries) => entries,
        None => {
            cx.report(Diagnostic::new(
                Code::WrongType,
                node.span,
                format!("expected a mapping, found {}", node.value.type_name()),
            ));
            return None;
        }
    };
    for entry in entries {
        let key = entry.key.as_str();
        let Some((_, kind, types)) = TYPE_OPTIONS.iter().find(|(k, ..)| *k == key) else {
            // Types without options in the standard (boolean, map, untyped) leave the mapping open.
            if matches!(logical_type, Some(t) if TYPE_OPTIONS.iter().any(|(_, _, ts)| ts.contains(&t))) {
                cx.report(Diagnostic::new(
                    Code::UnknownField,
                    entry.key_span,
                    format!(
                        "unknown logicalTypeOptions entry `{key}` for logicalType {}",
                        logical_type.unwrap_or_default()
                    ),
                ));
            }
            continue;
        };
        if let Some(t) = logical_type
            && !types.contains(&t)
        {
            cx.report(
                Diagnostic::new(
                    Code::TypeOptionMismatch,
                    entry.key_span,
                    format!("`{key}` does not apply to logicalType {t}"),
                )
                .hint(format!("`{key}` applies to: {}", types.join(", "))),
            );
            continue;
        }
        check_option_value(cx, &entry.value, key, *kind, logical_type);
    }
    check_option_conflicts(cx, node);
    AnyMap::decode(node, cx)
}

fn check_option_value(cx: &mut Cx, value: &Node, key: &str, kind: OptionKind, logical_type: Option<&str>) {
    let numeric_type = matches!(logical_type, Some("integer" | "number"));
    let ok = match (kind, &value.value) {
        (OptionKind::NonNegativeInt, Value::Int(i)) => *i >= 0,
        (OptionKind::PositiveNumber, Value::Int(i)) => *i > 0,
        (OptionKind::PositiveNumber, Value::Float(f)) => *f > 0.0,
        (OptionKind::Text, Value::Str(_)) | (OptionKind::Bool, Value::Bool(_)) => true,
        (OptionKind::TextList, Value::Seq(items)) => !items.is_empty() && items.iter().all(|i| i.as_str().is_some()),
        (OptionKind::Bound, Value::Int(_) | Value::Float(_)) => numeric_type || logical_type.is_none(),
        (OptionKind::Bound, Value::Str(_)) => !numeric_type,
        _ => false,
    };
    if !ok {
        let expected = match kind {
            OptionKind::NonNegativeInt => "an integer of 0 or more".to_string(),
            OptionKind::PositiveNumber => "a number greater than 0".to_string(),
            OptionKind::Text => "a string".to_string(),
            OptionKind::Bool => "true or false".to_string(),
            OptionKind::TextList => "a non-empty list of property names".to_string(),
            OptionKind::Bound if numeric_type => "a number".to_string(),
            OptionKind::Bound => format!("a string (a {} value)", logical_type.unwrap_or("date")),
        };
        cx.report(Diagnostic::new(
            Code::WrongType,
            value.span,
            format!("`{key}` must be {expected}, found {}", value.value.type_name()),
        ));
        return;
    }
    if key == "format" {
        let allowed = match logical_type {
            Some("integer") => INTEGER_FORMATS,
            Some("number") => NUMBER_FORMATS,
            _ => return,
        };
        if let Some(f) = value.as_str()
            && !allowed.contains(&f)
        {
            cx.report(
                Diagnostic::new(
                    Code::InvalidValue,
                    value.span,
                    format!("`{f}` is not a format of logicalType {}", logical_type.unwrap_or_default()),
                )
                .hint(format!("use one of: {}", allowed.join(", "))),
            );
        }
    }
}

/// minLength > maxLength, minimum > maximum and the like.
fn check_option_conflicts(cx: &mut Cx, node: &Node) {
    let number = |key: &str| match node.get(key).map(|n| &n.value) {
        Some(Value::Int(i)) => Some(*i as f64),
        Some(Value::Float(f)) => Some(*f),
        _ => None,
    };
    let text = |key: &str| node.get(key).and_then(Node::as_str);
    for (low, high) in [
        ("minLength", "maxLength"),
        ("minimum", "maximum"),
        ("minItems", "maxItems"),
        ("minProperties", "maxProperties"),
        ("exclusiveMinimum", "exclusiveMaximum"),
        ("minimum", "exclusiveMaximum"),
        ("exclusiveMinimum", "maximum"),
    ] {
        let inverted = match (number(low), number(high)) {
            (Some(l), Some(h)) => l > h || (l == h && (low.starts_with("exclusive") || high.starts_with("exclusive"))),
            // Dates and times in ISO form order as text.
            _ => matches!((text(low), text(high)), (Some(l), Some(h)) if l > h),
        };
        if inverted {
            let span = node.get(high).map_or(node.span, |n| n.span);
            cx.report(
                Diagnostic::new(
                    Code::TypeOptionConflict,
                    span,
                    format!("`{low}` is greater than `{high}`: no value can satisfy both"),
                )
                .hint(format!("swap the values of `{low}` and `{high}`")),
            );
        }
    }
}

/// One allowed value of a property's `enum` (v3.2.0).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnumValue {
    pub value: Any,
    pub label: Option<String>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub tags: Option<Vec<String>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for EnumValue {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "enum value")?;
        if !o.has("value") {
            o.missing("value");
        }
        let e = EnumValue {
            value: o.opt_with("value", scalar).unwrap_or(Any::Null),
            label: o.opt("label"),
            id: o.opt("id"),
            description: o.opt("description"),
            custom_properties: o.opt("customProperties"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            tags: o.opt("tags"),
            at: At::default(),
        };
        Some(EnumValue { at: o.finish(), ..e })
    }
}

/// Another name of an object or property (v3.2.0).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Synonym {
    pub id: Option<String>,
    pub synonym: String,
    pub description: Option<String>,
    pub locale: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Synonym {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "synonym")?;
        let s = Synonym {
            id: o.opt("id"),
            synonym: o.req("synonym"),
            description: o.opt("description"),
            locale: o.opt("locale"),
            source: o.opt("source"),
            status: o.opt("status"),
            custom_properties: o.opt("customProperties"),
            at: At::default(),
        };
        Some(Synonym { at: o.finish(), ..s })
    }
}

/// One end of a relationship: a single reference or, for composite keys, a list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Refs {
    One(String),
    Many(Vec<String>),
}

impl Refs {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Refs::One(one) => std::slice::from_ref(one),
            Refs::Many(many) => many,
        }
    }
}

impl Decode for Refs {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match &node.value {
            Value::Str(s) => Some(Refs::One(s.clone())),
            Value::Seq(items) if items.is_empty() => {
                cx.report(Diagnostic::new(Code::InvalidValue, node.span, "a reference list needs at least one entry"));
                None
            }
            Value::Seq(_) => Vec::<String>::decode(node, cx).map(Refs::Many),
            _ => {
                cx.report(Diagnostic::new(
                    Code::WrongType,
                    node.span,
                    format!("expected a reference or a list of references, found {}", node.value.type_name()),
                ));
                None
            }
        }
    }
}

/// A foreign-key relationship (v3.1.0+). At property level `from` is implicit.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub from: Option<Refs>,
    pub to: Option<Refs>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

struct SchemaRelationship(Relationship);
struct PropertyRelationship(Relationship);

fn decode_relationship(node: &Node, cx: &mut Cx, schema_level: bool) -> Option<Relationship> {
    let mut o = Obj::new(cx, node, "relationship")?;
    if schema_level && !o.has("from") {
        o.missing("from");
    }
    if !o.has("to") {
        o.missing("to");
    }
    if !schema_level && o.has("from") {
        let span = o.key_span("from");
        o.cx.report(
            Diagnostic::new(Code::UnknownField, span, "`from` is not allowed on a property-level relationship")
                .hint("the property itself is the `from` side; move the relationship to the object to name `from`"),
        );
    }
    let r = Relationship {
        kind: o.one_of("type", &["foreignKey"]),
        from: o.opt("from"),
        to: o.opt("to"),
        custom_properties: o.opt("customProperties"),
        at: At::default(),
    };
    Some(Relationship { at: o.finish(), ..r })
}

impl Decode for SchemaRelationship {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        decode_relationship(node, cx, true).map(SchemaRelationship)
    }
}

impl Decode for PropertyRelationship {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        decode_relationship(node, cx, false).map(PropertyRelationship)
    }
}

/// The comparison operators of quality rules, in the standard's order.
pub const OPERATORS: &[&str] = &[
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
];

/// The library metrics of ODCS v3.1.0+.
pub const METRICS: &[&str] = &["nullValues", "missingValues", "invalidValues", "duplicateValues", "rowCount"];

/// One quality rule: text, library (a metric), sql or custom.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quality {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub metric: Option<String>,
    pub rule: Option<String>,
    pub arguments: Option<AnyMap>,
    pub must_be: Option<Any>,
    pub must_not_be: Option<Any>,
    pub must_be_greater_than: Option<Any>,
    pub must_be_greater_or_equal_to: Option<Any>,
    pub must_be_less_than: Option<Any>,
    pub must_be_less_or_equal_to: Option<Any>,
    pub must_be_between: Option<Any>,
    pub must_not_be_between: Option<Any>,
    pub unit: Option<String>,
    pub query: Option<String>,
    pub engine: Option<String>,
    pub implementation: Option<Any>,
    pub dimension: Option<String>,
    pub method: Option<String>,
    pub severity: Option<String>,
    pub business_impact: Option<String>,
    pub schedule: Option<String>,
    pub scheduler: Option<String>,
    pub tags: Option<Vec<String>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

impl Quality {
    /// The rule's type; the standard's default is `library`.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("library")
    }

    /// The library metric, from `metric` or the deprecated `rule`.
    pub fn metric(&self) -> Option<&str> {
        self.metric.as_deref().or(self.rule.as_deref())
    }

    /// Every operator given, with its value, in the standard's order.
    pub fn operators(&self) -> Vec<(&'static str, &Any)> {
        let values = [
            &self.must_be,
            &self.must_not_be,
            &self.must_be_greater_than,
            &self.must_be_greater_or_equal_to,
            &self.must_be_less_than,
            &self.must_be_less_or_equal_to,
            &self.must_be_between,
            &self.must_not_be_between,
        ];
        OPERATORS.iter().zip(values).filter_map(|(name, value)| value.as_ref().map(|v| (*name, v))).collect()
    }
}

impl Decode for Quality {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "quality rule")?;
        let v = o.version();
        let kind = o.one_of("type", &["text", "library", "sql", "custom"]);
        let effective = kind.clone().unwrap_or_else(|| "library".into());
        if v.at_least(V31) {
            o.deprecated(
                "rule",
                "use `metric` (nullValues, missingValues, invalidValues, duplicateValues or rowCount)",
            );
        }
        // Fields that only some rule types have; elsewhere they are unknown.
        let allowed_for = |field: &str| match field {
            "metric" | "rule" | "arguments" => effective == "library",
            "query" => effective == "sql",
            "engine" | "implementation" => effective == "custom",
            _ => effective == "library" || effective == "sql",
        };
        for field in ["metric", "rule", "arguments", "query", "engine", "implementation"]
            .into_iter()
            .chain(OPERATORS.iter().copied())
        {
            if o.has(field) && !allowed_for(field) {
                let span = o.key_span(field);
                o.cx.report(
                    Diagnostic::new(
                        Code::UnknownField,
                        span,
                        format!("`{field}` does not apply to a quality rule of type {effective}"),
                    )
                    .hint(match field {
                        "metric" | "rule" | "arguments" => "set `type: library` (or leave `type` out)".to_string(),
                        "query" => "set `type: sql`".to_string(),
                        "engine" | "implementation" => "set `type: custom`".to_string(),
                        _ => "comparison operators apply to library and sql rules".to_string(),
                    }),
                );
            }
        }
        let metric =
            if o.has("metric") && !v.at_least(V31) { o.since("metric", V31) } else { o.opt::<String>("metric") };
        if let Some(m) = &metric
            && !METRICS.contains(&m.as_str())
        {
            let span = o.key_span("metric");
            o.cx.report(
                Diagnostic::new(Code::QualityUnknownMetric, span, format!("`{m}` is not a library metric"))
                    .hint(format!("use one of: {}", METRICS.join(", "))),
            );
        }
        let q = Quality {
            id: stable_id(&mut o),
            name: o.opt("name"),
            description: o.opt("description"),
            kind,
            metric,
            rule: o.opt("rule"),
            arguments: o.since("arguments", V31),
            must_be: o.opt("mustBe"),
            must_not_be: o.opt("mustNotBe"),
            must_be_greater_than: o.opt("mustBeGreaterThan"),
            must_be_greater_or_equal_to: o.opt("mustBeGreaterOrEqualTo"),
            must_be_less_than: o.opt("mustBeLessThan"),
            must_be_less_or_equal_to: o.opt("mustBeLessOrEqualTo"),
            must_be_between: o.opt("mustBeBetween"),
            must_not_be_between: o.opt("mustNotBeBetween"),
            unit: o.opt("unit"),
            query: o.opt("query"),
            engine: o.opt("engine"),
            implementation: o.opt_with("implementation", |n, cx| match &n.value {
                Value::Str(_) | Value::Map(_) => Some(n.to_json()),
                _ => {
                    cx.report(Diagnostic::new(
                        Code::WrongType,
                        n.span,
                        format!("expected a string or a mapping, found {}", n.value.type_name()),
                    ));
                    None
                }
            }),
            dimension: o.one_of(
                "dimension",
                &["accuracy", "completeness", "conformity", "consistency", "coverage", "timeliness", "uniqueness"],
            ),
            method: o.opt("method"),
            severity: o.opt("severity"),
            business_impact: o.opt("businessImpact"),
            schedule: o.opt("schedule"),
            scheduler: o.opt("scheduler"),
            tags: o.opt("tags"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            custom_properties: o.opt("customProperties"),
            at: At::default(),
        };
        Some(Quality { at: o.finish(), ..q })
    }
}

/// One SLA property, e.g. `latency: 4 d` on an element.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaProperty {
    pub id: Option<String>,
    pub property: String,
    pub value: Any,
    pub value_ext: Option<Any>,
    pub unit: Option<String>,
    pub element: Option<String>,
    pub driver: Option<String>,
    pub description: Option<String>,
    pub scheduler: Option<String>,
    pub schedule: Option<String>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for SlaProperty {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "SLA property")?;
        if !o.has("value") {
            o.missing("value");
        }
        let s = SlaProperty {
            id: stable_id(&mut o),
            property: o.req("property"),
            value: o.opt_with("value", scalar).unwrap_or(Any::Null),
            value_ext: o.opt_with("valueExt", scalar),
            unit: o.opt("unit"),
            element: o.opt("element"),
            driver: o.opt("driver"),
            description: o.since("description", V31),
            scheduler: o.since("scheduler", V31),
            schedule: o.since("schedule", V31),
            at: At::default(),
        };
        Some(SlaProperty { at: o.finish(), ..s })
    }
}

/// A role consumers can be granted, with its access and approvers.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: Option<String>,
    pub role: String,
    pub description: Option<String>,
    pub access: Option<String>,
    pub first_level_approvers: Option<String>,
    pub second_level_approvers: Option<String>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Role {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "role")?;
        let r = Role {
            id: stable_id(&mut o),
            role: o.req("role"),
            description: o.opt("description"),
            access: o.opt("access"),
            first_level_approvers: o.opt("firstLevelApprovers"),
            second_level_approvers: o.opt("secondLevelApprovers"),
            custom_properties: o.opt("customProperties"),
            at: At::default(),
        };
        Some(Role { at: o.finish(), ..r })
    }
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    pub id: Option<String>,
    pub price_amount: Option<f64>,
    pub price_currency: Option<String>,
    pub price_unit: Option<String>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Pricing {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "price")?;
        let p = Pricing {
            id: stable_id(&mut o),
            price_amount: o.opt("priceAmount"),
            price_currency: o.opt("priceCurrency"),
            price_unit: o.opt("priceUnit"),
            at: At::default(),
        };
        Some(Pricing { at: o.finish(), ..p })
    }
}
