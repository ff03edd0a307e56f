"""The whole FastSwitch stack (kvstore, workers, scheduler) on 127.0.0.1.

`process_stack`: each service a process, started as containers start them (`fastswitch up`,
`fastswitch bench`, the benchmarks, the fault-injection tests). `local_stack`: every service in
the caller's event loop, for tests that inspect engine and scheduler state directly.

This layer sits between the services it starts and the commands and benchmarks that use it.
"""
