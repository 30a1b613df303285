"""Engine implementations behind `control_plane.policy.engine.PolicyEngine`."""
