"""The migrations build the whole schema on a real PostgreSQL, tear it down, and match the models."""
from __future__ import annotations

import ast
import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from models import Base
from models.core import migrate as migrations
from models.core.db import sqlalchemy_url


@pytest.fixture()
def scratch_url():
    """A separate, empty database so up/down does not disturb the test schema."""
    base = make_url(sqlalchemy_url(os.environ["DATABASE_URL"]))
    name = base.database + "_migrations"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_downgrade_upgrade(scratch_url):
    engine = create_engine(scratch_url)
    expected = set(Base.metadata.tables)

    migrations.upgrade(scratch_url)
    assert expected <= set(inspect(engine).get_table_names())
    assert migrations.current_revision(engine) == migrations.head_revision()
    with engine.connect() as conn:
        roles = {r for (r,) in conn.execute(text("SELECT name FROM roles"))}
        types = {r for (r,) in conn.execute(text("SELECT name FROM request_types"))}
        cash = {r for (r,) in conn.execute(text("SELECT name FROM transaction_types"))}
    assert roles == {"admin", "director", "manager", "callcentr", "avitolog", "master"}
    assert {"Впервые", "Повтор"} <= types
    assert {"Приход", "Расход"} <= cash

    migrations.downgrade(scratch_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert migrations.current_revision(engine) is None

    migrations.upgrade(scratch_url)
    assert expected <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_models_and_migrations_agree(scratch_url):
    migrations.upgrade(scratch_url)
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_schema_rules(db):
    """Spot checks of the deliberate keys and delete rules."""
    insp = inspect(db.connection())
    fks = {(fk["referred_table"], tuple(fk["constrained_columns"])): fk["options"].get("ondelete")
           for fk in insp.get_foreign_keys("requests")}
    assert fks[("cities", ("city_id",))] == "RESTRICT"
    assert fks[("users", ("master_id",))] == "SET NULL"
    assert fks[("advertising_campaigns", ("advertising_campaign_id",))] == "SET NULL"
    tx_fks = {tuple(fk["constrained_columns"]): fk["options"].get("ondelete")
              for fk in insp.get_foreign_keys("transactions")}
    assert tx_fks[("request_id",)] == "CASCADE"
    unique = {ix["name"] for ix in insp.get_indexes("transactions") if ix["unique"]}
    assert "uq_transactions_request_id" in unique
    assert any(uc["column_names"] == ["entry_id"] for uc in insp.get_unique_constraints("calls"))
    assert any(uc["column_names"] == ["dedupe_key"] for uc in insp.get_unique_constraints("mango_events"))
    assert any(uc["column_names"] == ["sha256"] for uc in insp.get_unique_constraints("recordings"))
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("requests")}
    for columns in [("status",), ("city_id",), ("master_id",), ("advertising_campaign_id",)]:
        assert columns in indexed


def test_login_unique_case_insensitively(db, make_user):
    from sqlalchemy.exc import IntegrityError

    make_user("manager", login="Petrov")
    with pytest.raises(IntegrityError):
        make_user("director", login="PETROV")
    db.rollback()


VERSIONS = migrations.MIGRATIONS_DIR / "versions"
# What a revision may import of the project: the settings it is run with (BUSINESS_TZ), nothing else.
PROJECT_PACKAGES = {"api", "tasks", "models", "beat", "storage", "embedded"}


def test_no_migration_imports_the_project_code():
    """A revision must run the same SQL whenever it runs: what it takes from the code of its day (a
    model's SQL, a rule) is written out in it, so that editing models/ never changes an old migration."""
    found = []
    for path in sorted(VERSIONS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] if node.level == 0 else ["(relative)"]
            else:
                continue
            found += [f"{path.name}:{node.lineno} imports {module}" for module in modules
                      if module.split(".")[0] in PROJECT_PACKAGES or module == "(relative)"]
    assert VERSIONS.is_dir() and len(list(VERSIONS.glob("0*.py"))) >= 8
    assert not found, "\n".join(found)
