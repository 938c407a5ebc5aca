"""Moving in from the old backend: an old database built exactly as the old schema was
(tests/legacy_source.py), with a media folder, imported into leadline and checked row by
row; imported again after changes (updated, not duplicated); killed in the middle and run again; old
users signing in with their old passwords; verify-legacy agreeing, then failing on a changed row."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from models.core.db import Session
from models.legacy import rules
from models.legacy.service import run_import
from models.legacy.verify import verify
from storage.kinds import KINDS
from storage.paths import check_relative_path
from tests import legacy_source
from tests.storage_support import both_backends, media_bytes, media_files
from tests.support import SPA, wait_for

ROOT = Path(__file__).resolve().parent.parent
OLD_REQUESTS = 1500


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """The old database (a database of its own beside the test database) and its media folder."""
    url = make_url(os.environ["DATABASE_URL"])
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    source = legacy_source.create_database(admin, f"{url.database}_old_backend")
    media = tmp_path_factory.mktemp("old-media")
    with psycopg.connect(source) as conn:
        legacy_source.create_schema(conn)
        generated = legacy_source.fill(conn, requests=OLD_REQUESTS, transactions=500, files=80, media=media)
    yield source, media, generated  # the database stays for the next run, which empties it first


def old_rows(source: str, sql: str) -> list[tuple]:
    with psycopg.connect(source) as conn:
        return conn.execute(sql).fetchall()


def new_rows(sql: str, **params) -> list:
    Session.remove()
    rows = Session.execute(text(sql), params).all()
    Session.rollback()
    return rows


def mapped(table: str) -> dict[int, int]:
    return dict(new_rows("SELECT old_id, new_id FROM legacy_map WHERE old_table = :t", t=table))


def expected_phone(raw: str) -> str:
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) == 10:
        return "7" + digits
    if len(digits) == 11 and digits[0] == "8":
        return "7" + digits[1:]
    return digits or raw.strip()


def expected_status(raw: str | None) -> str:
    if raw is None:
        return "Новая"
    if raw in legacy_source.STATUSES:
        return raw
    return legacy_source.ODD_STATUSES.get(raw, "Новая")


# ---- the first import, row by row -------------------------------------------------------------------

@both_backends
def test_import_brings_every_row_over_by_the_rules(committed, media, old, tmp_path):
    source, media_dir, generated = old
    report_path = tmp_path / "import-report.markdown"
    report, verification = run_import(source, media_dir=str(media_dir), report_path=str(report_path))
    assert verification.ok, verification.differences
    assert report.tables["requests"].imported == OLD_REQUESTS and report.tables["requests"].refused == 0

    # Users: one table; logins shared by several old tables keep their name for the first in the old
    # sign-in order (masters, employees, administrators) and get a suffix elsewhere; hashes as they were.
    users = {row.id: row for row in new_rows(
        "SELECT u.id, u.login, u.password_hash, u.status, u.full_name, r.name AS role, c.name AS city, u.phone "
        "FROM users u JOIN roles r ON r.id = u.role_id LEFT JOIN cities c ON c.id = u.city_id")}
    expected_logins = {("masters", 1): "Ivan", ("employees", 1): "ivan-employee", ("administrators", 2): "ivan-admin",
                       ("masters", 2): "olga", ("employees", 2): "OLGA-employee", ("administrators", 1): "admin"}
    old_roles = dict(old_rows(source, "SELECT id, name FROM roles"))
    for table in rules.USER_TABLES:
        ids = mapped(table)
        extra = ", role_id" if table != "masters" else ", NULL"
        city = "city_id" if table != "administrators" else "NULL"
        for old_id, login, password_hash, status, city_id, role_id in old_rows(
                source, f"SELECT id, login, password_hash, status, {city}{extra} FROM {table}"):
            user = users[ids[old_id]]
            assert user.login == expected_logins.get((table, old_id), login)
            assert user.password_hash == password_hash
            assert user.status == {None: "active", "Active": "active"}.get(status, status)
            want_role = {"masters": "master", "administrators": "admin"}.get(table) or (
                "callcentr" if old_roles[role_id] == "callcenter" else old_roles[role_id])
            assert user.role == want_role
            if city_id is not None:
                assert user.city == legacy_source.CITIES[city_id - 1]
    assert {f[2] for f in report.findings["login_renamed"]} == {
        "ivan → ivan-employee", "ivan → ivan-admin", "OLGA → OLGA-employee"}

    # Requests: same numbers, statuses normalised (unknown ones Новая with the original in the
    # history), phones normalised with the raw text kept, money as stored with net recomputed.
    masters = mapped("masters")
    news = {row.id: row for row in new_rows(
        "SELECT r.*, c.name AS city FROM requests r JOIN cities c ON c.id = r.city_id")}
    history = {(row.request_id, row.old_value): row.new_value for row in new_rows(
        "SELECT request_id, old_value, new_value FROM request_events WHERE source = 'import' AND field = 'status'")}
    created_events = {row[0] for row in new_rows(
        "SELECT request_id FROM request_events WHERE source = 'import' AND action = 'created'")}
    unknown = 0
    for (old_id, city_id, phone, status, master_id, result, expenses, net, handover, notes, created,
         updated) in old_rows(source, "SELECT id, city_id, client_phone, status, master_id, result, expenses, "
                                      "net_amount, master_handover, call_center_notes, created_at, updated_at "
                                      "FROM requests"):
        new = news[old_id]
        assert new.city == legacy_source.CITIES[city_id - 1]
        assert new.status == expected_status(status)
        if status is not None and status not in legacy_source.STATUSES and status not in legacy_source.ODD_STATUSES:
            unknown += 1
            assert history[(old_id, status)] == "Новая"
        assert new.client_phone_raw == phone and new.client_phone == expected_phone(phone)[:20]
        assert new.master_id == (masters[master_id] if master_id else None)
        assert (new.result, new.expenses, new.master_handover) == (result, expenses, handover)
        assert new.net_amount == (result or 0) - (expenses or 0)
        assert new.call_center_notes == notes  # the Mango call_id:… notes too
        assert new.created_at == created and new.updated_at == (updated or created)
        assert (new.completed_at is not None) == (new.status == "Готово")
        assert old_id in created_events
    assert unknown >= 2 and report.finding_counts["status_unknown"] == unknown
    differs = {f[1] for f in report.findings["money_differs"]}
    stale = {row[0] for row in old_rows(source, "SELECT id FROM requests WHERE net_amount <> "
                                                "coalesce(result, 0) - coalesce(expenses, 0)")}
    assert stale and stale <= differs

    # Cash: every row with its sign; automatic incomes linked to their request; Готово without its
    # income, or with two, reported.
    cash = {row.id: row for row in new_rows("SELECT id, amount, specified_date, request_id, notes FROM transactions")}
    for old_id, amount, day, notes in old_rows(source, "SELECT id, amount, specified_date, notes FROM transactions"):
        assert (cash[old_id].amount, cash[old_id].specified_date, cash[old_id].notes) == (amount, day, notes)
        request = rules.income_request(notes)
        if request is not None and request not in generated.done_with_two_incomes:
            assert cash[old_id].request_id == request
    assert generated.done_with_two_incomes
    for request in generated.done_with_two_incomes:
        linked = [row.request_id for row in cash.values() if rules.income_request(row.notes) == request]
        assert len(linked) == 2 and linked.count(None) == 1 and linked.count(request) == 1
    assert {f[1] for f in report.findings["income_missing"]} == set(generated.done_without_income)

    # Files: every path a file row; present ones checked and copied into the layout (the old folder
    # untouched), missing ones kept as missing, an executable refused.
    files = {row.original_name: row for row in new_rows("SELECT * FROM files")}
    for relative in generated.present_files:
        row = files[relative.rpartition("/")[2]]
        data = (media_dir / relative).read_bytes()
        assert row.status == "ready" and row.sha256 == hashlib.sha256(data).hexdigest()
        assert row.size_bytes == len(data) and row.sniffed_type
        assert media_bytes(media, row.storage_path) == data  # in MEDIA_ROOT or the S3 bucket
        assert (media_dir / relative).exists()  # copied, not moved
        if relative.startswith("zayvka/bso/"):
            assert row.storage_path == relative  # the same path where it fits leadline's layout
    for relative in generated.missing_files:
        row = files[relative.rpartition("/")[2]]
        assert row.status == "rejected" and row.storage_path is None and row.sha256 is None
    for relative in generated.dangerous_files:
        assert files[relative.rpartition("/")[2]].status == "rejected"
    assert report.finding_counts["file_missing"] >= len(generated.missing_files)

    # The reports' daily rollups were rebuilt after the bulk load and agree with the tables.
    assert new_rows("SELECT (SELECT sum(requests) FROM request_day_stats WHERE dimension = 0), "
                    "(SELECT count(*) FROM requests), (SELECT count(*) FROM report_rollups)")[0] == (
        OLD_REQUESTS, OLD_REQUESTS, 1)
    sums = new_rows("SELECT (SELECT sum(income + expense) FROM transaction_day_stats), "
                    "(SELECT sum(amount) FROM transactions)")[0]
    assert sums[0] == sums[1]

    written = report_path.read_text(encoding="utf-8")
    assert "| requests | 1500 | 1500 | 0 | 0 | 0 |" in written and "login_renamed" in written
    assert "zayvka/zapis/" in written and not re.search(r"\d{10}", written)  # no phone, not even in a file name


def test_old_users_sign_in_with_their_old_password_and_get_the_new_hash(committed, media, old, client):
    source, media_dir, _generated = old
    run_import(source, media_dir=str(media_dir))
    for table, old_id in (("masters", 1), ("employees", 5), ("administrators", 2)):
        login = {("employees", 5): "employee5", ("administrators", 2): "ivan-admin", ("masters", 1): "Ivan"}[
            (table, old_id)]
        password = legacy_source.password_of(table, old_id)
        wrong = client.post("/api/auth/login", json={"login": login, "password": password + "x"}, headers=SPA)
        assert wrong.status_code == 401
        answer = client.post("/api/auth/login", json={"login": login, "password": password}, headers=SPA)
        assert answer.status_code == 200, answer.json
        stored = new_rows("SELECT password_hash FROM users WHERE login = :l", l=login)[0][0]
        assert stored.startswith("$argon2id$")
        if table == "masters":
            again = client.post("/api/auth/login", json={"login": login, "password": password}, headers=SPA)
            assert again.status_code == 200
    inactive = client.post("/api/auth/login", json={"login": "master3", "password": legacy_source.password_of(
        "masters", 3)}, headers=SPA)
    assert inactive.status_code == 403  # inactive in the old system: still not allowed in


# ---- again, after a day of work on the old system ----------------------------------------------------

def test_a_second_import_updates_what_changed_and_adds_what_is_new(committed, media, old):
    source, media_dir, _generated = old
    run_import(source, media_dir=str(media_dir))
    before = new_rows("SELECT count(*) FROM requests")[0][0]
    with psycopg.connect(source) as conn:
        changes = legacy_source.change(conn, fraction=0.02, seed=7)
        victim = conn.execute(
            "SELECT id FROM requests WHERE status = 'Новая' AND coalesce(bso_file_path, expense_file_path, "
            "recording_file_path) IS NULL AND id NOT IN (SELECT request_id FROM files WHERE request_id IS NOT NULL) "
            "AND id <= %s ORDER BY id LIMIT 1", (OLD_REQUESTS,)).fetchone()[0]
        saved = conn.execute("SELECT row_to_json(r)::text FROM requests r WHERE id = %s", (victim,)).fetchone()[0]
        conn.execute("DELETE FROM requests WHERE id = %s", (victim,))
    try:
        report, verification = run_import(source, media_dir=str(media_dir))
        assert verification.ok, verification.differences
        requests = report.tables["requests"]
        assert (requests.imported, requests.updated) == (changes["requests_added"], changes["requests_updated"])
        assert requests.skipped == OLD_REQUESTS - 1 - changes["requests_updated"]
        assert report.tables["transactions"].updated == changes["transactions_updated"]
        assert report.finding_counts["old_row_gone"] == changes["transactions_deleted"] + 1 == 2
        # Deleted in the old system since: deleted here too, its history kept.
        assert new_rows("SELECT count(*) FROM requests")[0][0] == before + changes["requests_added"] - 1
        assert new_rows("SELECT count(*) FROM requests WHERE id = :v", v=victim)[0][0] == 0
        assert new_rows("SELECT action FROM request_events WHERE request_id = :v ORDER BY id DESC LIMIT 1",
                        v=victim)[0][0] == "deleted"
        old_count = old_rows(source, "SELECT count(*) FROM transactions")[0][0]
        assert new_rows("SELECT count(*) FROM transactions")[0][0] == old_count
        events = new_rows("SELECT count(*) FROM request_events WHERE source = 'import' AND field = 'result'")[0][0]
        assert events >= changes["requests_updated"]  # one history row per changed field
        assert report.tables["files"].skipped == report.tables["files"].read  # bytes not read again
    finally:
        with psycopg.connect(source) as conn:
            conn.execute("DELETE FROM requests WHERE id > %s", (OLD_REQUESTS,))
            conn.execute("INSERT INTO requests SELECT * FROM json_populate_record(NULL::requests, %s::json)", (saved,))


@both_backends
def test_a_dry_run_checks_everything_and_writes_nothing(committed, media, old):
    source, media_dir, _generated = old
    report, verification = run_import(source, media_dir=str(media_dir), dry_run=True)
    assert verification is None and report.dry_run
    assert report.tables["requests"].imported == OLD_REQUESTS and report.finding_counts["login_renamed"] == 3
    assert new_rows("SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM users), "
                    "(SELECT count(*) FROM legacy_map), (SELECT count(*) FROM files)")[0] == (0, 0, 0, 0)
    assert media_files(media) == []


def test_rows_the_new_rules_cannot_hold_are_refused_with_the_reason_and_verify_shows_the_money(committed, media, old):
    source, media_dir, _generated = old
    with psycopg.connect(source) as conn:
        conn.execute("INSERT INTO transactions (id, city_id, transaction_type_id, amount, specified_date) VALUES "
                     "(90001, 1, 1, -50.00, '2025-03-01'), (90002, 1, 2, 0, '2025-03-01')")
    try:
        report, verification = run_import(source, media_dir=str(media_dir))
    finally:
        with psycopg.connect(source) as conn:
            conn.execute("DELETE FROM transactions WHERE id > 90000")
    reasons = report.tables["transactions"].reasons
    assert report.tables["transactions"].refused == 2
    assert any("знак суммы" in reason for reason in reasons) and "нулевая сумма" in reasons
    assert not verification.ok
    assert any(line.startswith("касса Москва, 2025-03") and "баланс" in line for line in verification.differences)
    assert mapped("transactions").get(90001) is None


# ---- interrupted ---------------------------------------------------------------------------------------

def test_an_import_killed_in_the_middle_completes_when_run_again(committed, media, old):
    source, media_dir, _generated = old
    env = {**os.environ, "MEDIA_ROOT": str(media.media_root), "QUARANTINE_ROOT": str(media.quarantine_root)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "flask"), "--app", "api", "import-legacy", "--source", source,
         "--media", str(media_dir), "--batch-size", "50"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_for(lambda: new_rows("SELECT count(*) FROM legacy_map WHERE old_table = 'requests'")[0][0] >= 100,
                 timeout=60, interval=0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    imported = new_rows("SELECT count(*) FROM requests")[0][0]
    assert 0 < imported < OLD_REQUESTS  # killed in the middle: whole batches only
    assert imported % 50 == 0
    report, verification = run_import(source, media_dir=str(media_dir))
    assert verification.ok, verification.differences
    assert report.tables["requests"].imported == OLD_REQUESTS - imported
    assert report.tables["requests"].skipped == imported
    assert new_rows("SELECT count(*), count(DISTINCT id) FROM requests")[0] == (OLD_REQUESTS, OLD_REQUESTS)
    assert new_rows("SELECT count(*) FROM request_events WHERE action = 'created'")[0][0] == OLD_REQUESTS
    assert new_rows("SELECT sum(requests) FROM request_day_stats WHERE dimension = 0")[0][0] == OLD_REQUESTS


# ---- verification --------------------------------------------------------------------------------------

def test_verify_legacy_agrees_then_fails_on_a_row_changed_behind_its_back(committed, media, old, app):
    source, media_dir, _generated = old
    run_import(source, media_dir=str(media_dir))
    runner = app.test_cli_runner()  # (click 8.2+: `output` holds stdout and stderr as a terminal shows them)
    agreed = runner.invoke(args=["verify-legacy", "--source", source])
    assert agreed.exit_code == 0, agreed.output
    assert "old and new agree" in agreed.output
    Session.remove()
    Session.execute(text("UPDATE requests SET result = result + 7 WHERE id = (SELECT min(id) FROM requests "
                         "WHERE result IS NOT NULL)"))
    Session.execute(text("UPDATE users SET login = 'someone-else' WHERE login = 'master7'"))
    Session.commit()
    failed = runner.invoke(args=["verify-legacy", "--source", source])
    assert failed.exit_code == 1
    output = failed.output
    assert "DIFFERENCE: заявки" in output and "итог" in output
    assert "логин «master7» стал «someone-else»" in output
    assert not verify(source).ok


def test_verify_legacy_says_when_the_old_database_cannot_be_reached(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["verify-legacy", "--source", "postgresql://nobody:secret-pw@127.0.0.1:1/none"])
    assert result.exit_code != 0
    assert "старая база недоступна" in result.output and "secret-pw" not in result.output


# ---- as a job, for an operator without a shell ---------------------------------------------------------

def test_the_import_runs_as_a_job_on_a_real_worker(committed, media, old, client, celery_worker_thread, monkeypatch):
    import dataclasses

    import api.legacy.routes as legacy_routes
    import tasks.legacy as legacy_task
    from settings import settings
    from tests.factories import create_user
    from tests.support import login

    source, media_dir, _generated = old
    for role in ("manager", "director", "callcentr", "master"):
        client.post("/api/auth/logout", headers=SPA)
        login(client, create_user(role))
        assert client.post("/api/admin/import-legacy", json={}, headers=SPA).status_code == 403
        assert client.get("/api/admin/import-legacy").status_code == 403
    client.post("/api/auth/logout", headers=SPA)
    login(client, create_user("admin"))
    refused = client.post("/api/admin/import-legacy", json={}, headers=SPA)
    assert refused.status_code == 409 and "LEGACY_DATABASE_URL" in refused.json["detail"]
    configured = dataclasses.replace(settings, LEGACY_DATABASE_URL=source, LEGACY_MEDIA_DIR=str(media_dir))
    monkeypatch.setattr(legacy_routes, "settings", configured)
    monkeypatch.setattr(legacy_task, "settings", configured)
    named = client.post("/api/admin/import-legacy", json={"source": "postgresql://elsewhere/db"}, headers=SPA)
    assert named.status_code == 422 and "source" in named.json["errors"]

    accepted = client.post("/api/admin/import-legacy", json={}, headers=SPA)
    assert accepted.status_code == 202, accepted.json
    job_id = accepted.json["job_id"]

    def finished():
        state = client.get(f"/api/jobs/{job_id}").json
        return state if state["status"] in ("succeeded", "failed") else None

    state = wait_for(finished, timeout=120, interval=0.2)
    assert state["status"] == "succeeded", state["error"]
    assert state["result"]["tables"]["requests"]["imported"] == OLD_REQUESTS
    assert state["result"]["verification"] == [] and "# Импорт из старой системы" in state["result"]["report"]
    last = client.get("/api/admin/import-legacy").json
    assert last["configured"] and last["last_job"]["id"] == job_id
    assert new_rows("SELECT count(*) FROM requests")[0][0] == OLD_REQUESTS


# ---- the rules alone -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, status, note", [
    ("Готово", "Готово", None), ("done", "Готово", "normalised"), ("COMPLETED", "Готово", "normalised"),
    (" в  работе ", "В работе", "normalised"), ("in_progress", "В работе", "normalised"),
    ("не заказ", "НеЗаказ", "normalised"), ("ожидает_принятия", "Ожидает принятия", "normalised"),
    (None, "Новая", None), ("archived", "Новая", "unknown"), ("tno", "ТНО", "normalised"),
])
def test_statuses_are_normalised(raw, status, note):
    assert rules.request_status(raw) == (status, note)


def test_shared_logins_follow_the_old_sign_in_order():
    assigned = rules.assign_logins([("administrators", 1, "ivan"), ("employees", 3, "IVAN"), ("masters", 9, "Ivan"),
                                    ("employees", 4, "petr")], taken={"petr", "petr-employee"})
    assert assigned == {("masters", 9): "Ivan", ("employees", 3): "IVAN-employee", ("administrators", 1): "ivan-admin",
                        ("employees", 4): "petr-employee4"}


@pytest.mark.parametrize("raw, kind, relative, stored", [
    ("media/zayvka/bso/3f1c.jpg", "bso", "zayvka/bso/3f1c.jpg", "zayvka/bso/3f1c.jpg"),
    ("media\\zayvka\\rashod\\a-b.pdf", "expense", "zayvka/rashod/a-b.pdf", "zayvka/rashod/a-b.pdf"),
    ("/app/media/gorod_rashod/x.png", "transaction", "gorod_rashod/x.png", None),
    ("media/zayvka/zapis/2025.07.15__11-03-07__7917__7999.mp3", "recording",
     "zayvka/zapis/2025.07.15__11-03-07__7917__7999.mp3", None),
    ("../../etc/passwd", "bso", None, None), ("", "bso", None, None),
])
def test_old_paths_are_normalised_and_fit_the_layout(raw, kind, relative, stored):
    assert rules.old_relative_path(raw) == relative
    if relative:
        path = rules.storage_path_for(kind, relative)
        assert check_relative_path(path) == path and path.startswith(KINDS[kind].directory + "/")
        assert path == (stored or path) and rules.storage_path_for(kind, relative) == path  # deterministic


def test_money_keeps_the_handover_and_derives_the_net():
    net, notes = rules.money_notes(Decimal("2500"), Decimal("450"), Decimal("2050"), Decimal("1230"))
    assert net == Decimal("2050.00") and notes == ["master_handover 1230 kept (by the rule: 1025.00)"]


def test_old_files_are_adopted_by_hard_link_or_through_any_backends_promotion(tmp_path):
    from storage.backend import LocalStorage, Storage

    source = tmp_path / "old" / "scan.jpg"
    source.parent.mkdir()
    source.write_bytes(legacy_source.JPEG + b"x" * 5000)
    store = LocalStorage(tmp_path / "media", tmp_path / "quarantine")
    assert store.adopt(source, "zayvka/bso/a.jpg") and not store.adopt(source, "zayvka/bso/a.jpg")
    assert (tmp_path / "media/zayvka/bso/a.jpg").stat().st_ino == source.stat().st_ino  # a link, not a copy
    # The backend-neutral path (what an S3 backend gets unless it overrides it): quarantine, then promote.
    assert Storage.adopt(store, source, "zayvka/bso/b.jpg") and not Storage.adopt(store, source, "zayvka/bso/b.jpg")
    assert (tmp_path / "media/zayvka/bso/b.jpg").read_bytes() == source.read_bytes()
    assert source.exists() and not any((tmp_path / "quarantine").iterdir())
