"""kopf operator for the FastSwitchCluster custom resource.

- `spec` (with `spec_fields`, `spec_frontend` and `spec_security`) parses and validates a
  resource's spec into dataclasses;
- `names` builds every child name, label and in-cluster address;
- `build_config`, `build_workers`, `build_frontend`, `build_scheduler`, `build_kvstore`,
  `build_network_policies` turn a spec into child manifests (pure functions), `children` lists
  them, `pods` holds what they share and `build_transport` what every service container gets
  for transport security (cluster credential, TLS, probes); `build_secrets` builds the Secrets
  the operator generates once per cluster;
- `patching` decides what a live child needs (pure), `status` computes status (pure);
- `kube` is the only module that talks to the Kubernetes API;
- `reconcile` ties them together; `handlers` holds the thin kopf handlers
  (`kopf run -m fastswitch_operator.handlers`), `config` the operator's own settings.
"""
