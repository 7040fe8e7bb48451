"""Moderation: the gate and its batcher, per-server policy, the outage queue, records and strikes."""
