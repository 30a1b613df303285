"""Approvals: a human decision bound to one exact action, used at most once."""
