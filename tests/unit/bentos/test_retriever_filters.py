"""The retriever's filters become Milvus expressions that quote every value, or a clear error."""

import pytest

from bentos.retriever.filters import FilterError, filter_expression


def test_filter_expression_refuses_what_it_cannot_quote():
    with pytest.raises(FilterError, match="filter.doc_id: values must be strings"):
        filter_expression({"doc_id": ["a", 1]})
    assert filter_expression({}) == ""
    assert filter_expression({"source": "docs", "title": ["A", "B"]}) == '(source == "docs") and (title in ["A", "B"])'
