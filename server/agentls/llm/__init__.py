"""Chat backends for local model servers."""
