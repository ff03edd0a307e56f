"""kopf operator for the FastSwitchCluster custom resource.

Layout: `spec` parses and validates a resource's spec, `names` builds every child name and
label, `build_*` modules turn a spec into child manifests (pure functions), `patching` decides
what a child needs (pure), `status` computes status and conditions (pure), `kube` is the only
module that talks to the Kubernetes API, `reconcile` ties them together and `handlers` holds
the thin kopf handlers (`kopf run -m fastswitch_operator.handlers`).
"""
