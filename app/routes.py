"""Thin HTTP routes: parse the form, validate into a request model, hand it to the serving layer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.errors import APIError
from app.multipart import read_form
from app.protocol import TranscriptionRequest, TranslationRequest, parse_request

router = APIRouter()

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file", "model"]}}},
    }
}


async def _audio_endpoint(request: Request, model: type) -> Response:
    state = request.app.state
    async with read_form(request, state.settings.max_upload_bytes) as fields:
        parsed = parse_request(model, fields, state.registry)
        return await state.service.handle(parsed)


@router.post("/v1/audio/transcriptions", openapi_extra=_MULTIPART_BODY)
async def create_transcription(request: Request) -> Response:
    return await _audio_endpoint(request, TranscriptionRequest)


@router.post("/v1/audio/translations", openapi_extra=_MULTIPART_BODY)
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
    manager = request.app.state.manager
    return JSONResponse(
        {"status": "ok", "models": len(request.app.state.registry), "loaded": [m for _, m in manager.loaded()]}
    )
