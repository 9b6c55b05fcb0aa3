"""Building blocks every wire model uses: the frozen base and the constrained string types."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from protocol.constants import MAX_ID_LEN, MAX_TEXT_LEN

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Text = Annotated[str, Field(max_length=MAX_TEXT_LEN)]
Short = Annotated[str, Field(max_length=256)]


class Frozen(BaseModel):
    """Immutable, strict about unknown fields, serialized by alias."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True
    )
