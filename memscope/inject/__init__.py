"""memscope's side of the in-process agent: bootstrap environment, channel client, injection
into running interpreters (attach) and site resolution."""

from memscope.inject.bootstrap import DEFAULT_FRAMES, agent_env, make_run_dir, remove_run_dir
from memscope.inject.channel import AgentClient, agent_pids, wait_for_agent
from memscope.inject.errors import (
    AgentError,
    InjectError,
    PtraceDenied,
    RemoteDebugDisabled,
)

__all__ = [
    "DEFAULT_FRAMES",
    "AgentClient",
    "AgentError",
    "InjectError",
    "PtraceDenied",
    "RemoteDebugDisabled",
    "agent_env",
    "agent_pids",
    "make_run_dir",
    "remove_run_dir",
    "wait_for_agent",
]
