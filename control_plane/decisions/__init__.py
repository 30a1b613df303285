"""Decisions: an agent asks before it acts; the answer comes from policy and is recorded."""
