"""The CRD's spec.{scheduler,workers}.settings accept what the operator accepts (every other
setting of the services by its camelCase name) and refuse the rest."""

from __future__ import annotations

import jsonschema
import pytest

from fastswitch_operator import names

BASE = {"apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": "demo", "namespace": "ns"}}


def test_settings_validate(validate_cluster) -> None:
    validate_cluster({**BASE, "spec": {
        "model": {"preset": "tiny"},
        "scheduler": {"settings": {"vtcQuantum": 64, "kvAdmitHeadroomTokens": 256,
                                   "tenantIdleGraceS": 1.5}},
        "workers": {"settings": {"numComputeThreads": 4, "kvReuse": False, "simulate": True,
                                 "simulatedStepMs": 12.5}}}})


@pytest.mark.parametrize("bad", [
    {"scheduler": {"settings": {"policy": "fcfs"}}},  # has a field of its own
    {"scheduler": {"settings": {"vtcQuantum": -1}}},
    {"workers": {"settings": {"kvReuse": "yes"}}},
    {"workers": {"settings": {"numComputeThreads": 1.5}}},
])
def test_settings_outside_the_list_are_refused(validate_cluster, bad) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_cluster({**BASE, "spec": {"model": {"preset": "tiny"}, **bad}})
