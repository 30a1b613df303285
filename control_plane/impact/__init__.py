"""Impact analysis: replay stored decision inputs against a candidate policy revision.

``POST /v1/policies/{bundle}/revisions/{revision}/impact`` answers inline for small windows and
as a background job (``jobs``) for large ones; ``service`` streams through the decisions in
keyset pages and evaluates each stored input with the embedded wasm engine.
"""
