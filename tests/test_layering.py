"""Layering: the card layer and the terminal's pure logic never import Textual."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE_TERMINAL = [
    ROOT / "terminal" / "rules.py",
    ROOT / "terminal" / "worker.py",
    ROOT / "terminal" / "equipment.py",
    *sorted((ROOT / "terminal" / "flow").glob("*.py")),
]
IMPORT_TEXTUAL = re.compile(r"^\s*(import\s+textual\b|from\s+textual\b)", re.MULTILINE)


def cardio_sources() -> list[Path]:
    return sorted((ROOT / "cardio").rglob("*.py"))


def textual_imports(path: Path) -> list[str]:
    """Every import of textual in the file: by its syntax tree, and by its text."""
    source = path.read_text("utf-8")
    found: list[str] = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [
                f"{path}:{node.lineno}" for a in node.names if a.name.split(".")[0] == "textual"
            ]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == "textual"
        ):
            found.append(f"{path}:{node.lineno}")
    found += [f"{path}: {m.group(0).strip()}" for m in IMPORT_TEXTUAL.finditer(source)]
    return found


def test_importing_cardio_and_pure_terminal_does_not_load_textual() -> None:
    code = (
        "import cardio.cli, cardio.vpcd, cardio.readers.pcsc, cardio.protocol, "
        "terminal.rules, terminal.flow.pharmacy, terminal.flow.outlet, terminal.worker, "
        "host.sqlite; "
        "import sys; print('textual' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_importing_every_cardio_module_does_not_load_textual() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in cardio_sources()
    )
    assert "cardio.protocol" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_textual_import_in_cardio_sources() -> None:
    sources = cardio_sources()
    assert len(sources) > 10
    assert ROOT / "cardio" / "protocol.py" in sources
    offending = [hit for path in sources for hit in textual_imports(path)]
    assert offending == []


def test_no_textual_import_in_terminal_rules_and_flow() -> None:
    assert ROOT / "terminal" / "flow" / "pharmacy.py" in PURE_TERMINAL
    offending = [hit for path in PURE_TERMINAL for hit in textual_imports(path)]
    assert offending == []


def test_the_static_check_finds_a_textual_import(tmp_path: Path) -> None:
    """The check above can fail: it sees each way of writing the import."""
    for text in (
        "import textual\n",
        "from textual.app import App\n",
        "import os, textual.widgets\n",
        "def f():\n    from textual import work\n",
    ):
        path = tmp_path / "bad.py"
        path.write_text(text, "utf-8")
        assert textual_imports(path), text
    path = tmp_path / "good.py"
    path.write_text('"""Never imports textual: the card layer."""\nimport os\n', "utf-8")
    assert textual_imports(path) == []


def test_host_side_does_not_load_the_emulator():
    """The protocol, the rules and the flow speak to any card: the emulator stays out."""
    code = (
        "import sys; import cardio.protocol, terminal.rules, terminal.flow.pharmacy; "
        "print(sorted(m for m in sys.modules if m.startswith('cardio.card')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def imported_test_modules(path: Path) -> list[str]:
    """The test modules (and conftest) the file imports: shared code lives in helpers."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        found += [
            f"{path.name}:{node.lineno} {n}"
            for n in names
            if n.split(".")[0] == "conftest" or n.split(".")[0].startswith("test_")
        ]
    return found


def test_no_test_imports_another_test_module() -> None:
    found = [
        hit for path in sorted((ROOT / "tests").glob("*.py")) for hit in imported_test_modules(path)
    ]
    assert found == []


def test_the_test_import_check_finds_one(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text("import os\nfrom test_vpcd_bridge import frame\nimport conftest\n")
    assert imported_test_modules(sample) == [
        "test_sample.py:2 test_vpcd_bridge",
        "test_sample.py:3 conftest",
    ]
