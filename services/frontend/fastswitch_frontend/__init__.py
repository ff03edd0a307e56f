"""The FastSwitch frontend: the client-facing API (fastswitch.v1.Scheduler), stateless and
scaled out. It authenticates callers, validates and tokenizes prompts, asks the scheduler where
each request runs, hands the request to that worker and streams its tokens straight back."""
