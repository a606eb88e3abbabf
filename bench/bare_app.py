"""The baseline for bench/webhook.py: a FastAPI endpoint that reads the body and does nothing."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/webhooks/alertmanager", status_code=202)
async def alertmanager(request: Request) -> dict[str, list[str]]:
    await request.body()
    return {"accepted": [], "duplicates": [], "resolved": []}
