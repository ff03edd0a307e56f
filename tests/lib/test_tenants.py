"""Tenants file validation, weights, anonymous admin, and collision-free conversation scoping."""

from __future__ import annotations

import json
import math

import pytest

from fastswitch.tenants import (
    ANONYMOUS,
    TenantRegistry,
    TenantState,
    UnknownTenantError,
    check_tenant_name,
)
from fastswitch.v1 import common_pb2
from fastswitch_frontend.requests import FrontendRequest


def load(tmp_path, spec) -> TenantRegistry:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(spec))
    return TenantRegistry.from_file(str(path), input_weight=1.0, output_weight=2.0)


def test_a_valid_file_loads_tokens_weights_and_admins(tmp_path):
    registry = load(tmp_path, {"tokens": {"ta": "alice", "tb": "bob"}, "weights": {"bob": 2.5},
                               "admins": ["alice"]})
    assert registry.tokens == {"ta": "alice", "tb": "bob"}
    assert registry.tenants["bob"].weight == 2.5 and registry.tenants["alice"].is_admin
    assert not registry.tenants["bob"].is_admin


@pytest.mark.parametrize("spec, message", [
    ({"tokens": {"t": "x:y"}}, "tenant names"),
    ({"tokens": {"t": "a" * 65}}, "tenant names"),
    ({"tokens": {"t": ""}}, "tenant names"),
    ({"tokens": {"t": "white space"}}, "tenant names"),
    ({"tokens": {"t": 7}}, "tenant names"),
    ({"tokens": {"": "alice"}}, "token of tenant"),
    ({"tokens": {"a token": "alice"}}, "token of tenant"),
    ({"tokens": {"t": "alice"}, "weights": {"alice": "NaN"}}, "finite number"),
    ({"tokens": {"t": "alice"}, "weights": {"alice": 0}}, "finite number"),
    ({"tokens": {"t": "alice"}, "weights": {"alice": 1e9}}, "finite number"),
    ({"tokens": {"t": "alice"}, "weights": {"bob": 1}}, "has no token"),
    ({"tokens": {"t": "alice"}, "admins": ["root"]}, "has no token"),
    ({"tokens": {}}, "non-empty object"),
    ([], "non-empty object"),
])
def test_an_invalid_file_is_refused_with_the_reason(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        load(tmp_path, spec)


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-310, 5e-4, 1e4])
def test_set_weight_refuses_what_would_poison_a_counter(tmp_path, weight):
    registry = load(tmp_path, {"tokens": {"t": "alice"}})
    with pytest.raises(ValueError, match="finite number"):
        registry.set_weight("alice", weight)
    assert registry.tenants["alice"].weight == 1.0


def test_set_weight_refuses_unknown_tenants_and_changes_known_ones(tmp_path):
    registry = load(tmp_path, {"tokens": {"t": "alice"}})
    with pytest.raises(UnknownTenantError):
        registry.set_weight("mallory", 2.0)
    assert "mallory" not in registry.tenants
    assert registry.set_weight("alice", 4.0).weight == 4.0
    registry.charge(registry.tenants["alice"], num_prompt_tokens=4, num_generated_tokens=2)
    assert registry.tenants["alice"].virtual_tokens == pytest.approx((4 + 2 * 2) / 4.0)


def test_without_a_file_the_anonymous_tenant_is_admin_only_when_asked():
    closed = TenantRegistry.from_file("", input_weight=1.0, output_weight=2.0)
    assert not closed.identify(()).is_admin and closed.identify(()).name == ANONYMOUS
    opened = TenantRegistry.from_file("", input_weight=1.0, output_weight=2.0,
                                      allow_anonymous_admin=True)
    assert opened.identify(()).is_admin


def test_tenant_names_cannot_make_scoped_conversation_ids_collide():
    """The collision a review found: tenant x:y + conversation z against tenant x +
    conversation y:z. Tenant names cannot hold ':' so the first ':' always ends the tenant."""
    with pytest.raises(ValueError):
        check_tenant_name("x:y")

    def scoped(tenant: str, conversation: str) -> str:
        return FrontendRequest(request_id="r", client_request_id="c", tenant=TenantState(tenant),
                               prompt_token_ids=[1], sampling=common_pb2.SamplingParams(),
                               stop=common_pb2.StopConditions(max_tokens=1), detokenizer=None,
                               conversation_id=conversation).scoped_conversation_id

    assert scoped("x", "y:z").split(":", 1) == ["x", "y:z"]
    assert scoped("x", "y:z") != scoped("x.y", "z") != scoped("x", "y.z")
