"""gRPC service around the engine: fastswitch.v1.Worker."""
