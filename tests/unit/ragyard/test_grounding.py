from ragyard.grounding import claims, grounding

PAGE = (
    "SQLITE_LIMIT_ATTACHED: the maximum number of attached databases, 10 by default. "
    "Change it with sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, n). Up to 1,000 columns."
)


def test_numbers_options_code_spans_and_code_like_names_are_claims_prose_is_not():
    answer = (
        "Yes, e.g. call `sqlite3_limit()` with SQLITE_LIMIT_ATTACHED [1]; the default is 10 [2]. "
        "Pass --max-attach, or see str.partition() and ThreadPoolExecutor.\n1. Open the database."
    )
    assert claims(answer) == [
        "sqlite3_limit",
        "SQLITE_LIMIT_ATTACHED",
        "str.partition",
        "ThreadPoolExecutor",
        "--max-attach",
        "10",
    ]
    assert claims("Generators are lazy. Use them when a list would be too large.") == []


def test_a_number_the_page_contradicts_is_unsupported_and_the_score_counts_it():
    wrong = grounding("The default maximum of attached databases is 125 (use `sqlite3_limit`).", [PAGE])
    assert wrong.unsupported == ("125",)
    assert wrong.score == 0.5 and wrong.wire() == {"claims": 2, "unsupported": ["125"], "score": 0.5}
    right = grounding("It is 10 by default; sqlite3_limit() changes it. Up to 1000 columns.", [PAGE])
    assert right.unsupported == () and right.score == 1.0  # 1,000 and 1000 are one number


def test_numbers_match_whole_not_as_part_of_another():
    assert grounding("Version 3.1 added it.", ["Changed in version 3.11."]).unsupported == ("3.1",)
    assert grounding("It takes 1 argument.", ["It takes 10 arguments."]).unsupported == ("1",)


def test_a_qualified_name_is_supported_by_its_parts_and_the_question_counts_as_a_source():
    assert grounding("Use str.partition().", ["str methods", "partition(sep) splits at sep"]).unsupported == ()
    assert grounding("Use os.path.joinpath().", ["os.path.join(a, *p)"]).unsupported == ("os.path.joinpath",)
    assert grounding("Call my_helper() first.", ["What does my_helper do?"]).unsupported == ()


def test_an_answer_without_checkable_claims_is_grounded():
    result = grounding("It depends on what you need.", [])
    assert result.claims == () and result.score == 1.0
