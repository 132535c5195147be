"""Outbound delivery: the address policy, the HTTP transport, and the worker that uses them."""
