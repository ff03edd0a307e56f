"""The `fastswitch` command: the top layer, allowed to start every service."""
