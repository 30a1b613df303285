# METADATA
# title: Default authorization policy for agent actions
# description: |
#   Decides whether a registered agent may perform an action on a resource.
#   Deny by default: every requirement is written as a positive fact, and a
#   deny reason fires whenever the fact cannot be proven (missing or malformed
#   input included). The decision document is data.agents.authz.decision.
#
#   Configuration lives in bundle data under data.authz (see policies/data.json).
#
#   Trust boundary. The input has two kinds of fields:
#   - vouched for by the enforcement point (the control plane in remote mode, the
#     SDK in local mode; at an OPA sidecar the verified token, see below):
#     input.agent (identity, domain, status, autonomy level and version, from the
#     verified token and the registry) and input.vouched (the enforcement point's
#     clock: vouched.time);
#   - claimed by the agent: input.resource and input.context, exactly as sent.
#   Grants rest on vouched facts and on policy data only. input.action,
#   resource.type, resource.id and resource.region name the request itself (what,
#   on which resource, where it takes effect; data.authz.trust.request_fields).
#   Every other claim may only make a decision stricter: a claimed
#   classification can raise the declared one, never lower it; a claimed risk can
#   raise the default, never lower it. The one kind of claim that may relax a
#   decision is the amount attribute an action declares (an amount below the
#   approval threshold), and a missing or malformed amount is a deny (or an
#   approval, as the action's declaration says).
#
#   Portability: this module must evaluate identically in OPA and in the
#   embedded engine (regopy), so it only uses builtins both support, never
#   echoes input strings into the decision (regopy keeps JSON escapes inside
#   strings verbatim, so string-transforming builtins can differ on them),
#   strips a trailing "Z" before time.parse_rfc3339_ns (regopy rejects it),
#   and negates only plain rule names: `not a[b]` where rule b is undefined is
#   true in regopy but undefined in OPA.
package agents.authz

cfg := data.authz

# ---------------------------------------------------------------------------
# Decision document
# ---------------------------------------------------------------------------

# Fallback when any part of the decision is undefined: still a deny, with a reason.
default decision := {
	"effect": "deny",
	"allow": false,
	"reasons": ["policy_incomplete"],
	"obligations": [],
}

decision := {
	"effect": effect,
	"allow": effect == "allow",
	"reasons": reasons,
	"obligations": obligations,
}

effect := "deny" if {
	count(deny_reasons) > 0
} else := "require_approval" if {
	count(approval_reasons) > 0
} else := "allow"

# Sets are sorted through an array: regopy 1.5.2 returns from sort(set) an array that prints
# right but cannot be indexed or compared.
reasons := sort([r | some r in deny_reasons]) if effect == "deny"

reasons := sort([r | some r in approval_reasons]) if effect == "require_approval"

reasons := [] if effect == "allow"

obligations := array.concat(redact_obligations, approval_obligations)
# ---------------------------------------------------------------------------
# Normalised facts
# ---------------------------------------------------------------------------

# Vouched for by the enforcement point. Where the policy runs is bundle data, never input:
# the bundles the control plane serves to enforcement points set data.federation.edge
# (docs/federation.md). At the centre (and in the SDK's local mode, which verifies the token
# itself) the enforcement point builds input.agent and input.vouched. At a stock OPA sidecar
# the caller is not trusted: input.agent and input.vouched are ignored, the identity is the
# verified access token's and the time is OPA's (data.federation.identity, a module of the
# served bundle that verifies input.token with io.jwt.decode_verify against the bundle's JWKS).
edge if data.federation.edge == true

agent := input.agent if {
	not edge
	is_object(input.agent)
}

agent := data.federation.identity.agent if edge

default vouched := {}

vouched := input.vouched if {
	not edge
	is_object(input.vouched)
}

vouched := data.federation.identity.vouched if edge

# The request. A "*" in a requested action is never a wildcard: it names no
# declared action and matches no grant.
action := input.action if {
	is_string(input.action)
	input.action != ""
}

action_has_wildcard if contains(action, "*")

# Claimed by the agent.
resource := input.resource if is_object(input.resource)

default resource_fields := {}

resource_fields := resource

default request_context := {}

request_context := input.context if is_object(input.context)

autonomy_level := agent.autonomy_level if agent.autonomy_level in {0, 1, 2, 3}

autonomy := cfg.autonomy.levels[autonomy_level]

# ---------------------------------------------------------------------------
# Identity: agent and version must be active
# ---------------------------------------------------------------------------

deny_reasons contains "agent_missing" if not agent

# At a stock OPA sidecar whose bundle is past its fresh_until (it has not reached the control
# plane for longer than the domain's max staleness): no agent, and this says why.
deny_reasons contains "policy_stale" if {
	edge
	data.federation.identity.stale
}

deny_reasons contains "agent_not_active" if {
	agent
	not agent_active
}

deny_reasons contains "version_not_active" if {
	agent
	not version_active
}

agent_active if agent.status == "active"

version_active if agent.version.state == "active"

