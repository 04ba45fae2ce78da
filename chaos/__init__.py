"""The crash harness: ``python -m chaos`` (``make chaos``).

It runs Kassasync as child processes against the Fortnox sandbox and simulated tills, with a
generated multi-tenant workload (chaos/workload.py); SIGKILLs the processes at random moments and
right after committed writes, restarts them (and, on Kafka, the broker once); and compares
the till's and Fortnox's final state with an uninterrupted run of the same workload (same seed).
See docs/reliability.md.
"""
