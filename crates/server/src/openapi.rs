//! The OpenAPI 3.1 document, built from the route table, so every route is in it.

use serde_json::{Map, Value as Any, json};

use crate::auth::{Rule, rule};
use crate::routes::all;

fn schemas() -> Any {
    let string = json!({ "type": "string" });
    json!({
        "Error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": {
                "code": { "type": "string", "description": "a stable error code, e.g. immutable-version" },
                "message": string,
                "details": { "description": "what the code needs: lint diagnostics (line, column), breaking changes, dependents" }
            }
        },
        "Health": { "type": "object", "properties": { "status": string } },
        "Metrics": { "type": "string", "description": "the Prometheus text format, version 0.0.4 (docs/metrics.md)" },
        "Orphans": { "type": "array", "items": { "type": "object", "properties": {
            "id": { "type": "integer" }, "block": string, "place": string, "note": string,
            "purgeable": { "type": "boolean" }, "kind": string, "name": string, "since": string,
            "purgedAt": string } } },
        "Purged": { "type": "array", "items": { "type": "object", "properties": {
            "id": { "type": "integer" }, "block": string, "note": string,
            "outcome": { "enum": ["purged", "wouldPurge", "refused", "failed"] }, "reason": string } } },
        "Blocks": { "type": "array", "items": { "type": "object", "properties": {
            "name": string, "type": string,
            "config": { "type": "object", "description": "as platform.yaml gives it; a secret shows only as env:NAME, file:PATH or ***" },
            "health": { "type": "string", "description": "ok, unknown (the block does not report it), or why it is unhealthy" } } } },
        "Sinks": { "type": "array", "items": { "type": "object", "properties": {
            "name": string, "type": string,
            "config": { "type": "object", "description": "as platform.yaml gives it; a secret shows only as env:NAME, file:PATH or ***" },
            "position": { "type": ["integer", "null"], "description": "the last change the sink is done with (null before its first round)" },
            "changesBehind": { "type": ["integer", "null"], "description": "changes in the feed after it (of any type: the filter may skip them)" },
            "deadLetters": { "type": "integer", "description": "events given up on and not sent again" },
            "updatedAt": { "type": ["string", "null"] } } } },
        "DeadLetters": { "type": "object", "properties": {
            "items": { "type": "array", "items": { "type": "object", "properties": {
                "id": { "type": "integer" }, "sink": string, "seq": { "type": "integer", "description": "the change number" },
                "attempts": { "type": "integer" }, "error": string, "at": string,
                "state": { "enum": ["dead", "redeliver", "redelivered"] },
                "event": { "type": "object", "description": "the CloudEvent as the sink delivers it" } } } },
            "next": { "type": ["integer", "null"], "description": "pass as `after` for the next page" } } },
        "Redelivering": { "type": "object", "properties": {
            "redelivering": { "type": "integer", "description": "dead letters the sink's next round sends again" } } },
        "OpenApi": { "type": "object", "description": "an OpenAPI 3.1 document" },
        "Claim": { "type": "object", "properties": {
            "kind": string, "id": string, "domain": { "type": "string", "description": "the domain the id belongs to" },
            "claimedAt": string } },
        "Claims": { "type": "object", "properties": {
            "items": { "type": "array", "items": { "$ref": "#/components/schemas/Claim" } },
            "next": { "type": ["string", "null"], "description": "pass as `after` for the next page" } } },
        "Record": {
            "type": "object",
            "properties": {
                "kind": string, "name": string,
                "uid": { "type": "string", "description": "this incarnation of the resource, made at creation and never reused" },
                "id": string, "version": string, "status": string,
                "domain": { "type": "string", "description": "the owning domain, recorded at creation" },
                "team": { "type": ["string", "null"] }, "tags": { "type": "array", "items": string },
                "generation": { "type": "integer" }, "createdAt": string, "updatedAt": string,
                "deletionRequested": { "type": "string", "description": "when deletion was asked for (absent otherwise); the record goes once every finalizer is done" },
                "finalizers": { "type": "array", "items": string, "description": "the blocks that must clean up before the record goes (absent when none)" },
                "manager": { "type": "string", "description": "its source of truth, the only one that changes or deletes it: `api`, or `gitsource/NAME`" },
                "spec": { "type": "object", "description": "the document as JSON" },
                "latestTests": {
                    "type": "array",
                    "description": "for a product: the latest test run of each contract its output ports provide (in a single product's answer)",
                    "items": { "type": "object", "properties": { "contract": string, "run": { "type": ["object", "null"] } } }
                },
                "reconciled": {
                    "type": ["object", "null"],
                    "description": "what the reconcilers last observed (null until they ran)",
                    "properties": {
                        "observedGeneration": { "type": "integer" },
                        "updatedAt": string,
                        "conditions": { "type": "array", "items": { "type": "object", "properties": {
                            "type": string, "status": { "enum": ["True", "False", "Unknown"] }, "reason": string,
                            "message": string, "observedGeneration": { "type": "integer" }, "lastTransitionTime": string } } }
                    }
                }
            }
        },
        "Page": {
            "type": "object",
            "properties": {
                "items": { "type": "array", "items": { "$ref": "#/components/schemas/Record" } },
                "next": { "type": ["string", "null"], "description": "pass as `after` for the next page" },
                "watchFrom": { "type": "integer", "description": "the change number read before the listing: a watcher follows /api/v1/events after it and misses no change the listing does not show" }
            }
        },
        "Change": {
            "type": "object",
            "properties": {
                "seq": { "type": "integer" }, "at": string, "actor": string, "origin": string, "kind": string,
                "name": string, "action": string, "generation": { "type": "integer" }, "version": string,
                "before": { "type": ["object", "null"] }, "after": { "type": ["object", "null"] },
                "event": { "type": "object", "description": "the CloudEvents 1.0 envelope" }
            }
        },
        "Changes": { "type": "array", "items": { "$ref": "#/components/schemas/Change" } },
        "ApplyResult": {
            "type": "object",
            "properties": {
                "dryRun": { "type": "boolean" },
                "applied": { "type": "array", "items": { "type": "object", "properties": {
                    "kind": string, "name": string, "version": string, "generation": { "type": "integer" },
                    "outcome": { "enum": ["created", "updated", "unchanged", "deleting"] },
                    "reconciled": { "type": "object", "description": "for a resource left unchanged: what the reconcilers last observed (as in a resource's answer)" } } } }
            }
        },
        "TestRun": {
            "type": "object",
            "properties": {
                "seq": { "type": "integer" }, "name": string, "generation": { "type": "integer", "description": "the contract generation tested" },
                "server": string, "at": string, "failed": { "type": "boolean" },
                "report": { "type": "object", "description": "the report of meshplane test -o json: summary and every check's result" }
            }
        },
        "TestRuns": { "type": "array", "items": { "$ref": "#/components/schemas/TestRun" } },
        "Lineage": {
            "type": "object",
            "properties": {
                "product": string,
                "upstream": { "type": "array", "items": { "type": "object" } },
                "downstream": { "type": "array", "items": { "type": "object" } }
            }
        },
        "Documents": { "type": "string", "description": "ODCS contracts and ODPS products, YAML (several separated by ---) or JSON" }
    })
}

