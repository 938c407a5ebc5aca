"""The documentation follows the code: the README's settings table is generated from settings.py, the
env example lists every setting, and comments point only to documents in the repository."""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import fields
from pathlib import Path

from click.testing import CliRunner

from api import cli
from settings import BASE_DIR, Settings

ENV_EXAMPLE = BASE_DIR / "deploy" / "leadline.env.example"


def test_the_readme_settings_table_is_the_generated_one():
    readme = cli.README.read_text(encoding="utf-8")
    generated = cli.readme_with_settings_table(readme)
    diff = "".join(difflib.unified_diff(readme.splitlines(True), generated.splitlines(True), "README.md",
                                        "generated", n=0))
    assert generated == readme, f"README.md's settings table differs from settings.py; " \
                                f"run `flask --app api settings-table`:\n{diff}"


def test_the_table_has_one_row_per_setting_in_declaration_order():
    rows = cli.settings_table_markdown().splitlines()[2:]
    assert [row.split(" | ")[1].strip("`") for row in rows] == [f.name for f in fields(Settings)]
    by_name = {row.split(" | ")[1].strip("`"): row for row in rows}
    assert by_name["SECRET_KEY"] == "| core | `SECRET_KEY` | — (secret) | signs sessions; old name: JWT_SECRET_KEY |"
    assert by_name["MEDIA_ROOT"] == "| files | `MEDIA_ROOT` | `./var/media` |  |"  # not this machine's path
    assert by_name["API_WORKERS"].startswith("| processes | `API_WORKERS` | cores |")
    assert by_name["REDIS_URL"] == "| core | `REDIS_URL` | — (secret) | Redis; unset outside production = embedded |"


def test_the_command_rewrites_only_the_table(tmp_path, monkeypatch):
    stale = (f"# title\n\nbefore\n\n{cli.SETTINGS_TABLE_START}\n| group | setting | default | notes |\n"
             f"| core | `GONE` | — |  |\n{cli.SETTINGS_TABLE_END}\n\nafter\n")
    readme = tmp_path / "README.md"
    readme.write_text(stale, encoding="utf-8")
    monkeypatch.setattr(cli, "README", readme)
    runner = CliRunner()

    checked = runner.invoke(cli.settings_table, ["--check"])
    assert checked.exit_code == 1 and "flask --app api settings-table" in checked.output
    assert readme.read_text(encoding="utf-8") == stale

    assert runner.invoke(cli.settings_table, []).exit_code == 0
    written = readme.read_text(encoding="utf-8")
    assert written.startswith("# title\n\nbefore\n\n") and written.endswith(f"{cli.SETTINGS_TABLE_END}\n\nafter\n")
    assert "`GONE`" not in written and "| core | `APP_ENV` |" in written
    assert runner.invoke(cli.settings_table, ["--check"]).exit_code == 0


def _env_example_sections() -> dict[str, str]:
    """Section title (`# ---- title ----`) -> its text."""
    parts = re.split(r"^# ---- (.+?) -+$", ENV_EXAMPLE.read_text(encoding="utf-8"), flags=re.M)
    return {title: text for title, text in zip(parts[1::2], parts[2::2])}


def test_the_env_example_lists_every_setting_in_its_group_and_every_old_name():
    sections = _env_example_sections()
    listed = {name: title for title, text in sections.items()
              for name in re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.M)}
    for f in fields(Settings):
        assert f.name in listed, f"{f.name} is missing from deploy/leadline.env.example"
        assert f.metadata["group"].lower() in listed[f.name].lower(), \
            f"{f.name} is listed under '{listed[f.name]}', not under its group '{f.metadata['group']}'"
        for alias in f.metadata["aliases"]:
            assert re.search(rf"\b{alias}\b", sections["old names"]), f"old name {alias} of {f.name} is not listed"
    # Everything else the example sets is read by docker compose or gunicorn's configuration.
    readers = (BASE_DIR / "deploy" / "docker-compose.yml").read_text() + (BASE_DIR / "gunicorn.conf.py").read_text()
    settings_names = {f.name for f in fields(Settings)}
    for name in set(listed) - settings_names:
        assert name in readers, f"deploy/leadline.env.example sets {name}, which nothing reads"


# A reference to a document: a path ending in .md, a section sign, the name of the product's specification.
DOCUMENT_REFERENCE = re.compile(r"[\w./-]+\.md\b|\N{SECTION SIGN}|\bSPEC\b|design[ ]card")


def _source_files():
    """The project's Python files (not the virtualenv's, nor anything under ./var)."""
    for folder, subfolders, files in os.walk(BASE_DIR):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and name != "var")
        yield from (Path(folder) / name for name in sorted(files) if name.endswith(".py"))


def test_comments_point_only_to_documents_in_the_repository():
    """A comment that names a document names one a reader of the repository can open."""
    outside = []
    for path in _source_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(not reference.endswith(".md") or not (BASE_DIR / reference).is_file()
                   for reference in DOCUMENT_REFERENCE.findall(line)):
                outside.append(f"{path.relative_to(BASE_DIR)}:{number}: {line.strip()}")
    assert not outside, "references to documents outside the repository:\n" + "\n".join(outside)
