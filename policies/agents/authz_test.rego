# Unit tests for agents.authz. They run under `opa test policies/` and under the
# embedded engine (`agentctl policy test policies/`), so they use the same
# portable subset of Rego as the policy itself.
package agents.authz_test

import data.agents.authz

# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

active_version := {"id": "ver-1", "version": "1.0.0", "state": "active"}

refund_agent := {
	"id": "agt-1",
	"name": "refund-bot",
	"domain": "payments",
	"status": "active",
	"autonomy_level": 3,
	"version": active_version,
	"labels": {},
}

# A level-3 refund inside every limit: the one fully allowed baseline.
base_input := {
	"agent": refund_agent,
	"action": "payments.refund",
	"resource": {"type": "payment", "id": "pay-1", "amount": 50, "region": "eu-west-1", "classification": "confidential"},
	"context": {"risk": "low"},
	"vouched": {"time": "2024-05-06T10:00:00Z"},
}

# object.union merges nested objects, so replacing a key goes through put().
put(obj, key, value) := object.union(object.remove(obj, [key]), {key: value})

with_agent(patch) := put(base_input, "agent", object.union(refund_agent, patch))

with_resource(patch) := put(base_input, "resource", object.union(base_input.resource, patch))

with_context(ctx) := put(base_input, "context", ctx)

with_cfg(key, value) := put(data.authz, key, value)

# Overrides go key by key: regopy 1.5.2 aborts when it compiles `with input as {...}` for rules
# that pass input to a builtin, while `with input.<key> as` works in both engines. Every fixture
# therefore has all five keys; tests of absent keys call authz.decision directly.
decision_for(inp) := d if {
	d := authz.decision with input.agent as inp.agent
		with input.action as inp.action
		with input.resource as inp.resource
		with input.context as inp.context
		with input.vouched as inp.vouched
}

decision_with_cfg(inp, cfg) := d if {
	d := authz.decision with input.agent as inp.agent
		with input.action as inp.action
		with input.resource as inp.resource
		with input.context as inp.context
		with input.vouched as inp.vouched
		with data.authz as cfg
}

# ---------------------------------------------------------------------------
# Decision shape and the baseline allow
# ---------------------------------------------------------------------------

test_baseline_allows if {
	d := decision_for(base_input)
	d.effect == "allow"
	d.allow == true
	d.reasons == []
}

test_allow_is_true_only_for_allow_effect if {
	d := decision_for(with_agent({"status": "suspended"}))
	d.effect == "deny"
	d.allow == false
}

test_empty_input_denies_with_reasons if {
	d := authz.decision
	d.effect == "deny"
	d.allow == false
	"agent_missing" in d.reasons
	"action_invalid" in d.reasons
}

test_reasons_are_sorted_and_unique if {
	d := decision_for(with_agent({"status": "retired", "version": null}))
	d.reasons == ["agent_not_active", "version_not_active"]
}

test_missing_config_is_a_deny if {
	d := decision_with_cfg(base_input, {})
	d.effect == "deny"
	d.allow == false
	count(d.reasons) > 0
}

test_policy_incomplete_default if {
	# approver role lookup fails for a require_approval decision: the default
	# decision must still deny with a reason.
	inp := with_agent({"autonomy_level": 1, "domain": "payments"})
	d := decision_with_cfg(put(inp, "context", {"risk": "critical"}), with_cfg("approvals", {}))
	d == {"effect": "deny", "allow": false, "reasons": ["policy_incomplete"], "obligations": []}
}

# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------

test_agent_not_object if {
	d := decision_for(put(base_input, "agent", "refund-bot"))
	"agent_missing" in d.reasons
}

test_suspended_agent_denied if {
	d := decision_for(with_agent({"status": "suspended"}))
	d.reasons == ["agent_not_active"]
}

test_retired_agent_denied if {
	"agent_not_active" in decision_for(with_agent({"status": "retired"})).reasons
}

test_unknown_status_denied if {
	"agent_not_active" in decision_for(with_agent({"status": "ACTIVE"})).reasons
}

test_missing_version_denied if {
	d := decision_for(with_agent({"version": null}))
	d.reasons == ["version_not_active"]
}

