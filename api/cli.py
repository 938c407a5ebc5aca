"""Console commands: `flask --app api <command>`.

They work while `make run` is running: with DATABASE_URL / REDIS_URL unset they find the embedded
services under ./var that the stack started (or start them).
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
from dataclasses import Field, fields

import click
from flask import Flask
from sqlalchemy import func, select, text

from settings import BASE_DIR, Settings, settings


def init_cli(app: Flask) -> None:
    for command in (stack, migrate, downgrade, create_admin, check_db, seed_demo, rebuild_rollups, settings_table,
                    digest, import_legacy, verify_legacy, storage_migrate):
        app.cli.add_command(command)


@click.command("migrate")
def migrate() -> None:
    """Apply database migrations up to the newest revision."""
    from models.core import migrate as migrations

    migrations.upgrade()
    click.echo("migrations: at head")


@click.command("downgrade")
@click.argument("revision", default="base")
def downgrade(revision: str) -> None:
    """Revert database migrations (to `base` by default: drops every table)."""
    from models.core import migrate as migrations

    migrations.downgrade(revision=revision)
    click.echo(f"migrations: at {revision}")


def admin_password_problem(password: str) -> str | None:
    """Why an administrator's password given to the CLI may not be used (the policy of every
    password; production asks for MIN_OPERATOR_LENGTH), or None."""
    from models.people.passwords import MIN_LENGTH, MIN_OPERATOR_LENGTH, password_problem

    return password_problem(password, min_length=MIN_OPERATOR_LENGTH if settings.is_production else MIN_LENGTH)


def ensure_admin(login: str, password: str | None, *, reset: bool = False,
                 source: str = "ADMIN_PASSWORD") -> tuple[bool, str | None]:
    """Make sure an active admin `login` exists. Returns (created, generated_password).

    A password that is to be set must meet the policy; a weak one is refused (naming `source`, where
    it came from) before anything is hashed or changed."""
    from models.core.db import Session
    from models.directories.tables import Role
    from models.people.tables import User

    user = Session.scalar(select(User).where(func.lower(User.login) == login.lower()))
    if user is not None and not reset:
        return False, None
    if password and (problem := admin_password_problem(password)):
        Session.rollback()
        raise click.ClickException(f"{source} is refused: {problem}. The administrator {login!r} was not changed.")
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    role = Session.scalar(select(Role).where(Role.name == "admin"))
    if user is None:
        user = User(login=login, full_name="Администратор", role=role, status="active")
        Session.add(user)
    user.role = role
    user.status = "active"
    user.set_password(password)  # a reset ends the sessions signed in with the old password
    Session.commit()
    return True, generated


@click.command("create-admin")
@click.option("--login", default=lambda: settings.ADMIN_LOGIN, show_default="ADMIN_LOGIN")
@click.option("--password", default=None, help="Asked for when omitted (ADMIN_PASSWORD if set).")
@click.option("--reset/--no-reset", default=True, help="Reset the password of an existing user.")
def create_admin(login: str, password: str | None, reset: bool) -> None:
    """Create an administrator, or reset an existing user's password and make it an active admin."""
    source = "--password" if password else "ADMIN_PASSWORD"
    password = password or settings.ADMIN_PASSWORD
    if not password and sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        source = "the password typed"
    _created, generated = ensure_admin(login, password, reset=reset, source=source)
    click.echo(f"admin {login!r} is ready")
    if generated:
        click.echo(f"generated password (shown once): {generated}")


@click.command("check-db")
def check_db() -> None:
    """Connectivity, migrations at head, row counts. Exits non-zero when something is wrong."""
    from models import Base
    from models.core import migrate as migrations
    from models.core.db import Session, get_engine

    engine = get_engine()
    try:
        version = Session.scalar(text("SHOW server_version"))
    except Exception as exc:  # noqa: BLE001
        click.echo(settings.mask(f"database: UNREACHABLE ({type(exc).__name__}: {exc})"), err=True)
        sys.exit(2)
    click.echo(f"database: ok (PostgreSQL {version}, {engine.url.render_as_string(hide_password=True)})")
    current, head = migrations.current_revision(engine), migrations.head_revision()
    at_head = current == head
    click.echo(f"migrations: {'at head' if at_head else 'BEHIND'} (current {current}, head {head})")
    if current is None:
        sys.exit(3)
    for table in Base.metadata.sorted_tables:
        count = Session.scalar(select(func.count()).select_from(table))
        click.echo(f"  {table.name:<22} {count:>8}")
    Session.rollback()
    if not at_head:
        sys.exit(3)


