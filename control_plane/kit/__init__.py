"""Small shared helpers used by every domain package: database, errors, routing, pagination."""
