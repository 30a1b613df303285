"""Budgets and rate limits: actions per minute and hour, spend per day, per agent and domain."""
