# The edge identity module: served in every enforcement-point bundle (control_plane/federation),
# never uploaded as policy. At a stock OPA sidecar the policy (agents.authz, where bundle data
# sets federation.edge) takes the agent from here, so the identity is the verified access
# token's and never the caller's input.agent; the clock is OPA's.
package federation.identity

# Bundle data is read key by key: data.federation as a whole includes this package.
# Signature (the bundle's JWKS: the control plane's token keys), iss, aud, exp and nbf (OPA's
# clock) checked by io.jwt.decode_verify; a token that fails any check leaves `agent` undefined.
verified := [header, claims] if {
	is_string(input.token)
	[valid, header, claims] := io.jwt.decode_verify(input.token, {
		"cert": json.marshal(data.federation.jwks),
		"iss": data.federation.issuer,
		"aud": data.federation.audience,
	})
	valid == true
}

# An access token (RFC 9068) of an agent of this bundle's domain, known to the registry part of
# the bundle: a token of another domain is no identity here.
agent := data.federation.agents[claims.sub] if {
	[header, claims] := verified
	header.typ == "at+jwt"
	claims.domain == data.federation.domain
	not revoked(claims)
	not stale
}

# Past the bundle's fresh_until (Unix seconds, OPA's clock): the point has not pulled for longer
# than the domain's max staleness allows, so it no longer knows who may act. No agent, so the
# decision is a deny (fail closed); agents.authz names it policy_stale. The control plane
# renews every bundle within each refresh period, so a point that can pull never gets here.
stale if time.now_ns() > data.federation.fresh_until * 1000000000

# Revoked before it expires (RFC 7009), or issued to a credential revoked since: the bundle
# lists both, so a revocation reaches the point with the next bundle revision.
revoked(claims) if data.federation.revoked.tokens[claims.jti]

revoked(claims) if data.federation.revoked.clients[claims.client_id]

vouched := {"time": time.format(time.now_ns())}