@click.command("rebuild-rollups")
def rebuild_rollups() -> None:
    """Recompute the reports' daily rollups from the tables (after a change of BUSINESS_TZ, or a load
    that skipped triggers); writes wait meanwhile."""
    from models.core.business_time import business_tz
    from models.core.db import get_engine
    from models.reports import rollups

    with get_engine().begin() as connection:
        rollups.rebuild(connection)
        counts = connection.execute(text("SELECT (SELECT count(*) FROM request_day_stats), "
                                         "(SELECT count(*) FROM transaction_day_stats), "
                                         "(SELECT count(*) FROM call_day_stats)")).one()
    click.echo(f"rollups: rebuilt in {business_tz().key} ({counts[0]} request rows, {counts[1]} cash-book rows, "
               f"{counts[2]} call rows)")


@click.command("digest")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The day the digest tells about (default: yesterday, business-local).")
@click.option("--print", "print_only", is_flag=True,
              help="Print the text (and write the chart with --chart); send nothing.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False), default=None,
              help="With --print: write the PNG here.")
@click.option("--force", is_flag=True, help="Send again even if that day's digest was sent.")
def digest(day, print_only: bool, chart_path: str | None, force: bool) -> None:
    """Send (or print) the daily digest of one day to the managers' Telegram chat (DIGEST_CHAT_ID)."""
    from datetime import timedelta

    from models.core.business_time import today_local
    from models.reports import digest as daily

    day = day.date() if day is not None else today_local() - timedelta(days=1)
    if print_only:
        found, message = daily.build(day, settings)
        click.echo(message)
        if chart_path:
            with open(chart_path, "wb") as out:
                out.write(daily.render_png(found["days"], f"Заявки за {daily.CHART_DAYS} дней"))
            click.echo(f"chart: {chart_path}")
        return
    try:
        result = daily.send(day, settings, force=force)
    except daily.DigestNotSent as exc:
        raise click.ClickException(f"digest {day}: not sent ({exc})") from None
    if "skipped" in result:
        again = " (--force sends it again)" if result["skipped"] == "уже отправлена" else ""
        raise click.ClickException(f"digest {day}: {result['skipped']}{again}")
    click.echo(f"digest {day}: sent")


@click.command("storage-migrate")
@click.option("--to", "to", type=click.Choice(["s3", "local"]), required=True,
              help="The backend to copy into (its settings: S3_* or MEDIA_ROOT); the source is STORAGE_BACKEND.")
@click.option("--verbose", is_flag=True, help="One line per file.")
def storage_migrate(to: str, verbose: bool) -> None:
    """Copy every media file into another storage backend, verified by sha256; run it again to resume.
    Then set STORAGE_BACKEND to the new backend and restart the API and the workers."""
    from models.core.db import Session
    from models.files.tables import File
    from models.recordings.tables import Recording
    from storage import backend
    from storage import migrate as media_migration

    if to == settings.STORAGE_BACKEND:
        raise click.ClickException(f"STORAGE_BACKEND is {to} already: nothing to move")
    source, target = backend.get_storage(), backend.from_settings(to)
    known = [(path, sha) for path, sha in Session.execute(
        select(File.storage_path, File.sha256).where(File.storage_path.is_not(None))).all()]
    known += [(path, sha) for path, sha in Session.execute(select(Recording.storage_path, Recording.sha256)).all()]
    pending = Session.scalar(select(func.count()).select_from(File).where(File.status == "pending"))
    Session.rollback()

    def progress(path: str, outcome: str) -> None:
        if verbose or outcome not in ("copied", "skipped"):
            click.echo(f"  {outcome:<14} {path}")

    report = media_migration.migrate(source, target, known, progress=progress)
    click.echo(f"storage-migrate to {to}: {report.copied} copied, {report.skipped} already there (verified), "
               f"{len(report.missing)} missing from the source, {len(report.failed)} failed")
    if pending:
        click.echo(f"note: {pending} uploads are still pending validation; let the workers finish them "
                   "before switching STORAGE_BACKEND")
    if not report.ok:
        raise click.ClickException("some files were not moved: see above; run the command again once fixed")


