"""The FastSwitch frontend: the client-facing APIs (fastswitch.v1.Scheduler over gRPC, and the
OpenAI-compatible HTTP API in openai_api/), stateless and scaled out. It authenticates callers,
validates and tokenizes prompts, asks the scheduler where each request runs, hands the request
to that worker and streams its tokens straight back."""