test_inactive_version_states_denied if {
	every state in ["registered", "approved", "deprecated", ""] {
		d := decision_for(with_agent({"version": {"id": "v", "version": "1", "state": state}}))
		d.reasons == ["version_not_active"]
	}
}

# ---------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------

test_action_null if {
	# An absent action is covered by test_empty_input_denies_with_reasons: overriding only
	# some input keys of a rule-derived fixture crashes regopy 1.5.2.
	d := decision_for(put(base_input, "action", null))
	d.reasons == ["action_invalid"]
}

test_action_not_string if {
	d := decision_for(put(base_input, "action", 42))
	"action_invalid" in d.reasons
}

test_empty_action if {
	"action_invalid" in decision_for(put(base_input, "action", "")).reasons
}

test_ungranted_action if {
	d := decision_for(put(base_input, "action", "payments.payout"))
	d.reasons == ["action_not_granted"]
}

test_grant_by_agent_id if {
	cfg := with_cfg("grants", {"agents": {}, "agent_ids": {"agt-9": ["payments.refund"]}, "domains": {}})
	d := decision_with_cfg(with_agent({"id": "agt-9", "name": "someone"}), cfg)
	d.effect == "allow"
}

test_grant_by_agent_name_in_its_domain if {
	d := decision_for(base_input)
	d.effect == "allow"
	d.reasons == []
	decision_for(put(base_input, "action", "payments.refund.read")).effect == "allow"
}

# Agent names are unique only within a domain: a same-named agent registered in another
# domain must not inherit the payments refund-bot's grants.
test_same_name_in_other_domain_not_granted if {
	every domain in ["support", "claims", "Payments", "payments ", ""] {
		d := decision_for(with_agent({"domain": domain}))
		d.effect == "deny"
		d.allow == false
		"action_not_granted" in d.reasons
	}
	decision_for(with_agent({"domain": "support"})).reasons == ["action_not_granted"]
	read := put(with_agent({"domain": "support"}), "action", "payments.refund.read")
	decision_for(read).reasons == ["action_not_granted"]
}

test_same_name_in_other_domain_uses_its_own_grants if {
	cfg := with_cfg("grants", {
		"agents": {
			"payments": {"refund-bot": ["payments.refund"]},
			"support": {"refund-bot": ["support.refund.issue"]},
		},
		"domains": {},
	})
	support_bot := with_agent({"domain": "support"})
	decision_with_cfg(support_bot, cfg).reasons == ["action_not_granted"]
	decision_with_cfg(put(support_bot, "action", "support.refund.issue"), cfg).effect == "allow"
	decision_with_cfg(base_input, cfg).effect == "allow"
	decision_with_cfg(put(base_input, "action", "support.refund.issue"), cfg).reasons == ["action_not_granted"]
}

test_agent_grants_not_keyed_by_name_alone if {
	# A name-keyed entry at the top of grants.agents (the old shape) grants nothing.
	cfg := with_cfg("grants", {"agents": {"refund-bot": ["payments.refund"]}, "domains": {}})
	decision_with_cfg(base_input, cfg).reasons == ["action_not_granted"]
}

test_agent_id_does_not_match_agent_names if {
	# Ids are looked up only in grants.agent_ids, never among agent names.
	d := decision_for(with_agent({"id": "refund-bot", "name": "other-bot", "domain": "support"}))
	d.reasons == ["action_not_granted"]
	cfg := with_cfg("grants", {"agents": {"payments": {"agt-1": ["payments.refund"]}}, "domains": {}})
	decision_with_cfg(with_agent({"name": "other-bot"}), cfg).reasons == ["action_not_granted"]
}

test_grant_by_domain if {
	inp := put(with_agent({"name": "other-bot"}), "action", "ledger.entry.read")
	decision_for(inp).effect == "allow"
}

test_domain_grant_does_not_leak_to_other_domain if {
	inp := put(with_agent({"name": "other-bot", "domain": "claims"}), "action", "ledger.entry.read")
	decision_for(inp).reasons == ["action_not_granted"]
}

test_wildcard_grant_matches_prefix if {
	inp := put(with_agent({"name": "other-bot"}), "action", "payments.invoice.read")
	decision_for(inp).effect == "allow"
}