@click.command("seed-demo")
@click.option("--requests", "request_count", default=400, show_default=True)
@click.option("--seed", "random_seed", default=20261127, show_default=True)
def seed_demo(request_count: int, random_seed: int) -> None:
    """Fill the database with realistic demo data (cities, campaigns, staff, requests, cash).

    The demo users it creates get a random password, printed once. Refused in production."""
    if settings.is_production:
        raise click.ClickException("seed-demo does not run in production (APP_ENV=production): demo users and "
                                   "data are for development and tests only")
    from models.seed.demo import new_demo_password, seed

    password = new_demo_password()
    summary = seed(request_count=request_count, random_seed=random_seed, password=password)
    for name, count in summary.items():
        click.echo(f"  {name:<22} {count:>6}")
    if summary["users"]:
        click.echo(f"demo users' password (shown once; every demo login): {password}")
    else:
        click.echo("demo users existed already: their passwords are unchanged")


# ---- moving in from the old backend ---------------------------------------------------------------

class TerminalProgress:
    """A progress bar per table on a terminal; nothing elsewhere (the summary follows at the end)."""

    def __init__(self) -> None:
        self.enabled = sys.stdout.isatty()
        self.bar = None
        self.table = None

    def __call__(self, table: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if table != self.table:
            self.close()
            self.table = table
            self.bar = click.progressbar(length=max(total, 1), label=f"{table:<22}", show_pos=True)
            self.bar.__enter__()
            self.done = 0
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command("import-legacy")
@click.option("--source", required=True,
              help="The old backend's database URL, postgresql://user@host/db (read only).")
@click.option("--media", "media_dir", default=None,
              help="The old media folder (the one holding zayvka/ and gorod/); default MEDIA_ROOT.")
@click.option("--dry-run", is_flag=True, help="Read and check everything, write nothing.")
@click.option("--report", "report_path", default=None, help="Write the full report here (.md, or .csv).")
@click.option("--batch-size", default=5000, show_default=True)
def import_legacy(source: str, media_dir: str | None, dry_run: bool, report_path: str | None,
                  batch_size: int) -> None:
    """Import the old FastAPI backend's database and media folder (again: only what changed), then
    verify it. Exits 1 when the verification finds a difference."""
    from models.legacy.importer import ImportRefused
    from models.legacy.service import run_import
    from models.legacy.source import SourceUnavailable

    progress = TerminalProgress()
    try:
        report, verification = run_import(source, media_dir=media_dir, dry_run=dry_run, report_path=report_path,
                                          progress=progress, batch_size=batch_size)
    except (ImportRefused, SourceUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    for line in report.summary_lines():
        click.echo(line)
    click.echo(f"{'dry run: nothing written; ' if dry_run else ''}{report.seconds:.1f} s"
               + (f"; report: {report_path}" if report_path else ""))
    if verification is not None:
        _print_verification(verification)
        if not verification.ok:
            sys.exit(1)


def _print_verification(verification) -> None:
    for line in verification.notes:
        click.echo(f"  {line}")
    for line in verification.differences:
        click.echo(f"DIFFERENCE: {line}", err=True)
    click.echo("verify-legacy: " + ("old and new agree" if verification.ok
                                    else f"{len(verification.differences)} differences"))


@click.command("verify-legacy")
@click.option("--source", required=True, help="The old backend's database (read only).")
def verify_legacy(source: str) -> None:
    """Compare the old database with what was imported: counts, money per city and month, users by
    login, file paths. Prints every difference; exits 1 when there is one."""
    from models.legacy.source import SourceUnavailable
    from models.legacy.verify import verify

    try:
        verification = verify(source)
    except SourceUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    _print_verification(verification)
    if not verification.ok:
        sys.exit(1)


# ---- the README's settings table ------------------------------------------------------------------

README = BASE_DIR / "README.md"
SETTINGS_TABLE_START = "<!-- settings table: generated from settings.py by `flask --app api settings-table` -->"
SETTINGS_TABLE_END = "<!-- end of the settings table -->"


def _shown_default(f: Field) -> str:
    if f.metadata["secret"]:
        return "— (secret)"
    if f.metadata["shown_default"] is not None:
        return f.metadata["shown_default"]
    if f.default is None:
        return "—"
    value = str(f.default)
    if value.startswith(str(BASE_DIR)):  # a folder of the checkout, wherever it is
        value = "./" + os.path.relpath(value, BASE_DIR)
    return f"`{value}`"


def _notes(f: Field) -> str:
    aliases = f.metadata["aliases"]
    old_names = f"old name{'s' if len(aliases) > 1 else ''}: {', '.join(aliases)}" if aliases else ""
    return "; ".join(part for part in (f.metadata["doc"], old_names) if part).replace("|", "\\|")


def settings_table_markdown() -> str:
    """Every setting of settings.py, in declaration order: group | setting | default | notes."""
    rows = ["| group | setting | default | notes |", "|---|---|---|---|"]
    rows += [f"| {f.metadata['group']} | `{f.name}` | {_shown_default(f)} | {_notes(f)} |" for f in fields(Settings)]
    return "\n".join(rows) + "\n"


def readme_with_settings_table(readme: str) -> str:
    """The README with the table between its two marker comments replaced by the generated one."""
    start = readme.find(SETTINGS_TABLE_START)
    end = readme.find(SETTINGS_TABLE_END, start)
    if start < 0 or end < 0:
        raise click.ClickException(f"README.md needs the lines {SETTINGS_TABLE_START!r} and {SETTINGS_TABLE_END!r}")
    start += len(SETTINGS_TABLE_START)
    return readme[:start] + "\n" + settings_table_markdown() + readme[end:]


@click.command("settings-table")
@click.option("--check", is_flag=True, help="Only report whether README.md is up to date (exit 1 if not).")
def settings_table(check: bool) -> None:
    """Write the settings table of README.md from settings.py (names, groups, defaults, old names, docs)."""
    readme = README.read_text(encoding="utf-8")
    updated = readme_with_settings_table(readme)
    if check:
        if updated != readme:
            raise click.ClickException("README.md's settings table is out of date: "
                                       "run `flask --app api settings-table`")
        click.echo("README.md: the settings table is up to date")
        return
    if updated != readme:
        README.write_text(updated, encoding="utf-8")
    click.echo(f"README.md: settings table {'rewritten' if updated != readme else 'already up to date'}")


# ---- the development stack ------------------------------------------------------------------------

def stack_environment() -> tuple[dict[str, str], list[str]]:
    """Environment for every process of the stack, and the embedded services it started."""
    import embedded
    from api.devsecrets import development_secret

    env = dict(os.environ)
    started = []
    if not settings.DATABASE_URL:
        env["DATABASE_URL"] = embedded.postgres_url()
        started.append("postgres")
    if not settings.REDIS_URL:
        env["REDIS_URL"] = embedded.redis_url()
        started.append("redis")
    env.setdefault("SECRET_KEY", settings.SECRET_KEY or development_secret("SECRET_KEY"))
    flower_password = settings.FLOWER_PASSWORD or development_secret("FLOWER_PASSWORD", 18)
    env["FLOWER_BASIC_AUTH"] = f"{settings.FLOWER_USER}:{flower_password}"
    env.update(
        API_HOST=settings.API_HOST,
        API_PORT=str(settings.API_PORT),
        API_WORKERS=str(settings.API_WORKERS),
        FLOWER_PORT=str(settings.FLOWER_PORT),
        FLOWER_URL_PREFIX=settings.FLOWER_URL_PREFIX.strip("/"),
        PYTHONUNBUFFERED="1",
        # Celery imports task modules after changing its import path: keep the project on it.
        PYTHONPATH=os.pathsep.join(filter(None, [str(BASE_DIR), env.get("PYTHONPATH")])),
    )
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env, started


def embedded_services() -> list[str]:
    """The services the stack runs embedded (and stops when it ends): those without a URL."""
    return [name for name, url in (("postgres", settings.DATABASE_URL), ("redis", settings.REDIS_URL)) if not url]


class StopRequested(BaseException):
    """A stop asked for while the stack is still setting up (not an Exception: nothing may catch it
    on the way)."""


class StackStop:
    """How the stack process answers Ctrl-C (SIGINT, which a terminal sends to the whole foreground
    process group), SIGTERM and SIGHUP while it sets up (embedded services, migrations, admin): the
    setup ends, the embedded services it started are stopped, and the command exits 0, quietly.

    Once set up, the process hands over to the supervisor (supervise.py) by exec: same pid, the
    signals blocked across the exec so that one sent meanwhile waits for supervise.py's handlers
    instead of being lost or killing it half-started."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = False
        self.setting_up = True

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        first = not self.requested
        self.requested = True
        if self.setting_up and first:
            raise StopRequested(signal.Signals(signum).name)

    def hand_over(self, args: list[str], env: dict[str, str]) -> None:
        """Replace this process with `args` (it takes over stopping the stack). Returns only if the
        exec failed (the signals are unblocked again, the exception raised)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(args[0], args, env)  # nosec B606 - this interpreter and fixed arguments, no shell
        finally:  # only reached when exec failed
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)

    def finishing(self) -> None:
        """From here on (stopping the embedded services) signals are only noted."""
        self.setting_up = False


def release_database() -> None:
    """The stack process holds no connection while its processes run: none stays idle (or idle in a
    transaction, keeping locks and old row versions) for hours, and none is left to roll back on a
    database that is stopped after the processes."""
    from models.core.db import dispose_engine, remove_session

    remove_session()
    dispose_engine()


@click.command("stack")
def stack() -> None:
    """Run everything: migrations, admin, then API, workers, beat and Flower under supervisord, with
    merged, prefixed logs.

    Once set up, this process becomes the supervisor's runner (supervise.py, same pid): a process
    that exits is restarted, the others and the embedded services keep running. Ctrl-C, SIGTERM or
    SIGHUP stop the processes, wait for them, then stop the embedded services; the command then
    exits 0."""
    import embedded

    stop = StackStop()
    stop.install()
    embedded_now = embedded_services()
    try:
        run_stack(stop, embedded_now)  # returns only when stopped while setting up
    except StopRequested:
        pass
    finally:
        stop.finishing()
        try:
            release_database()
        finally:
            if embedded_now:
                click.echo("leadline: stopping embedded " + ", ".join(embedded_now))
                if "redis" in embedded_now:
                    embedded.stop_redis()
                if "postgres" in embedded_now:
                    embedded.stop_postgres()
    sys.exit(0)


def run_stack(stop: StackStop, embedded_now: list[str]) -> None:
    import embedded
    import supervise
    from models.core import migrate as migrations
    from models.core.db import configure

    env, started = stack_environment()
    configure(env["DATABASE_URL"])
    migrations.upgrade(env["DATABASE_URL"])
    _created, generated = ensure_admin(settings.ADMIN_LOGIN, settings.ADMIN_PASSWORD)
    click.echo(f"leadline: API http://{settings.API_HOST}:{settings.API_PORT}/api "
               f"(docs /api/docs), metrics /metrics, "
               f"Flower http://{settings.API_HOST}:{settings.FLOWER_PORT}/{settings.FLOWER_URL_PREFIX.strip('/')}/")
    if generated:
        click.echo(f"leadline: created admin {settings.ADMIN_LOGIN!r} with password {generated} "
                   "(shown once; set ADMIN_PASSWORD or run `flask --app api create-admin` to change)")
    if not settings.FLOWER_PASSWORD:
        click.echo(f"leadline: Flower user {settings.FLOWER_USER!r}, password in var/dev-secrets.json")
    if started:
        click.echo(f"leadline: embedded {', '.join(started)} under ./var")
    release_database()
    stop.hand_over(supervise.command(BASE_DIR / "Procfile", BASE_DIR, embedded.VAR_DIR / "supervisor", embedded_now),
                   env)
