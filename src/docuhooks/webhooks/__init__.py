"""Webhook administration: configuration rules, secrets, matching, and the admin service."""
