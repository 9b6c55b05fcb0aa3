"""Print outcome events: every queued job ends in exactly one of these."""

from typing import Annotated

from pydantic import Field

from protocol.base import Frozen, Id, Short


class PrintCompletedPayload(Frozen):
    """A job reached the printer and the printer reported it done."""

    job_id: Id
    template: Annotated[str, Field(max_length=64)]
    bytes_sent: int = Field(ge=0)
    attempts: int = Field(ge=1)
    queued_ms: int = Field(ge=0, description="from enqueue to completion")
    reprint: bool = Field(
        default=False,
        description="printed as a marked copy: an earlier attempt may be on paper too",
    )
    note: Short | None = Field(default=None, description="why it was requeued or copied")


class PrintFailedPayload(Frozen):
    """A job given up on (bad template, or uncertain whether it printed): never retried blindly."""

    job_id: Id
    template: Annotated[str, Field(max_length=64)]
    reason: Short
    attempts: int = Field(ge=0)
