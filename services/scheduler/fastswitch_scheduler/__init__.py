"""Cluster scheduler: fairness policy, routing, preempt/resume decisions (fastswitch.v1.Scheduler)."""
