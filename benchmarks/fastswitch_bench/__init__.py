"""Pure parts of `fastswitch bench`: workloads, priority traces, statistics and the report.

Nothing in this package talks gRPC or starts services; the CLI's bench command drives the
stack and hands its client-side timings and worker stats to these modules.
"""
