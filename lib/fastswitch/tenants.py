"""Tenant identity and weights, and the virtual token counters (VTC, OSDI'24).

Identity comes from call metadata: `authorization: Bearer <token>` mapped to a tenant by the
tenants file. Without a tenants file auth is off and every caller is the anonymous tenant, an
admin only when the operator opted in (`--allow-anonymous-admin`).

Tenant names are checked when the file loads: letters, digits and `_.-`, so a name can never
contain the `:` that scopes conversation ids (`<tenant>:<conversation>`), and one tenant cannot
name another's conversation.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

ANONYMOUS = "anonymous"
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
MIN_WEIGHT = 1e-3
MAX_WEIGHT = 1e3
MAX_TOKEN_CHARS = 4096


class AuthError(Exception):
    """The caller's credentials are missing or unknown."""


class UnknownTenantError(KeyError):
    """An admin call named a tenant the tenants file does not declare."""


def check_weight(weight: float) -> float:
    """Raises ValueError unless `weight` is finite and in [MIN_WEIGHT, MAX_WEIGHT]: a NaN, an
    infinity or a denormal would poison the tenant's virtual counter for good."""
    if not (isinstance(weight, int | float) and math.isfinite(weight)
            and MIN_WEIGHT <= weight <= MAX_WEIGHT):
        raise ValueError(f"weight must be a finite number in [{MIN_WEIGHT:g}, {MAX_WEIGHT:g}], "
                         f"got {weight!r}"[:200])
    return float(weight)


def check_tenant_name(name: str) -> str:
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
        raise ValueError("tenant names are 1-64 letters, digits and _.- (starting with a letter "
                         f"or digit), got {shorten(str(name))!r}")
    return name


def shorten(text: str, limit: int = 64) -> str:
    """What error messages quote of a caller's string: never more than `limit` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class TenantState:
    name: str
    weight: float = 1.0
    is_admin: bool = False
    virtual_tokens: float = 0.0  # weighted tokens served / weight
    num_served_prompt_tokens: int = 0
    num_served_generated_tokens: int = 0


@dataclass
class TenantRegistry:
    """Mutated by the scheduler's asyncio loop only."""

    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> tenant
    tenants: dict[str, TenantState] = field(default_factory=dict)
    input_weight: float = 1.0
    output_weight: float = 2.0

    @property
    def is_auth_enabled(self) -> bool:
        return bool(self.tokens)

    @classmethod
    def from_file(cls, path: str, *, input_weight: float, output_weight: float,
                  allow_anonymous_admin: bool = False) -> TenantRegistry:
        """Raises ValueError naming the first problem of an unreadable or invalid file."""
        registry = cls(input_weight=input_weight, output_weight=output_weight)
        if not path:
            registry.tenants[ANONYMOUS] = TenantState(ANONYMOUS, is_admin=allow_anonymous_admin)
            return registry
        try:
            spec = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read tenants file {path}: {exc}") from exc
        try:
            registry._load(spec)
        except ValueError as exc:
            raise ValueError(f"tenants file {path}: {exc}") from exc
        return registry

    def _load(self, spec: object) -> None:
        if not isinstance(spec, dict) or not isinstance(spec.get("tokens"), dict) or not spec["tokens"]:
            raise ValueError("needs a non-empty object 'tokens': {token: tenant}")
        weights, admins = spec.get("weights", {}), spec.get("admins", [])
        if not isinstance(weights, dict) or not isinstance(admins, list):
            raise ValueError("'weights' must be an object {tenant: weight}, 'admins' a list")
        for token, tenant in spec["tokens"].items():
            if not token or len(token) > MAX_TOKEN_CHARS or not token.isprintable() or " " in token:
                raise ValueError(f"token of tenant {shorten(str(tenant))!r} must be 1-{MAX_TOKEN_CHARS} "
                                 "printable characters without spaces")
            self.tokens[token] = check_tenant_name(tenant)
            self.tenants.setdefault(tenant, TenantState(tenant))
        for tenant, weight in weights.items():
            if tenant not in self.tenants:
                raise ValueError(f"weight for {shorten(str(tenant))!r}, which has no token")
            self.tenants[tenant].weight = check_weight(weight)
        for tenant in admins:
            if tenant not in self.tenants:
                raise ValueError(f"admin {shorten(str(tenant))!r} has no token")
            self.tenants[tenant].is_admin = True

    def identify(self, metadata: tuple[tuple[str, str], ...] | None) -> TenantState:
        """The tenant of a call; raises AuthError when auth is on and the token is unknown."""
        if not self.is_auth_enabled:
            return self.tenants[ANONYMOUS]
        header = dict(metadata or ()).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise AuthError("missing or unknown bearer token")
        return self.tenants[self.tokens[token]]

    def set_weight(self, name: str, weight: float) -> TenantState:
        """Mutates. Raises ValueError for a weight out of range, UnknownTenantError for a tenant
        the tenants file does not declare."""
        weight = check_weight(weight)
        tenant = self.tenants.get(name)
        if tenant is None:
            raise UnknownTenantError(name)
        tenant.weight = weight
        return tenant

    # ---- VTC ------------------------------------------------------------------------------
    def charge(self, tenant: TenantState, *, num_prompt_tokens: int, num_generated_tokens: int) -> None:
        """Mutates: counts served tokens into the tenant's virtual counter."""
        tenant.num_served_prompt_tokens += num_prompt_tokens
        tenant.num_served_generated_tokens += num_generated_tokens
        cost = self.input_weight * num_prompt_tokens + self.output_weight * num_generated_tokens
        tenant.virtual_tokens += cost / tenant.weight

    def lift(self, tenant: TenantState, active: list[TenantState]) -> None:
        """Mutates: a tenant becoming active starts no lower than the least-served active one,
        so idle time is not banked as credit (VTC's counter lift)."""
        others = [t.virtual_tokens for t in active if t is not tenant]
        if others:
            tenant.virtual_tokens = max(tenant.virtual_tokens, min(others))
