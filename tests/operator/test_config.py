"""The operator's configuration from its environment."""

from __future__ import annotations

import pytest

from fastswitch_operator.config import API_SERVER_ENV, OperatorConfig


def test_images_default_to_this_version_of_fastswitch():
    config = OperatorConfig.from_env({})
    assert config.default_images.worker.startswith("fastswitch/worker:")
    assert config.default_images.worker.split(":")[1] == config.default_images.scheduler.split(":")[1]
    assert config.default_images.frontend.startswith("fastswitch/frontend:")
    assert config.default_images.pull_policy == "IfNotPresent"
    assert config.api_server is None


def test_chart_sets_images_and_pull_secrets():
    config = OperatorConfig.from_env({
        "FASTSWITCH_WORKER_IMAGE": "registry.example/fs/worker:9",
        "FASTSWITCH_FRONTEND_IMAGE": "registry.example/fs/frontend:9",
        "FASTSWITCH_IMAGE_PULL_POLICY": "Always",
        "FASTSWITCH_IMAGE_PULL_SECRETS": "a, b,",
        API_SERVER_ENV: "http://127.0.0.1:8001",
    })
    assert config.default_images.worker == "registry.example/fs/worker:9"
    assert config.default_images.frontend == "registry.example/fs/frontend:9"
    assert config.default_images.pull_policy == "Always"
    assert config.default_images.pull_secrets == ("a", "b")
    assert config.api_server == "http://127.0.0.1:8001"


def test_unknown_pull_policy_is_refused_at_startup():
    with pytest.raises(ValueError, match="FASTSWITCH_IMAGE_PULL_POLICY"):
        OperatorConfig.from_env({"FASTSWITCH_IMAGE_PULL_POLICY": "Sometimes"})
