"""The e2e tests' view of the local stack; the implementation is shared with the benchmarks (bench/)."""

from local.running_stack import REPO_ROOT, RunningStack, port_is_open, start_stack, stop_stack, wait_for

__all__ = ["REPO_ROOT", "RunningStack", "port_is_open", "start_stack", "stop_stack", "wait_for"]