# ---------------------------------------------------------------------------
# Actions are declared in data.authz.actions: kind (read, write, delete), the
# resource attribute that carries an amount and what a missing or malformed
# amount means, and an optional approval threshold of the action's own.
# An undeclared action is denied, whatever its spelling: "x.delete.read" is not
# a read because it ends in "read".
# ---------------------------------------------------------------------------

deny_reasons contains "action_invalid" if not action

deny_reasons contains "unknown_action" if {
	action
	not declared_action
}

declared_action := cfg.actions[action] if {
	not action_has_wildcard
	is_object(cfg.actions[action])
}

action_kind := declared_action.kind if declared_action.kind in {"read", "write", "delete"}

deny_reasons contains "action_kind_invalid" if {
	declared_action
	not action_kind
}

read_action if action_kind == "read"

# ---------------------------------------------------------------------------
# Grants: by agent (domain and name), by agent id, or by the agent's domain;
# "x.*" in a grant matches by prefix, never a requested action holding "*".
#
# Agent names are unique only within a domain, so per-agent grants are keyed by
# domain first: grants.agents[domain][name]. A grant keyed by name alone would
# pass to a same-named agent that anyone able to register agents in another
# domain can create. Ids are globally unique, so grants.agent_ids[id] is flat.
# ---------------------------------------------------------------------------

deny_reasons contains "action_not_granted" if {
	agent
	action
	not granted
}

granted if {
	some grant in agent_grants
	grant_matches(grant, action)
}

agent_grants contains grant if {
	is_string(agent.domain)
	is_string(agent.name)
	some grant in cfg.grants.agents[agent.domain][agent.name]
}

agent_grants contains grant if {
	is_string(agent.id)
	some grant in cfg.grants.agent_ids[agent.id]
}

agent_grants contains grant if {
	is_string(agent.domain)
	some grant in cfg.grants.domains[agent.domain]
}

grant_matches(grant, act) if {
	grant == act
	not contains(act, "*")
}

grant_matches(grant, act) if {
	is_string(grant)
	endswith(grant, ".*")
	not contains(act, "*")
	startswith(act, trim_suffix(grant, "*"))
}

# ---------------------------------------------------------------------------
# Autonomy levels
#   0: observe only (read actions only)   1, 2: approval above thresholds
#   3: autonomous within grants            thresholds are data, per level and per action
# ---------------------------------------------------------------------------

deny_reasons contains "autonomy_level_invalid" if {
	agent
	not autonomy
}

deny_reasons contains "autonomy_observe_only" if {
	autonomy.observe_only == true
	not read_action
}

approval_reasons contains "delete_requires_approval" if {
	action_kind == "delete"
	autonomy.approve_deletes == true
}

# ---------------------------------------------------------------------------
# Amounts: the declared attribute is required. Missing, not a number or
# negative: a deny, or an approval when the action says so ("when_invalid").
# The amount is the one claim that may relax a decision (below a threshold).
# ---------------------------------------------------------------------------

amount_attribute := declared_action.amount.attribute if is_string(declared_action.amount.attribute)

deny_reasons contains "action_amount_invalid" if {
	declared_action.amount
	not amount_attribute
}

amount_present if amount_attribute in object.keys(resource_fields)

amount := resource_fields[amount_attribute] if {
	is_number(resource_fields[amount_attribute])
	resource_fields[amount_attribute] >= 0
}

amount_problem := "amount_missing" if {
	amount_attribute
	not amount_present
}

amount_problem := "amount_invalid" if {
	amount_present
	not amount
}

amount_problem_needs_approval if declared_action.amount.when_invalid == "require_approval"

deny_reasons contains amount_problem if not amount_problem_needs_approval

approval_reasons contains amount_problem if amount_problem_needs_approval

amount_thresholds contains t if {
	t := autonomy.approval_above_amount
	is_number(t)
}

amount_thresholds contains t if {
	t := declared_action.approval_above_amount
	is_number(t)
}

approval_reasons contains "amount_requires_approval" if {
	not read_action
	is_number(amount)
	some t in amount_thresholds
	amount > t
}

# ---------------------------------------------------------------------------
# Risk: the default applies; a claimed risk may raise it, never lower it.
# ---------------------------------------------------------------------------

default_risk_rank := cfg.risk_levels[cfg.default_risk]

risk_claimed if "risk" in object.keys(request_context)

claimed_risk_rank := cfg.risk_levels[request_context.risk] if risk_claimed

deny_reasons contains "risk_invalid" if not default_risk_rank

deny_reasons contains "risk_invalid" if {
	risk_claimed
	not claimed_risk_rank
}

risk_rank := max({default_risk_rank, claimed_risk_rank})

risk_rank := default_risk_rank if not risk_claimed

approval_reasons contains "risk_requires_approval" if {
	not read_action
	risk_rank > cfg.risk_levels[autonomy.approval_above_risk]
}

# ---------------------------------------------------------------------------
# Classification comes from policy data: per resource type, per resource id
# prefix and per agent domain, the strictest that applies; an undeclared type
# gets the strictest class. A claimed classification may raise it, never lower
# it; a claimed class that is not a level is a deny.
# ---------------------------------------------------------------------------

