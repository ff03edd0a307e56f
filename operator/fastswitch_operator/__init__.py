"""kopf operator for the FastSwitchCluster custom resource.

- `spec` (with `spec_fields`) parses and validates a resource's spec into dataclasses;
- `names` builds every child name, label and in-cluster address;
- `build_config`, `build_workers`, `build_scheduler`, `build_kvstore` turn a spec into child
  manifests (pure functions), `children` lists them, `pods` holds what they share;
- `patching` decides what a live child needs (pure), `status` computes status (pure);
- `kube` is the only module that talks to the Kubernetes API;
- `reconcile` ties them together; `handlers` holds the thin kopf handlers
  (`kopf run -m fastswitch_operator.handlers`), `config` the operator's own settings.
"""
