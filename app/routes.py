"""Thin HTTP routes: parse the form, validate into a request model, hand it to the serving layer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.disconnect import ClientGone, cancel_on_disconnect
from app.errors import APIError
from app.multipart import read_form
from app.openapi_body import multipart_body
from app.responses import answer
from app.protocol import TranscriptionRequest, TranslationRequest, parse_request

router = APIRouter()


async def _audio_endpoint(request: Request, model: type) -> Response:
    state = request.app.state
    labels = {"model": "invalid", "format": "invalid"}
    status = 500
    try:
        async with read_form(request, state.settings.max_upload_bytes) as fields:
            parsed = parse_request(model, fields, state.registry)
            labels = {"model": parsed.entry.id, "format": parsed.response_format}
            work = answer(state.service, parsed, ping_seconds=state.settings.sse_ping_seconds)
            response = await cancel_on_disconnect(request, work)
        status = response.status_code
        return response
    except APIError as exc:
        status = exc.status
        raise
    except ClientGone:
        status = 499  # nginx's "client closed request": nobody is left to read an answer
        return Response(status_code=499)
    finally:
        state.metrics.requests.labels(labels["model"], labels["format"], str(status)).inc()


@router.post("/v1/audio/transcriptions", openapi_extra=multipart_body(TranscriptionRequest))
async def create_transcription(request: Request) -> Response:
    return await _audio_endpoint(request, TranscriptionRequest)


@router.post("/v1/audio/translations", openapi_extra=multipart_body(TranslationRequest))
async def create_translation(request: Request) -> Response:
    return await _audio_endpoint(request, TranslationRequest)


def _model_card(entry) -> dict:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [_model_card(e) for e in request.app.state.registry]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> JSONResponse:
    entry = request.app.state.registry.get(model_id)
    if entry is None:
        raise APIError(
            f"The model '{model_id}' does not exist", status=404, param="model", code="model_not_found"
        )
    return JSONResponse(_model_card(entry))


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Cheap enough for probes: 200 while requests are taken, 503 when the queue is full."""
    state = request.app.state
    admission = state.service.admission
    full = admission.running >= admission.slots and admission.waiting >= admission.max_queue
    return JSONResponse(
        {
            "status": "full" if full else "ok",
            "models": len(state.registry),
            "loaded": [model for _, model in state.manager.loaded()],
            "queue": {"running": admission.running, "waiting": admission.waiting,
                      "slots": admission.slots, "max_queue": admission.max_queue},
        },
        status_code=503 if full else 200,
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
