"""The worker engine: model, paged KV cache, block groups, swapping and continuous batching."""
