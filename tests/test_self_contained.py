"""The repository explains itself: every document it cites is in it.

The code, tests and docs cite where an algorithm or a convention is written down.
Those citations must resolve inside the repository (a new maintainer has nothing
else): every ``*.md``/``*.rst`` file named exists, and no section sign points into a
document that is not here (the design notes the project started from are not part of
it; their content lives in docs/).
"""

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "__pycache__", "out", "_build", "build", "dist"}
TEXT_SUFFIXES = {".py", ".rst", ".md", ".toml", ".cfg", ".ini", ".txt", ".yaml", ""}
SECTION = "\u00a7"  # the section sign, spelt so that this file does not contain it
DOC_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.(?:md|rst))\b")


def text_files():
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv")]
        for name in files:
            path = Path(root) / name
            if path.suffix in TEXT_SUFFIXES and (path.suffix or name == "Makefile"):
                yield path


def cited_documents(text):
    return set(DOC_NAME.findall(text))


def resolves(name, source, basenames):
    if "/" not in name:
        return name in basenames
    return any((base / name).exists() for base in (REPO, source.parent))


def missing_citations():
    files = list(text_files())
    basenames = {p.name for p in files}
    problems = []
    for path in files:
        if path == Path(__file__).resolve():
            continue  # its own examples of bad citations
        text = path.read_text(errors="replace")
        rel = path.relative_to(REPO)
        for name in sorted(cited_documents(text)):
            if not resolves(name, path, basenames):
                problems.append(f"{rel}: cites {name}, which is not in the repository")
        for line_no, line in enumerate(text.splitlines(), 1):
            if SECTION in line:
                problems.append(
                    f"{rel}:{line_no}: section sign (a citation): {line.strip()}"
                )
    return problems


def test_every_cited_document_is_in_the_repository():
    problems = missing_citations()
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_citation_of_a_missing_document(tmp_path):
    assert cited_documents("see algorithms.md for the weights") == {"algorithms.md"}
    assert cited_documents("(docs/ramp_fit/description.rst)") == {
        "docs/ramp_fit/description.rst"
    }
    source = REPO / "romanimpreprocess" / "x.py"
    assert not resolves("algorithms.md", source, {"README.md"})
    assert not resolves("docs/nowhere.rst", source, set())
    assert resolves("docs/ramp_fit/description.rst", source, set())
