"""Root of the agent's exceptions, split by what the caller can do about them."""


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """agent.toml is invalid; the message names the key and line. Fix the file, do not start."""


class OutboxError(AgentError):
    """The outbox could not take or give events; the caller retries or alarms."""


class OutboxClosed(OutboxError):
    """The outbox was closed; no more events are accepted."""


class DeviceError(AgentError):
    """A device misbehaved; the supervisor retries it with backoff."""


class SyncError(AgentError):
    """The cloud refused or could not be reached; the sync loop backs off and retries."""
