"""Values are made to fit the collection's VARCHAR limits (bytes of UTF-8) before they reach Milvus."""

from ragyard import collection as col


def test_a_label_is_cut_at_a_character_boundary_within_its_limit():
    assert col.fit_label("short", 10) == "short"
    cut = col.fit_label("é" * 600, 1024)  # 1,200 bytes
    assert len(cut.encode()) <= 1024 and cut.endswith("…") and set(cut[:-1]) == {"é"}
    assert len(col.fit_label("😀" * 300, 1024).encode()) <= 1024


def test_an_id_too_long_is_hashed_stably_and_distinctly():
    assert col.fit_id("docs:a.md", col.DOC_ID_MAX_BYTES) == "docs:a.md"
    long_a, long_b = "docs:" + "é/" * 800 + "a.md", "docs:" + "é/" * 800 + "b.md"
    fitted = col.fit_id(long_a, col.DOC_ID_MAX_BYTES)
    assert len(fitted.encode()) <= col.DOC_ID_MAX_BYTES and fitted.startswith("docs:é/é/")
    assert fitted == col.fit_id(long_a, col.DOC_ID_MAX_BYTES) != col.fit_id(long_b, col.DOC_ID_MAX_BYTES)
    # The longest chunk id made from a fitted document id still fits its field.
    assert len(f"{fitted}#{2**31 - 1}".encode()) <= col.VARCHAR_MAX_BYTES[col.CHUNK_ID]


def test_fit_labels_cuts_only_labels_and_the_schema_uses_the_same_limits():
    row = {col.TITLE: "t" * 5420, col.SECTION: "s", col.TEXT: "x" * 5000, col.CHUNK_ID: "c"}
    fitted = col.fit_labels(row)
    assert len(fitted[col.TITLE].encode()) == col.VARCHAR_MAX_BYTES[col.TITLE]
    assert {k: fitted[k] for k in (col.SECTION, col.TEXT, col.CHUNK_ID)} == {
        k: row[k] for k in (col.SECTION, col.TEXT, col.CHUNK_ID)
    }
    schema = {f.name: f.params.get("max_length") for f in col.build_schema(4).fields}
    assert {name: schema[name] for name in col.VARCHAR_MAX_BYTES} == col.VARCHAR_MAX_BYTES