class_levels := cfg.classification.levels

class_rank(name) := i if {
	is_string(name)
	some i, level in class_levels
	level == name
}

type_rank := class_rank(cfg.classification.resource_types[resource_fields.type]) if is_string(resource_fields.type)

declared_ranks contains r if r := type_rank

declared_ranks contains r if {
	not type_rank
	r := count(class_levels) - 1
}

declared_ranks contains r if {
	is_string(resource_fields.id)
	some prefix, level in cfg.classification.id_prefixes
	startswith(resource_fields.id, prefix)
	r := class_rank(level)
}

declared_ranks contains r if {
	is_string(agent.domain)
	r := class_rank(cfg.classification.domains[agent.domain])
}

classification_claimed if "classification" in object.keys(resource_fields)

claimed_ranks contains r if {
	classification_claimed
	r := class_rank(resource_fields.classification)
}

deny_reasons contains "classification_unknown" if {
	classification_claimed
	count(claimed_ranks) == 0
}

classification := class_levels[max(declared_ranks | claimed_ranks)] if count(declared_ranks) > 0

# ---------------------------------------------------------------------------
# Data residency: the region where the action takes effect must be allowed for
# the resource's classification.
# ---------------------------------------------------------------------------

allowed_regions := cfg.residency.allowed_regions[classification]

deny_reasons contains "classification_unknown" if not allowed_regions

deny_reasons contains "residency_violation" if {
	allowed_regions
	not region_allowed
}

region_allowed if "*" in allowed_regions

region_allowed if {
	is_string(resource_fields.region)
	resource_fields.region in allowed_regions
}

# ---------------------------------------------------------------------------
# Time windows: per action, else per agent domain; days and HH:MM on a clock
# shifted by utc_offset_minutes; a window is [start, end) within one day.
# The time is the enforcement point's (input.vouched.time), never the agent's.
# ---------------------------------------------------------------------------

time_windows := cfg.time_windows.actions[action]

time_windows := cfg.time_windows.domains[agent.domain] if not action_has_windows

action_has_windows if cfg.time_windows.actions[action]

# RFC 3339 with an explicit offset; the shape is checked first so both engines
# see only inputs their parsers agree on.
rfc3339_pattern := `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`

request_time_ns := time.parse_rfc3339_ns(replace(vouched.time, "Z", "+00:00")) if {
	is_string(vouched.time)
	regex.match(rfc3339_pattern, vouched.time)
}

deny_reasons contains "time_missing" if {
	time_windows
	not "time" in object.keys(vouched)
}

deny_reasons contains "time_invalid" if {
	time_windows
	"time" in object.keys(vouched)
	not request_time_ns
}

deny_reasons contains "outside_time_window" if {
	time_windows
	request_time_ns
	not within_time_window
}

within_time_window if {
	some window in time_windows
	in_window(window, request_time_ns)
}

# Day and time of day come from integer arithmetic on nanoseconds, not from time.weekday or
# time.clock: regopy 1.5.2 corrupts memory in time.weekday (and in the timezone forms of
# time.clock/date/format) when the host process loaded greenlet before regopy.
day_ns := 86400000000000

week_ns := 7 * day_ns

# 1970-01-01, nanosecond 0, was a Thursday.
weekdays_from_epoch := ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"]

floor_mod(a, b) := ((a % b) + b) % b

weekday(ns) := weekdays_from_epoch[count([k |
	some k in numbers.range(1, 6)
	floor_mod(ns, week_ns) >= k * day_ns
])]

in_window(window, ns) if {
	local_ns := ns + (window.utc_offset_minutes * 60000000000)
	weekday(local_ns) in window.days
	ns_of_day := floor_mod(local_ns, day_ns)
	ns_of_day >= clock_minutes(window.start) * 60000000000
	ns_of_day < clock_minutes(window.end) * 60000000000
}

clock_minutes(hhmm) := (to_number(parts[0]) * 60) + to_number(parts[1]) if {
	parts := split(hhmm, ":")
}

# ---------------------------------------------------------------------------
# Obligations. Redaction fields are path patterns ("**.card_number": that key
# at any depth, any letter case), applied by the enforcement point to
# everything it stores or sends.
# ---------------------------------------------------------------------------

redact_fields contains field if some field in cfg.redaction.always

redact_fields contains field if some field in cfg.redaction.actions[action]

redact_fields contains field if some field in cfg.redaction.classifications[classification]

redact_obligations := [{"type": "redact", "fields": sort([f | some f in redact_fields])}] if count(redact_fields) > 0

redact_obligations := [] if count(redact_fields) == 0

approval_obligations := [{
	"type": "approval",
	"approver_role": approver_role,
	"ttl_seconds": cfg.approvals.ttl_seconds,
}] if effect == "require_approval"

approval_obligations := [] if effect != "require_approval"

approver_role := cfg.approvals.approver_roles[agent.domain]

approver_role := cfg.approvals.default_approver_role if not domain_has_approver_role

domain_has_approver_role if cfg.approvals.approver_roles[agent.domain]
