"""The OpenAI-compatible HTTP API of a frontend (`/v1/chat/completions`, `/v1/completions`,
`/v1/models`, `/health`), served by aiohttp on the frontend's own event loop beside the gRPC
server. It parses an OpenAI request into the same GenerateRequest the gRPC API takes and drives
the same FrontendCore through fastswitch_frontend.generation: one pipeline, two encodings.

Modules: `server` (start/stop, TLS), `routes` (the handlers), `params` (body -> GenerateRequest),
`chat` (messages -> prompt tokens and the derived conversation id), `chat_template` (the
checkpoint's Jinja template), `stop_strings`, `sse` (response bodies and server-sent events),
`errors` (OpenAI error bodies and the gRPC -> HTTP status table).
"""
