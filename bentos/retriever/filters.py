"""Metadata filters of a search: validated against an allow-list, values quoted, never pasted."""

from __future__ import annotations

from collections.abc import Mapping

from ragyard import collection as col
from ragyard.kit.errors import ServiceError

# The metadata a client may filter on; anything else is refused by name.
FILTERABLE_FIELDS = (col.DOC_ID, col.SOURCE, col.PATH, col.TITLE, col.SECTION)
MAX_VALUES_PER_FIELD = 100


class FilterError(ServiceError):
    """A filter the retriever refuses (a 400); the message names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(400, f"filter.{field}: {message}", param="filter")
        self.field = field


def filter_expression(filters: Mapping[str, object]) -> str:
    """A Milvus boolean expression for `{field: value | [values]}`, ANDed; "" for no filter."""
    clauses = []
    for field, value in filters.items():
        if field not in FILTERABLE_FIELDS:
            raise FilterError(field, f"unknown field; allowed: {', '.join(FILTERABLE_FIELDS)}")
        if isinstance(value, str):
            clauses.append(f"{field} == {col.literal(value)}")
        elif isinstance(value, list):
            if not value:
                raise FilterError(field, "an empty list matches nothing; give at least one value")
            if len(value) > MAX_VALUES_PER_FIELD:
                raise FilterError(field, f"{len(value)} values exceed the limit of {MAX_VALUES_PER_FIELD}")
            if not all(isinstance(v, str) for v in value):
                raise FilterError(field, "values must be strings")
            clauses.append(col.in_list(field, value))
        else:
            raise FilterError(field, f"value must be a string or a list of strings, not {type(value).__name__}")
    return " and ".join(f"({c})" for c in clauses)