test_wildcard_grant_needs_dot_boundary if {
	inp := put(with_agent({"name": "other-bot"}), "action", "payments.invoicesx.read")
	decision_for(inp).reasons == ["action_not_granted", "unknown_action"]
}

test_non_string_name_is_ignored if {
	d := decision_for(with_agent({"name": ["refund-bot"], "domain": 7}))
	d.reasons == ["action_not_granted"]
}

test_grant_matches_exact if {
	authz.grant_matches("a.b", "a.b")
	not authz.grant_matches("a.b", "a.bc")
	authz.grant_matches("a.*", "a.b.c")
	not authz.grant_matches("a.*", "ab.c")
	not authz.grant_matches("a*", "ab")
}

# Fault: wildcards in grants never match wildcards in requests, not even the same literal.
test_wildcard_in_request_matches_nothing if {
	not authz.grant_matches("a.*", "a.*")
	not authz.grant_matches("a.*", "a.b.*")
	not authz.grant_matches("*", "*")
	inp := put(with_agent({"name": "other-bot"}), "action", "payments.invoice.*")
	decision_for(inp).reasons == ["action_not_granted", "unknown_action"]
	cfg := with_cfg("actions", object.union(data.authz.actions, {"payments.invoice.*": {"kind": "read"}}))
	decision_with_cfg(inp, cfg).reasons == ["action_not_granted", "unknown_action"]
}

# ---------------------------------------------------------------------------
# Declared actions
# ---------------------------------------------------------------------------

support_agent(level) := object.union(refund_agent, {"name": "helper", "domain": "support", "autonomy_level": level})

support_input(level, act) := put(put(base_input, "agent", support_agent(level)), "action", act)

# Fault: read-only is decided by the declared kind, not by the action's spelling.
test_observe_only_cannot_read_by_spelling if {
	decision_for(support_input(0, "support.ticket.read")).effect == "allow"
	decision_for(support_input(0, "support.ticket.delete")).reasons == ["autonomy_observe_only"]
	decision_for(support_input(0, "support.ticket.delete.read")).reasons == ["autonomy_observe_only", "unknown_action"]
	view := put(support_input(0, "support.refund.issue.view"), "resource", object.union(base_input.resource, {"amount": 9000}))
	decision_for(view).reasons == ["autonomy_observe_only", "unknown_action"]
}

test_undeclared_action_denied_even_when_granted if {
	d := decision_for(support_input(3, "support.anything"))
	d.effect == "deny"
	d.reasons == ["unknown_action"]
	decision_with_cfg(base_input, with_cfg("actions", {})).reasons == ["unknown_action"]
	decision_with_cfg(base_input, with_cfg("actions", {"payments.refund": "write"})).reasons == ["unknown_action"]
}

test_action_kind_must_be_known if {
	cfg := with_cfg("actions", {"payments.refund": {"kind": "READ"}})
	decision_with_cfg(with_agent({"autonomy_level": 0}), cfg).reasons == ["action_kind_invalid", "autonomy_observe_only"]
}

test_delete_needs_approval_below_level3 if {
	d := decision_for(support_input(1, "support.ticket.delete"))
	d.effect == "require_approval"
	d.reasons == ["delete_requires_approval"]
	decision_for(support_input(2, "support.ticket.delete")).reasons == ["delete_requires_approval"]
	decision_for(support_input(3, "support.ticket.delete")).effect == "allow"
}

# ---------------------------------------------------------------------------
# Autonomy
# ---------------------------------------------------------------------------

test_invalid_autonomy_levels if {
	every level in [-1, 4, "1", null, 1.5, true] {
		"autonomy_level_invalid" in decision_for(with_agent({"autonomy_level": level})).reasons
	}
}

test_level0_cannot_act if {
	d := decision_for(with_agent({"autonomy_level": 0}))
	d.reasons == ["autonomy_observe_only"]
}

test_level0_may_read if {
	inp := put(with_agent({"autonomy_level": 0}), "action", "payments.refund.read")
	decision_for(inp).effect == "allow"
}

test_level1_below_threshold_allowed if {
	decision_for(with_agent({"autonomy_level": 1})).effect == "allow"
}

