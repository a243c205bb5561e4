//! Elements that ODCS and ODPS share: descriptions, custom properties, authoritative
//! definitions, support channels and teams. The two standards differ in a few fields of
//! these (ODCS 3.1+ gives them stable `id`s, ODPS gives support channels tags); each
//! decoder allows exactly the fields the document's own standard and version define.

use serde::Serialize;
use serde_json::Value as Any;
use serde_with::skip_serializing_none;

use crate::decode::{At, Cx, Decode, DocVersion, Obj};
use crate::tree::Node;

/// `id`: a stable identifier, defined by ODCS from v3.1.0 on.
pub(crate) fn stable_id(o: &mut Obj) -> Option<String> {
    o.since("id", DocVersion::Odcs310)
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomProperty {
    pub id: Option<String>,
    pub property: String,
    pub value: Any,
    pub description: Option<String>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for CustomProperty {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "custom property")?;
        let since = if o.version().is_odcs() { DocVersion::Odcs310 } else { DocVersion::Odps090 };
        let id = stable_id(&mut o);
        let property = o.req("property");
        let value = if o.has("value") {
            o.opt("value").unwrap_or(Any::Null)
        } else {
            o.missing("value");
            Any::Null
        };
        let description = o.since("description", since);
        Some(CustomProperty { id, property, value, description, at: o.finish() })
    }
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthoritativeDefinition {
    pub id: Option<String>,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: Option<String>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for AuthoritativeDefinition {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "authoritative definition")?;
        Some(AuthoritativeDefinition {
            id: stable_id(&mut o),
            url: o.req("url"),
            kind: o.req("type"),
            description: o.opt("description"),
            at: o.finish(),
        })
    }
}

/// The `description` block of a contract or product.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Description {
    pub usage: Option<String>,
    pub purpose: Option<String>,
    pub limitations: Option<String>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Description {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "description")?;
        Some(Description {
            usage: o.opt("usage"),
            purpose: o.opt("purpose"),
            limitations: o.opt("limitations"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            custom_properties: o.opt("customProperties"),
            at: o.finish(),
        })
    }
}

/// A support or communication channel.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Support {
    pub id: Option<String>,
    pub channel: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub tool: Option<String>,
    pub scope: Option<String>,
    pub invitation_url: Option<String>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Support {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "support channel")?;
        let v = o.version();
        // ODCS v3.0 and ODPS require a url; ODCS v3.1+ made it optional.
        let url_required = !v.at_least(DocVersion::Odcs310);
        let item = Support {
            id: stable_id(&mut o),
            channel: o.req("channel"),
            url: if url_required { Some(o.req("url")) } else { o.opt("url") },
            description: o.opt("description"),
            tool: o.opt("tool"),
            scope: o.opt("scope"),
            invitation_url: o.opt("invitationUrl"),
            tags: o.since("tags", DocVersion::Odps090),
            custom_properties: if v.is_odcs() {
                o.since("customProperties", DocVersion::Odcs310)
            } else {
                o.opt("customProperties")
            },
            authoritative_definitions: o.since("authoritativeDefinitions", DocVersion::Odps090),
            at: At::default(),
        };
        Some(Support { at: o.finish(), ..item })
    }
}

/// One member of a team.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamMember {
    pub id: Option<String>,
    pub username: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub role: Option<String>,
    pub date_in: Option<String>,
    pub date_out: Option<String>,
    pub replaced_by_username: Option<String>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for TeamMember {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "team member")?;
        // ODCS v3.0 members carry only the personal fields; v3.1 and ODPS add the rest.
        let extended = if o.version().is_odcs() { DocVersion::Odcs310 } else { DocVersion::Odps090 };
        let member = TeamMember {
            id: stable_id(&mut o),
            username: o.req("username"),
            name: o.opt("name"),
            description: o.opt("description"),
            role: o.opt("role"),
            date_in: o.opt("dateIn"),
            date_out: o.opt("dateOut"),
            replaced_by_username: o.opt("replacedByUsername"),
            tags: o.since("tags", extended),
            custom_properties: o.since("customProperties", extended),
            authoritative_definitions: o.since("authoritativeDefinitions", extended),
            at: At::default(),
        };
        Some(TeamMember { at: o.finish(), ..member })
    }
}

/// A team: the object form (ODCS v3.1+, ODPS) or the older list of members.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Team {
    Team(TeamInfo),
    Members(Vec<TeamMember>),
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamInfo {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub members: Option<Vec<TeamMember>>,
    pub tags: Option<Vec<String>>,
    pub custom_properties: Option<Vec<CustomProperty>>,
    pub authoritative_definitions: Option<Vec<AuthoritativeDefinition>>,
    #[serde(skip)]
    pub at: At,
}

impl Decode for Team {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        if matches!(node.value, crate::tree::Value::Seq(_)) {
            return Vec::<TeamMember>::decode(node, cx).map(Team::Members);
        }
        let mut o = Obj::new(cx, node, "team")?;
        let info = TeamInfo {
            id: stable_id(&mut o),
            name: o.opt("name"),
            description: o.opt("description"),
            members: o.opt("members"),
            tags: o.opt("tags"),
            custom_properties: o.opt("customProperties"),
            authoritative_definitions: o.opt("authoritativeDefinitions"),
            at: At::default(),
        };
        Some(Team::Team(TeamInfo { at: o.finish(), ..info }))
    }
}
