"""Errors of the KV index, independent of gRPC; the servicer maps each to a status code."""

from __future__ import annotations


class KVIndexError(Exception):
    """Base class of every error the index raises on purpose."""


class InvalidRequestError(KVIndexError, ValueError):
    """The caller sent something malformed (empty id, negative size...)."""


class NotFoundError(KVIndexError):
    """An unknown conversation or worker was looked up."""


class WorkerNotRegisteredError(KVIndexError):
    """A worker published before registering (or after the index lost its registration)."""


class ConflictError(KVIndexError):
    """A transaction kept losing races with concurrent writers; the caller may retry."""


class StoreUnavailableError(KVIndexError):
    """Redis did not answer (down, unreachable or timed out)."""


class StoreError(KVIndexError):
    """Redis answered with an error: a bug or a foreign value under our keys."""