/// The schemas of identities, tokens and access requests.
fn access_schemas() -> Any {
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    json!({
        "Principal": { "type": "object", "required": ["kind"], "properties": {
            "name": string, "kind": { "enum": ["user", "group", "service"] },
            "databaseRole": { "type": "string", "description": "the role it logs in as in the databases (what grants are given to)" },
            "groups": strings, "platformAdmin": { "type": "boolean" },
            "domains": { "type": "array", "items": string, "description": "the domains it administers" } } },
        "Principals": { "type": "array", "items": { "$ref": "#/components/schemas/Principal" } },
        "CreatedLogin": { "type": "object", "properties": {
            "block": string, "role": string,
            "password": { "type": "string", "description": "shown only here; meshplane does not keep it" } } },
        "Token": { "type": "object", "properties": {
            "id": string, "principal": string, "description": string, "createdAt": string,
            "expiresAt": string, "revokedAt": string } },
        "Tokens": { "type": "array", "items": { "$ref": "#/components/schemas/Token" } },
        "NewToken": { "type": "object", "properties": {
            "principal": { "type": "string", "description": "whose token (default: yours)" },
            "description": string, "expiresAt": { "type": "string", "description": "RFC 3339" } } },
        "CreatedToken": { "type": "object", "properties": {
            "token": { "type": "string", "description": "send as `Authorization: Bearer TOKEN`; shown only here" },
            "info": { "$ref": "#/components/schemas/Token" } } },
        "NewAccessRequest": { "type": "object", "required": ["product", "outputPort", "purpose"], "properties": {
            "product": string, "outputPort": string,
            "contract": { "type": "string", "description": "the contract key (`id@vMAJOR`) when the port's contract has several majors" },
            "consumer": { "type": "string", "description": "who is to read: you (the default), a group you belong to, or (with inputPort) a data product you own" },
            "inputPort": { "type": "string", "description": "with consumer naming a data product: its input port that reads this port (the grant goes to the product's service account)" },
            "role": { "type": "string", "description": "the ODCS role asked for; read access without one" },
            "purpose": string, "until": { "type": "string", "description": "when the grant ends by itself (RFC 3339)" } } },
        "Decision": { "type": "object", "properties": { "comment": string } },
        "AccessRequest": { "type": "object", "properties": {
            "apiVersion": { "const": "meshplane/v1" }, "kind": { "enum": ["AccessRequest", "Grant"] },
            "id": { "type": "integer" }, "contract": string, "product": string, "port": string, "domain": string,
            "consumer": string, "inputPort": { "type": ["string", "null"] },
            "role": { "type": ["string", "null"] }, "access": { "enum": ["read", "write"] },
            "purpose": string, "until": { "type": ["string", "null"] },
            "state": { "enum": ["pending", "active", "rejected", "revoked", "expired"] },
            "approvers": { "type": "object", "properties": { "first": strings, "second": strings } },
            "decisions": { "type": "array", "items": { "type": "object", "properties": {
                "by": string, "level": { "type": "integer" }, "approved": { "type": "boolean" }, "comment": string, "at": string } } },
            "requestedBy": string, "requestedAt": string, "updatedAt": string,
            "enforcement": { "enum": ["enforced", "advisory", "unsupported", null],
                             "description": "how the block holding the port enforces the grant, once it has been told" } } },
        "AccessRequests": { "type": "array", "items": { "$ref": "#/components/schemas/AccessRequest" } }
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "malformed request",
        401 => "not authenticated",
        403 => "not allowed",
        404 => "not found",
        409 => "conflicts with what is stored",
        413 => "body too large",
        429 => "too many failed sign-ins from this address: try again later",
        502 => "the data could not be reached",
        503 => "not ready",
        504 => "the run passed its deadline",
        422 => "invalid document",
        _ => "error",
    }
}

/// The whole document.
pub fn document() -> Any {
    let mut paths = Map::new();
    for route in all() {
        let parameters: Vec<Any> = route
            .params
            .iter()
            .map(|p| {
                json!({ "name": p.name, "in": if p.path { "path" } else { "query" }, "required": p.path,
                        "description": p.description, "schema": { "type": p.kind } })
            })
            .collect();
        let mut responses = Map::new();
        let media = if route.answer == "Metrics" { "text/plain" } else { "application/json" };
        responses.insert(
            "200".into(),
            json!({ "description": "success",
                    "content": { media: { "schema": { "$ref": format!("#/components/schemas/{}", route.answer) } } } }),
        );
        let denials: &[u16] = match rule(route.endpoint) {
            Rule::Anyone => &[],
            Rule::Authenticated | Rule::PlatformAdmin => &[401, 403, 429],
        };
        for status in route.errors.iter().chain(denials) {
            responses.insert(
                status.to_string(),
                json!({ "description": reason(*status),
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
            );
        }
        let mut operation = json!({
            "operationId": format!("{:?}", route.endpoint),
            "summary": route.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if rule(route.endpoint) != Rule::Anyone {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        if let Some(body) = route.body {
            let schema = json!({ "$ref": format!("#/components/schemas/{body}") });
            let mut content = json!({ "application/json": { "schema": schema } });
            if body == "Documents" {
                content["application/yaml"] = json!({ "schema": schema });
            }
            operation["requestBody"] = json!({ "required": body == "Documents", "content": content });
        }
        let item = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        item[route.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "meshplane", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The registry of a data mesh: ODCS contracts and ODPS products" },
        "paths": paths,
        "components": {
            "schemas": schemas().as_object().into_iter().chain(access_schemas().as_object()).flatten()
                .map(|(k, v)| (k.clone(), v.clone())).collect::<Map<String, Any>>(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "an API token (`meshplane token create`) or, when configured, an OIDC JWT" } }
        }
    })
}
