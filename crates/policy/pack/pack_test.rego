# The default pack's unit tests: `meshplane policy test crates/policy/pack`.
package meshplane.pack_test

import data.meshplane.pack

contract(extra) := object.union({"id": "orders", "version": "1.0.0", "status": "draft", "domain": "sales"}, extra)

test_owner_present_passes_with_a_team if {
  count(pack.owner_present.violations) == 0 with input as {"kind": "DataContract", "after": contract({"team": {"name": "sales"}})}
}

test_owner_present_passes_with_members if {
  count(pack.owner_present.violations) == 0 with input as {"kind": "DataProduct", "after": contract({"team": {"members": [{"username": "ana"}]}})}
}

test_owner_present_finds_no_team if {
  pack.owner_present.violations == {{"msg": "DataContract orders names no owning team", "path": "team"}} with input as {"kind": "DataContract", "after": contract({})}
}

test_owner_present_ignores_a_delete if {
  count(pack.owner_present.violations) == 0 with input as {"kind": "DataContract", "after": null}
}

test_domain_set if {
  count(pack.domain_set.violations) == 0 with input as {"kind": "DataContract", "after": contract({})}
  count(pack.domain_set.violations) == 1 with input as {"kind": "DataContract", "after": {"id": "orders"}}
}

test_output_port_contract if {
  ports := {"outputPorts": [{"name": "a", "contractId": "orders"}, {"name": "b"}]}
  pack.output_port_contract.violations == {{"msg": "output port b has no contract", "path": "outputPorts[1]"}} with input as {"after": ports}
}

test_pii_classified_finds_an_unclassified_email if {
  schema := {"schema": [{"name": "customers", "properties": [
    {"name": "id"},
    {"name": "email", "classification": "restricted"},
    {"name": "customer_phone"},
    {"name": "address", "properties": [{"name": "street"}]},
  ]}]}
  found := pack.pii_classified.violations with input as {"after": contract(schema)}
  {v.path | some v in found} == {"schema[0].properties[2]", "schema[0].properties[3]", "schema[0].properties[3].properties[0]"}
}

test_pii_classified_leaves_other_names_alone if {
  count(pack.pii_classified.violations) == 0 with input as {"after": contract({"schema": [{"name": "t", "properties": [{"name": "emailed_at_count_x"}, {"name": "zipper"}]}]})}
}

test_sla_latency if {
  count(pack.sla_latency.violations) == 1 with input as {"after": contract({"status": "active"})}
  count(pack.sla_latency.violations) == 0 with input as {"after": contract({"status": "active", "slaProperties": [{"property": "latency", "value": 4, "unit": "h"}]})}
  count(pack.sla_latency.violations) == 0 with input as {"after": contract({})}
}

test_version_bump if {
  diff := {"oldVersion": "1.0.0", "newVersion": "1.1.0", "problem": "breaking changes need a new major version"}
  pack.version_bump.violations == {{"msg": "version 1.0.0 → 1.1.0: breaking changes need a new major version", "path": "version"}} with input as {"diff": diff}
  count(pack.version_bump.violations) == 0 with input as {"diff": {"oldVersion": "1.0.0", "newVersion": "2.0.0"}}
  count(pack.version_bump.violations) == 0 with input as {"diff": null}
}

test_quality_on_active if {
  count(pack.quality_on_active.violations) == 1 with input as {"after": contract({"status": "active", "schema": [{"name": "t", "properties": [{"name": "id"}]}]})}
  with_rule := {"status": "active", "schema": [{"name": "t", "properties": [{"name": "id", "quality": [{"metric": "nullValues", "mustBe": 0}]}]}]}
  count(pack.quality_on_active.violations) == 0 with input as {"after": contract(with_rule)}
}