test_level1_amount_above_threshold_needs_approval if {
	inp := put(with_agent({"autonomy_level": 1}), "resource", object.union(base_input.resource, {"amount": 101}))
	d := decision_for(inp)
	d.effect == "require_approval"
	d.allow == false
	d.reasons == ["amount_requires_approval"]
	{"type": "approval", "approver_role": "payments_approver", "ttl_seconds": 3600} in d.obligations
}

test_level1_amount_at_threshold_allowed if {
	inp := put(with_agent({"autonomy_level": 1}), "resource", object.union(base_input.resource, {"amount": 100}))
	decision_for(inp).effect == "allow"
}

test_level1_risk_above_threshold_needs_approval if {
	inp := put(with_agent({"autonomy_level": 1}), "context", {"risk": "medium"})
	decision_for(inp).reasons == ["risk_requires_approval"]
}

test_level2_higher_thresholds if {
	inp := put(with_agent({"autonomy_level": 2}), "resource", object.union(base_input.resource, {"amount": 4000}))
	decision_for(inp).effect == "allow"
	high := put(put(inp, "resource", object.union(base_input.resource, {"amount": 6000})), "context", {"risk": "high"})
	decision_for(high).reasons == ["amount_requires_approval", "risk_requires_approval"]
}

test_level3_autonomous_within_grants if {
	inp := put(with_resource({"amount": 1000000}), "context", {"risk": "critical"})
	decision_for(inp).effect == "allow"
}

test_reads_skip_approval if {
	agent := object.union(refund_agent, {"autonomy_level": 1})
	inp := put(put(with_resource({"amount": 1000000}), "agent", agent), "action", "payments.refund.read")
	decision_for(inp).effect == "allow"
}

test_default_approver_role if {
	agent := with_agent({"autonomy_level": 1, "domain": "support", "name": "other"})
	inp := put(put(agent, "action", "support.ticket.close"), "context", {"risk": "high"})
	d := decision_for(inp)
	d.effect == "require_approval"
	{"type": "approval", "approver_role": "domain_owner", "ttl_seconds": 3600} in d.obligations
}

test_deny_wins_over_approval if {
	inp := put(with_agent({"autonomy_level": 1, "status": "suspended"}), "context", {"risk": "critical"})
	d := decision_for(inp)
	d.effect == "deny"
	d.reasons == ["agent_not_active"]
	every o in d.obligations {
		o.type != "approval"
	}
}

test_invalid_amounts_denied if {
	every amount in ["100", -1, null, {"value": 1}] {
		"amount_invalid" in decision_for(with_resource({"amount": amount})).reasons
	}
}

# Fault: a missing amount must not slip past the threshold, nor an amount under another name.
test_missing_amount_denied if {
	no_amount := object.remove(base_input.resource, ["amount"])
	every level in [1, 2, 3] {
		inp := put(with_agent({"autonomy_level": level}), "resource", no_amount)
		decision_for(inp).reasons == ["amount_missing"]
		elsewhere := put(put(inp, "resource", object.union(no_amount, {"amount_eur": 9000, "Amount": 9000})), "context", {"amount": 9000})
		decision_for(elsewhere).reasons == ["amount_missing"]
	}
}

test_missing_amount_may_require_approval if {
	d := decision_for(put(support_input(3, "support.refund.issue"), "resource", {"type": "ticket", "id": "t-1", "region": "eu-west-1"}))
	d.effect == "require_approval"
	d.reasons == ["amount_missing"]
	bad := decision_for(put(support_input(3, "support.refund.issue"), "resource", {"type": "ticket", "id": "t-1", "region": "eu-west-1", "amount": -5}))
	bad.reasons == ["amount_invalid"]
	bad.effect == "require_approval"
}

test_amount_declaration_without_attribute if {
	cfg := with_cfg("actions", {"payments.refund": {"kind": "write", "amount": {"when_invalid": "deny"}}})
	decision_with_cfg(base_input, cfg).reasons == ["action_amount_invalid"]
}

test_action_threshold_applies_at_every_level if {
	payout := put(put(with_agent({"name": "payout-bot"}), "action", "payments.payout"), "resource", object.union(base_input.resource, {"amount": 10001}))
	decision_for(payout).reasons == ["amount_requires_approval"]
	decision_for(put(payout, "resource", object.union(base_input.resource, {"amount": 10000}))).effect == "allow"
}

