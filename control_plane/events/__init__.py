"""Events: a transactional outbox of CloudEvents 1.0, read by cursor, as Server-Sent Events and
by signed webhooks."""
