"""Audit events: decoding the ring buffer's bytes and naming the rule behind each one."""
