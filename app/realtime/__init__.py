"""OpenAI's Realtime transcription WebSocket (`/v1/realtime?intent=transcription`)."""
