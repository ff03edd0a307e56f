"""Tenant identity and weights, and the virtual token counters (VTC, OSDI'24).

Identity comes from call metadata: `authorization: Bearer <token>` mapped to a tenant by the
tenants file. Without a tenants file auth is off and every caller is the anonymous tenant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ANONYMOUS = "anonymous"


class AuthError(Exception):
    """The caller's credentials are missing or unknown."""


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
    def from_file(cls, path: str, *, input_weight: float, output_weight: float) -> TenantRegistry:
        registry = cls(input_weight=input_weight, output_weight=output_weight)
        if not path:
            registry.tenants[ANONYMOUS] = TenantState(ANONYMOUS, is_admin=True)
            return registry
        try:
            spec = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read tenants file {path}: {exc}") from exc
        if not isinstance(spec, dict) or not isinstance(spec.get("tokens"), dict) or not spec["tokens"]:
            raise ValueError(f"tenants file {path} needs a non-empty object 'tokens': {{token: tenant}}")
        weights = spec.get("weights", {})
        admins = set(spec.get("admins", []))
        for token, tenant in spec["tokens"].items():
            registry.tokens[str(token)] = str(tenant)
            registry.tenants.setdefault(str(tenant), TenantState(
                str(tenant), weight=float(weights.get(tenant, 1.0)), is_admin=tenant in admins))
        return registry

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
        if weight <= 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        tenant = self.tenants.setdefault(name, TenantState(name))
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