# Fault: a claimed risk may raise the default, never lower it.
test_claimed_risk_cannot_lower_default if {
	cfg := with_cfg("default_risk", "high")
	inp := put(with_agent({"autonomy_level": 1}), "context", {"risk": "low"})
	decision_with_cfg(inp, cfg).reasons == ["risk_requires_approval"]
	decision_for(inp).effect == "allow"
}

test_unknown_risk_denied if {
	every risk in ["extreme", 3, null] {
		"risk_invalid" in decision_for(with_context({"risk": risk})).reasons
	}
}

test_default_risk_applies if {
	inp := put(with_agent({"autonomy_level": 1}), "context", {})
	decision_for(inp).effect == "allow"
	cfg := with_cfg("default_risk", "high")
	d := decision_with_cfg(inp, cfg)
	d.reasons == ["risk_requires_approval"]
}

test_missing_default_risk_is_invalid if {
	cfg := object.remove(data.authz, ["default_risk"])
	d := decision_with_cfg(with_context({}), cfg)
	d.reasons == ["risk_invalid"]
}

test_non_object_context_uses_defaults if {
	decision_for(with_context("nope")).effect == "allow"
}

test_unknown_default_risk_is_invalid if {
	d := decision_with_cfg(base_input, with_cfg("default_risk", "extreme"))
	d.reasons == ["risk_invalid"]
}

# ---------------------------------------------------------------------------
# Residency
# ---------------------------------------------------------------------------

test_region_not_allowed_for_classification if {
	d := decision_for(with_resource({"classification": "restricted", "region": "eu-west-1"}))
	d.reasons == ["residency_violation"]
}

test_region_allowed_for_classification if {
	decision_for(with_resource({"classification": "restricted", "region": "eu-central-1"})).effect == "allow"
}

# Fault: a claimed classification may raise the declared one, never lower it.
test_claimed_public_does_not_lift_residency if {
	d := decision_for(with_resource({"classification": "public", "region": "ap-south-1"}))
	d.effect == "deny"
	d.reasons == ["residency_violation"]
	decision_for(with_resource({"classification": "public", "region": null})).reasons == ["residency_violation"]
	decision_for(with_resource({"classification": "internal", "region": "us-east-1"})).reasons == ["residency_violation"]
}

test_claimed_public_does_not_stop_redaction if {
	d := decision_for(with_resource({"classification": "public"}))
	"**.customer_email" in d.obligations[0].fields
}

test_declared_public_any_region if {
	article := with_resource({"type": "kb_article", "region": "ap-south-1"})
	decision_for(put(article, "resource", object.remove(article.resource, ["classification"]))).effect == "allow"
	decision_for(article).reasons == ["residency_violation"]
}

test_missing_region_violates if {
	inp := put(base_input, "resource", object.remove(base_input.resource, ["region"]))
	decision_for(inp).reasons == ["residency_violation"]
}

test_declared_classification_by_type if {
	inp := put(base_input, "resource", object.remove(base_input.resource, ["classification"]))
	decision_for(inp).effect == "allow"
	us := put(inp, "resource", object.union(inp.resource, {"region": "us-east-1"}))
	decision_for(us).reasons == ["residency_violation"]
	invoice := put(us, "resource", object.union(us.resource, {"type": "invoice"}))
	decision_for(invoice).effect == "allow"
}

test_undeclared_type_is_strictest if {
	every t in ["widget", "", 7, null] {
		inp := put(base_input, "resource", object.union(object.remove(base_input.resource, ["classification"]), {"type": t}))
		decision_for(inp).reasons == ["residency_violation"]
		central := put(inp, "resource", object.union(inp.resource, {"region": "eu-central-1"}))
		decision_for(central).effect == "allow"
	}
}

test_declared_classification_by_id_prefix if {
	decision_for(with_resource({"id": "vip-7"})).reasons == ["residency_violation"]
	decision_for(with_resource({"id": "vip-7", "region": "eu-central-1"})).effect == "allow"
}

