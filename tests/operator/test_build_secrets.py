"""The Secrets the operator generates, built as pure functions, and which existing ones it
accepts in their place."""

from __future__ import annotations

import base64
import itertools

import kubernetes_validate
import pytest

from fastswitch import transport
from fastswitch_operator import names
from fastswitch_operator.build_secrets import (
    CLUSTER_TOKEN_ENV,
    build_cluster_token_secret,
    build_redis_password_secret,
    build_secrets,
    new_secret_value,
    secret_problem,
)
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def cluster(**spec):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)


def decoded(secret, key):
    return base64.b64decode(secret["data"][key]).decode()


def with_data(secret, **data):
    return {**secret, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_the_services_read_the_token_from_the_variable_the_pods_set():
    assert CLUSTER_TOKEN_ENV == transport.CLUSTER_TOKEN_ENV


def test_generated_values_are_random_and_acceptable_to_the_services():
    values = {new_secret_value() for _ in range(20)}
    assert len(values) == 20
    for value in values:
        transport.TransportSecurity(cluster_token=value)  # raises if the services would refuse it
        assert len(value) >= 40 and value.replace("-", "").replace("_", "").isalnum()


def test_a_cluster_with_a_managed_redis_gets_a_token_and_a_redis_password():
    counter = itertools.count()
    built = build_secrets(cluster(), new_value=lambda: f"value-number-{next(counter):04d}")
    assert [s["metadata"]["name"] for s in built] == [names.cluster_token_name("demo"),
                                                      names.redis_password_name("demo")]
    assert decoded(built[0], "token") == "value-number-0000"
    assert decoded(built[1], "password") == "value-number-0001"
    for secret in built:
        assert secret["immutable"] is True and secret["type"] == "Opaque"
        assert secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
        # The value is in data only: never in an annotation or a label.
        assert "annotations" not in secret["metadata"]
        kubernetes_validate.validate(secret, "1.30.0", strict=True)


def test_an_external_redis_needs_no_generated_password():
    built = build_secrets(cluster(kvstore={"redis": {"url": "redis://:pw@cache:6379/0"}}))
    assert [s["metadata"]["name"] for s in built] == ["demo-cluster-token"]


TOKEN = build_cluster_token_secret(cluster(), "x" * 43)
PASSWORD = build_redis_password_secret(cluster(), "y" * 43)


@pytest.mark.parametrize(("desired", "live", "problem"), [
    (TOKEN, TOKEN, None),
    (PASSWORD, PASSWORD, None),
    (TOKEN, with_data(TOKEN, token="a-token-a-user-chose!"), None),
    (TOKEN, with_data(TOKEN, other="x" * 20), "has no key 'token'"),
    (TOKEN, with_data(TOKEN, token="short"), "at least 16 printable characters"),
    (TOKEN, with_data(TOKEN, token="a token with spaces in"), "without spaces"),
    (TOKEN, {**TOKEN, "data": {"token": "%%%"}}, "not valid base64"),
    # It goes into redis://:PASSWORD@host unescaped.
    (PASSWORD, with_data(PASSWORD, password="p@ss/word:with#url-chars"), "URL-safe"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_an_existing_secret_is_used_only_when_the_services_can_use_it(desired, live, problem):
    found = secret_problem(desired, live)
    if problem is None:
        assert found is None
    else:
        assert problem in found and live["metadata"]["name"] in found
