"""DESIGN.md's arrows: pages → outreach → db. outreach never imports Streamlit; db imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_outreach_never_imports_streamlit_or_pages() -> None:
    offenders = {str(p.relative_to(ROOT)) for p in _files("outreach") if {"streamlit", "pages"} & _imports(p)}
    assert offenders == set()


def test_db_imports_nothing_of_ours() -> None:
    offenders = {str(p.relative_to(ROOT)) for p in _files("db") if {"outreach", "pages", "app"} & _imports(p)}
    assert offenders == set()


def test_nothing_imports_pages() -> None:
    everything = [*_files("outreach"), *_files("db"), *_files("pages"), *_files("tests"), ROOT / "app.py"]
    offenders = {str(p.relative_to(ROOT)) for p in everything if p.exists() and "pages" in _imports(p)}
    assert offenders == set()


def test_pages_folder_holds_page_scripts_only() -> None:
    app_source = (ROOT / "app.py").read_text()
    for page in (ROOT / "pages").glob("*.py"):
        assert f"pages/{page.name}" in app_source, f"{page.name} is not registered with st.Page in app.py"
    assert not (ROOT / "pages" / "__init__.py").exists()
