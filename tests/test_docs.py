"""Documentation examples are tests: every ```python block in docs/**/*.md and README.md runs.

Each block runs in a fresh namespace, so a page's examples must each be complete (imports
included). A block states its outcome with ``assert`` lines; a failing assert or an exception
fails the test named after the file and the block's index (``docs/concepts/jobs.md[0]``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def doc_files() -> list[Path]:
    files = sorted((ROOT / "docs").rglob("*.md"))
    readme = ROOT / "README.md"
    return [*files, readme] if readme.exists() else files


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """Each block with the line it starts on (for tracebacks that point into the page)."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def collect() -> list[pytest.ParameterSet]:
    cases = []
    for path in doc_files():
        rel = path.relative_to(ROOT).as_posix()
        for i, (line, code) in enumerate(python_blocks(path)):
            cases.append(pytest.param(rel, line, code, id=f"{rel}[{i}]"))
    return cases


@pytest.mark.parametrize(("rel", "line", "code"), collect())
def test_doc_example_runs(rel: str, line: int, code: str) -> None:
    # Pad with blank lines so that line numbers in a traceback match the Markdown file.
    source = "\n" * (line - 1) + code
    namespace: dict[str, object] = {"__name__": f"docs_example_{line}"}
    exec(compile(source, str(ROOT / rel), "exec"), namespace)


def test_every_concept_page_has_an_example() -> None:
    pages = sorted((ROOT / "docs" / "concepts").glob("*.md"))
    assert pages, "docs/concepts/ has no pages"
    missing = [p.name for p in pages if not python_blocks(p)]
    assert missing == []