test_declared_classification_by_domain if {
	classes := object.union(data.authz.classification, {"domains": {"payments": "restricted"}})
	cfg := with_cfg("classification", classes)
	decision_with_cfg(base_input, cfg).reasons == ["residency_violation"]
}

test_unknown_classification if {
	every c in ["secret", 1, null, "Public"] {
		decision_for(with_resource({"classification": c})).reasons == ["classification_unknown"]
	}
}

test_missing_classification_config if {
	decision_with_cfg(base_input, with_cfg("classification", {})).reasons == ["classification_unknown"]
}

test_non_object_resource if {
	d := decision_for(put(base_input, "resource", "pay-1"))
	d.reasons == ["amount_missing", "residency_violation"]
}

# ---------------------------------------------------------------------------
# Time windows
# ---------------------------------------------------------------------------

payout_input(ts) := put(put(with_agent({"name": "payout-bot"}), "action", "payments.payout"), "vouched", {"time": ts})

test_action_window_inside if {
	# Monday 09:30 UTC is 10:30 at the window's +60 minute offset.
	decision_for(payout_input("2024-05-06T09:30:00Z")).effect == "allow"
}

test_action_window_offset_applied if {
	# 07:30 UTC is 08:30 local: inside; 06:59 UTC is 07:59 local: outside.
	decision_for(payout_input("2024-05-06T07:30:00Z")).effect == "allow"
	decision_for(payout_input("2024-05-06T06:59:00Z")).reasons == ["outside_time_window"]
}

test_action_window_end_exclusive if {
	decision_for(payout_input("2024-05-06T16:59:59Z")).effect == "allow"
	decision_for(payout_input("2024-05-06T17:00:00Z")).reasons == ["outside_time_window"]
}

test_action_window_weekend if {
	decision_for(payout_input("2024-05-05T10:00:00Z")).reasons == ["outside_time_window"]
}

test_explicit_offset_in_timestamp if {
	# 11:30+02:00 is 09:30 UTC, 10:30 at the window offset.
	decision_for(payout_input("2024-05-06T11:30:00.123+02:00")).effect == "allow"
}

test_time_missing if {
	inp := put(put(with_agent({"name": "payout-bot"}), "action", "payments.payout"), "vouched", {})
	decision_for(inp).reasons == ["time_missing"]
	decision_for(put(inp, "vouched", "nope")).reasons == ["time_missing"]
}

test_time_invalid if {
	every ts in ["yesterday", "2024-05-06 10:00:00Z", "2024-13-06T10:00:00Z", "2024-05-06T10:00:00", 1715000000, null] {
		decision_for(payout_input(ts)).reasons == ["time_invalid"]
	}
}

test_domain_window if {
	claims := {
		"agent": object.union(refund_agent, {"name": "claims-triage", "domain": "claims"}),
		"action": "claims.claim.close",
		"resource": {"type": "claim", "id": "c-1", "region": "eu-west-1"},
		"context": {},
		"vouched": {"time": "2024-05-11T10:00:00Z"},
	}
	decision_for(claims).effect == "allow"
	late := put(claims, "vouched", {"time": "2024-05-11T13:00:00Z"})
	decision_for(late).reasons == ["outside_time_window"]
}

test_action_window_overrides_domain_window if {
	cfg := with_cfg("time_windows", {
		"actions": {"payments.refund": [{"days": ["Sunday"], "start": "00:00", "end": "23:59", "utc_offset_minutes": 0}]},
		"domains": {"payments": [{"days": ["Monday"], "start": "00:00", "end": "23:59", "utc_offset_minutes": 0}]},
	})
	d := decision_with_cfg(base_input, cfg)
	d.reasons == ["outside_time_window"]
}

test_no_window_no_time_needed if {
	decision_for(put(base_input, "vouched", {})).effect == "allow"
}

# Fault: the agent's own clock must not open a window.
test_claimed_time_is_ignored if {
	inp := put(payout_input("2024-05-05T10:00:00Z"), "context", {"time": "2024-05-06T09:30:00Z"})
	decision_for(inp).reasons == ["outside_time_window"]
	no_vouched := put(put(payout_input("x"), "vouched", {}), "context", {"time": "2024-05-06T09:30:00Z"})
	decision_for(no_vouched).reasons == ["time_missing"]
}

