"""Fleet registry operations shared by the HTTP views, the CLI and in-process callers."""

from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter, ValidationError

from cloud.credentials import (
    hash_code,
    hash_secret,
    new_agent_id,
    new_agent_token,
    new_enroll_code,
)
from cloud.errors import UsageError
from cloud.storage.base import EnrollCode, Storage
from protocol.base import Id
from protocol.wire import EnrollRequest, EnrollResponse

DEFAULT_CODE_TTL = timedelta(hours=24)  # DESIGN.md "Commands": codes expire in 24 h
_ID_ADAPTER: TypeAdapter[str] = TypeAdapter(Id)


def validate_id(value: str, what: str = "store id") -> str:
    """`value` if it is a protocol Id, else UsageError saying what an Id may contain."""
    try:
        return _ID_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise UsageError(
            f"invalid {what} {value[:80]!r}: use 1-64 characters from A-Z a-z 0-9 _ . : -"
        ) from exc


async def issue_enroll_code(
    storage: Storage,
    store_id: str,
    ttl: timedelta = DEFAULT_CODE_TTL,
    now: datetime | None = None,
) -> EnrollCode:
    """A new single-use code for `store_id`, creating the store if it is new."""
    store_id = validate_id(store_id)
    now = now or datetime.now(UTC)
    code = new_enroll_code()
    expires_at = now + ttl
    created = await storage.add_enroll_code(store_id, hash_code(code), expires_at, now)
    return EnrollCode(code=code, store_id=store_id, expires_at=expires_at, store_created=created)


async def enroll_agent(
    storage: Storage, request: EnrollRequest, now: datetime | None = None
) -> EnrollResponse:
    """Trade a code for new agent credentials; EnrollmentRefused for a bad code."""
    token = new_agent_token()
    args = (
        hash_secret(token),
        request.agent_info.model_dump(mode="json"),
        now or datetime.now(UTC),
    )
    if request.agent_id is not None:  # re-enrollment: same identity, fresh token
        identity = await storage.reenroll(hash_code(request.code), request.agent_id, *args)
    else:
        identity = await storage.enroll(hash_code(request.code), new_agent_id(), *args)
    return EnrollResponse(agent_id=identity.agent_id, store_id=identity.store_id, token=token)
