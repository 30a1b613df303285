"""The framework floor for the decision hot path bench: a FastAPI route that validates the same
request body as ``POST /v1/decisions`` (the same pydantic model) and answers a fixed allow, with
no middleware, authentication, SQL or engine. Served by uvicorn as the control plane is:

    uvicorn bench.floor_app:app

What this costs per request is the least any decision served by this stack can cost.
"""

from __future__ import annotations

from fastapi import FastAPI

from control_plane.decisions.schemas import DecisionRequest

app = FastAPI()


@app.post("/v1/decisions")
async def decide(body: DecisionRequest) -> dict[str, object]:
    return {"effect": "allow", "allow": True, "reasons": [], "obligations": []}