test_in_window_helper if {
	w := {"days": ["Monday"], "start": "08:00", "end": "09:00", "utc_offset_minutes": -120}
	authz.in_window(w, time.parse_rfc3339_ns("2024-05-06T10:30:00+00:00"))
	not authz.in_window(w, time.parse_rfc3339_ns("2024-05-06T08:30:00+00:00"))
}

test_weekday_arithmetic if {
	authz.weekday(0) == "Thursday"
	authz.weekday(-1) == "Wednesday"
	authz.weekday(time.parse_rfc3339_ns("1969-12-28T12:00:00+00:00")) == "Sunday"
	authz.weekday(time.parse_rfc3339_ns("2024-02-29T12:00:00+00:00")) == "Thursday"
	authz.weekday(time.parse_rfc3339_ns("2024-05-05T23:59:59.999999999+00:00")) == "Sunday"
	authz.weekday(time.parse_rfc3339_ns("2024-05-06T00:00:00+00:00")) == "Monday"
}

# ---------------------------------------------------------------------------
# Obligations
# ---------------------------------------------------------------------------

always_redacted := [
	"**.authorization",
	"**.card_number",
	"**.customer_email",
	"**.cvv",
	"**.iban",
	"**.national_id",
	"**.password",
]

test_redaction_always_and_per_action if {
	d := decision_for(base_input)
	d.obligations == [{"type": "redact", "fields": always_redacted}]
	payout := put(put(with_agent({"name": "payout-bot"}), "action", "payments.payout"), "vouched", {"time": "2024-05-06T09:30:00Z"})
	decision_for(payout).obligations == [{"type": "redact", "fields": sort(array.concat(always_redacted, ["**.account_number"]))}]
}

test_redaction_per_classification if {
	d := decision_for(with_resource({"classification": "restricted", "region": "eu-central-1"}))
	d.obligations == [{"type": "redact", "fields": sort(array.concat(always_redacted, ["**.customer_name"]))}]
	prefixed := decision_for(with_resource({"id": "vip-1", "region": "eu-central-1"}))
	"**.customer_name" in prefixed.obligations[0].fields
}

test_redaction_applies_to_denies if {
	d := decision_for(with_agent({"status": "suspended"}))
	d.effect == "deny"
	d.obligations[0].type == "redact"
}

test_no_redaction_configured if {
	cfg := with_cfg("redaction", {})
	d := decision_with_cfg(base_input, cfg)
	d.effect == "allow"
	d.obligations == []
}

# ---------------------------------------------------------------------------
# Edge: bundle data (never input) says the policy runs at an OPA sidecar; then a
# caller's input.agent and input.vouched are ignored and the identity is the
# verified token's (data.federation.identity, served with the bundle).
# ---------------------------------------------------------------------------

decision_at_edge(inp, federation) := d if {
	d := authz.decision with input.agent as inp.agent
		with input.action as inp.action
		with input.resource as inp.resource
		with input.context as inp.context
		with input.vouched as inp.vouched
		with data.federation as federation
}

test_edge_ignores_caller_agent if {
	d := decision_at_edge(base_input, {"edge": true})
	d.effect == "deny"
	"agent_missing" in d.reasons
}

test_edge_takes_the_verified_identity if {
	federation := {"edge": true, "identity": {"agent": refund_agent, "vouched": base_input.vouched}}
	d := decision_at_edge(put(base_input, "agent", {"status": "suspended"}), federation)
	d.effect == "allow"
}

test_edge_stale_bundle_denies_policy_stale if {
	federation := {"edge": true, "identity": {"stale": true, "vouched": base_input.vouched}}
	d := decision_at_edge(base_input, federation)
	d.effect == "deny"
	"policy_stale" in d.reasons
}

test_edge_identity_suspended_denies if {
	suspended := object.union(refund_agent, {"status": "suspended"})
	federation := {"edge": true, "identity": {"agent": suspended, "vouched": base_input.vouched}}
	d := decision_at_edge(base_input, federation)
	"agent_not_active" in d.reasons
}

test_edge_flag_must_be_true if {
	d := decision_at_edge(base_input, {"edge": "yes", "identity": {"agent": {"status": "x"}}})
	d.effect == "allow"
}
