"""What the frontends, the scheduler and the workers share: the model, the tenants file and a
ConfigMap of common settings.

The ConfigMap holds environment variables the services read (`envFrom`); component-specific
settings are command-line flags. A checksum of the ConfigMap on the pod templates rolls the
pods when it changes, since running processes do not reread their environment.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.spec import ClusterSpec

MODEL_MOUNT_PATH = "/models"
TENANTS_DIR = "/etc/fastswitch/tenants"
CONFIG_CHECKSUM_ANNOTATION = "fastswitch.io/config-checksum"


def model_argument(cluster: ClusterSpec) -> str:
    """`--model` of every service: a preset name, or the checkpoint directory in the claim."""
    model = cluster.model
    if model.preset is not None:
        return model.preset
    return f"{MODEL_MOUNT_PATH}/{model.pvc_path}".rstrip("/")


def model_volume(cluster: ClusterSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, volumes) that put the model's claim at /models, read-only; none for presets."""
    claim = cluster.model.pvc_claim_name
    if claim is None:
        return [], []
    return (
        [{"name": "model", "mountPath": MODEL_MOUNT_PATH, "readOnly": True}],
        [{"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
    )


def tenants_args(cluster: ClusterSpec) -> list[str]:
    """`--tenants-file` of the frontends (who a token is) and the scheduler (tenants' weights,
    admins); none without spec.scheduler.tenantsSecret."""
    secret = cluster.scheduler.tenants_secret
    return [] if secret is None else [f"--tenants-file={TENANTS_DIR}/{secret.key}"]


def tenants_volume(cluster: ClusterSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, volumes) of the tenants Secret, read-only; none without one.

    A directory mount (no subPath) so rotated tokens reach the running services.
    """
    secret = cluster.scheduler.tenants_secret
    if secret is None:
        return [], []
    return (
        [{"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True}],
        [{"name": "tenants", "secret": {"secretName": secret.name, "defaultMode": 0o440}}],
    )


def config_data(cluster: ClusterSpec) -> dict[str, str]:
    """Environment shared by `fastswitch frontend`, `fastswitch scheduler` and
    `fastswitch worker` (each reads the variables it declares)."""
    return {
        "FASTSWITCH_MODEL": model_argument(cluster),
        "FASTSWITCH_KVSTORE_ADDR": names.kvstore_address(cluster.name, cluster.namespace),
        "FASTSWITCH_LOG_LEVEL": cluster.log_level,
        # Checkpoints load from the claim; nothing is ever fetched from a model hub.
        "HF_HUB_OFFLINE": "1",
    }


def config_checksum(cluster: ClusterSpec) -> str:
    return hashlib.sha256(json.dumps(config_data(cluster), sort_keys=True).encode()).hexdigest()


def config_env_from(cluster: ClusterSpec) -> list[dict[str, Any]]:
    return [{"configMapRef": {"name": names.config_name(cluster.name)}}]


def build_configmap(cluster: ClusterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": pods.object_meta(cluster, names.config_name(cluster.name), names.CONFIG),
        "data": config_data(cluster),
    }
