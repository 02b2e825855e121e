"""Small real-looking documents that tests write into a source folder."""

from pathlib import Path

_TOPICS = [
    "lists",
    "dictionaries",
    "generators",
    "decorators",
    "context managers",
    "exceptions",
    "modules",
    "classes",
    "iterators",
    "string formatting",
]


def rst_document(topic: str, sections: int = 3, version: int = 1) -> str:
    lines = [topic.title(), "=" * len(topic), "", f"This page explains {topic} in Python (revision {version}).", ""]
    for n in range(sections):
        heading = f"Using {topic} part {n + 1}"
        lines += [heading, "-" * len(heading), ""]
        for p in range(3):
            lines += [
                f"Paragraph {p} about {topic}: the :func:`len` builtin and ``{topic}`` objects work together. "
                f"See :ref:`the tutorial <tut-{n}>` for details on {topic} and why they matter in "
                f"everyday programs. Revision {version} adds an example of {topic} number {n}.",
                "",
            ]
        lines += [f".. function:: example_{n}(value)", "", f"   Return a {topic} built from *value*.", ""]
    return "\n".join(lines)


def write_corpus(folder: Path, count: int = 6) -> list[Path]:
    paths = []
    for i, topic in enumerate(_TOPICS[:count]):
        path = folder / ("guide" if i % 2 else "reference") / f"{topic.replace(' ', '_')}.rst"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rst_document(topic), encoding="utf-8")
        paths.append(path)
    (folder / "notes.md").write_text(
        "# Release notes\n\nSome words about this release and its changes.\n\n## Fixed\n\n"
        "A bug in the parser of dictionaries was fixed.\n\n```python\n# not a heading\nprint(1)\n```\n",
        encoding="utf-8",
    )
    paths.append(folder / "notes.md")
    return paths
