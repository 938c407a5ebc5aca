"""deploy/: the compose file parses with every service, Prometheus accepts its config, Grafana's
dashboard loads with its panels and asks only for metrics that exist, and nginx accepts its config
and, run for real in front of the API, routes what it should (SPA fallback, /api, internal media,
no public /metrics). The tools come from Debian's packages (tests/debian.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
import requests
import yaml

from embedded import free_port
from settings import Settings, settings
from tests.debian import ensure_tool
from tests.factories import TEST_PASSWORD, create_user
from tests.support import bearer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICES = {"postgres", "redis", "migrate", "api", "worker-light", "worker-heavy", "beat", "flower", "nginx",
            "prometheus", "grafana"}
S3_SERVICES = {"minio", "minio-bucket"}  # `--profile s3`: the bucket of STORAGE_BACKEND=s3
NOT_PASSED_TO_CONTAINERS = {"API_HOST", "API_PORT", "FLOWER_PORT"}


def compose_config(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    tool = ensure_tool("docker-compose", "docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in {f.name for f in fields(Settings)}}
    env.update(env_extra)
    return subprocess.run([tool, "-f", str(DEPLOY / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, env=env, cwd=DEPLOY, timeout=60)


def test_compose_parses_the_full_stack():
    done = compose_config({"GRAFANA_ADMIN_PASSWORD": "grafana-secret"})
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == SERVICES | S3_SERVICES
    assert all(services[name]["profiles"] == ["s3"] for name in S3_SERVICES)  # local disk stays the default
    assert not any(services[name].get("profiles") for name in SERVICES)

    # Only nginx faces the network; the rest listen on loopback for an SSH tunnel, or not at all.
    for name, service in services.items():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}"
            assert name == "nginx" or str(published).startswith("127.0.0.1:"), (name, port)
    # Every setting reaches the app containers (a new one missing here would silently keep its default).
    environment = services["api"]["environment"]
    missing = [f.name for f in fields(Settings) if f.name not in environment and f.name not in NOT_PASSED_TO_CONTAINERS]
    assert missing == []
    assert environment["X_ACCEL_REDIRECT_PREFIX"] == "/_protected_media/"
    assert environment["TRUSTED_PROXIES"] == "1"
    assert environment["STORAGE_BACKEND"] == "" and environment["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert environment["S3_BUCKET"] == "leadline"
    assert "--url_prefix=flower" in services["flower"]["command"]
    assert f"{DEPLOY}/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    assert "media:/data:ro" in services["nginx"]["volumes"]  # nginx reads the media, never writes


def test_compose_refuses_to_start_grafana_without_a_password():
    done = compose_config({})
    assert done.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in done.stderr


def test_prometheus_config_is_valid():
    promtool = ensure_tool("promtool", "prometheus")
    text = (DEPLOY / "prometheus.yml").read_text()
    done = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    jobs = {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["leadline-api"]["metrics_path"] == "/metrics"
    assert jobs["leadline-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["flower"]["metrics_path"] == f"/{settings.FLOWER_URL_PREFIX.strip('/')}/metrics"
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]


# ---- Grafana -----------------------------------------------------------------------------------------

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "leadline.json"
METRIC_RE = re.compile(r"\b((?:leadline|flask|flower)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def family_of(sample: str) -> str:
    for suffix in SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def test_grafana_provisioning_and_dashboard_load():
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/leadline.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows[:4] == ["HTTP", "Queues", "Tasks", "Business"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    graphs = [p for p in panels if p["type"] != "row"]
    assert all(p["title"] and p["targets"] and p["datasource"]["uid"] == source["uid"] for p in graphs)
    titles = " ".join(p["title"] for p in graphs)
    for word in ("HTTP", "Очереди", "Задачи", "Бизнес"):
        assert word in titles
    # Panels do not overlap on the grid.
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_dashboard_asks_only_for_metrics_that_exist(app, committed):
    """Every leadline_/flask_ series in a panel is exported by the API's /metrics, every flower_ one by
    Flower: a renamed metric would leave a panel silently empty."""
    from prometheus_client.parser import text_string_to_metric_families

    client = app.test_client()
    assert client.get("/api/health").status_code == 200  # one request, so the HTTP families have data
    families = {f.name for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    flower_source = "".join(p.read_text() for p in Path(__import__("flower").__file__).parent.rglob("*.py"))

    wanted = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            wanted.update(METRIC_RE.findall(target["expr"]))
    missing = []
    for metric in sorted(wanted):
        if metric.startswith("flower_"):
            if f"'{family_of(metric) if metric.endswith('_bucket') else metric}'" not in flower_source:
                missing.append(metric)
        elif family_of(metric) not in families and metric not in families:
            missing.append(metric)
    assert missing == [], f"not exported: {missing}"


# ---- nginx -------------------------------------------------------------------------------------------

def nginx_copy(tmp_path: Path, *, api_port: int, listen_port: int, spa: Path, media: Path) -> Path:
    """The production config with this machine's addresses and folders in place of the containers'."""
    text = (DEPLOY / "nginx.conf").read_text()
    replacements = {
        "server api:8000;": f"server 127.0.0.1:{api_port};",
        "server flower:5555;": "server 127.0.0.1:9;",
        "server grafana:3000;": "server 127.0.0.1:9;",
        "listen 80 default_server;": f"listen 127.0.0.1:{listen_port} default_server;",
        "root /usr/share/nginx/html;": f"root {spa};",
        "alias /data/media/;": f"alias {media}/;",
        "pid /tmp/nginx.pid;": f"pid {tmp_path}/nginx.pid;\nuser root;",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    for folder in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        text = text.replace("http {", f"http {{\n    {folder}_temp_path {tmp_path}/{folder};", 1)
    copy = tmp_path / "nginx.conf"
    copy.write_text(text)
    return copy


def test_nginx_accepts_the_config(tmp_path):
    nginx = ensure_tool("nginx", "nginx")
    copy = nginx_copy(tmp_path, api_port=8000, listen_port=free_port(), spa=tmp_path, media=tmp_path)
    done = subprocess.run([nginx, "-t", "-c", str(copy), "-p", str(tmp_path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    text = (DEPLOY / "nginx.conf").read_text()
    # The locations agree with the settings the API and Flower run with.
    assert "location /_protected_media/ {" in text and "internal;" in text
    assert f"location /{settings.FLOWER_URL_PREFIX.strip('/')}/ {{" in text
    body_mb = int(re.search(r"client_max_body_size (\d+)m;", text).group(1))
    assert body_mb >= settings.MAX_REQUEST_MB


@pytest.fixture()
def live_api(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


@pytest.fixture()
def accel_media(tmp_path):
    """The API's storage as compose configures it: files leave through nginx's internal location."""
    from storage import backend

    store = backend.LocalStorage(tmp_path / "media", tmp_path / "quarantine", "/_protected_media/")
    previous = backend.configure(store)
    yield store
    backend.configure(previous)


def stored_scan(session, media_root: Path) -> tuple[str, bytes]:
    """A validated scan attached to a request, as the files worker leaves it."""
    from models.files.tables import File
    from tests.factories import make_request
    from tests.file_samples import jpeg_bytes

    data = jpeg_bytes()
    path = "zayvka/bso/a1b2c3d4e5f60718293a4b5c6d7e8f90.jpg"
    (media_root / path).parent.mkdir(parents=True, exist_ok=True)
    (media_root / path).write_bytes(data)
    request = make_request()
    session.add(File(kind="bso", request_id=request.id, original_name="БСО №1.jpg", size_bytes=len(data),
                     sha256=hashlib.sha256(data).hexdigest(), sniffed_type="image/jpeg", status="ready",
                     storage_path=path, quarantine_path="a1b2c3d4e5f60718293a4b5c6d7e8f90"))
    session.commit()
    return path, data


def test_nginx_in_front_of_the_api(tmp_path, live_api, app, committed, accel_media):
    nginx = ensure_tool("nginx", "nginx")
    spa, media = tmp_path / "spa", accel_media.media_root
    (spa / "assets").mkdir(parents=True)
    (spa / "index.html").write_text("<!doctype html><title>leadline</title><div id=app></div>")
    (spa / "assets" / "app.1234.js").write_text("console.log('spa')")
    path, data = stored_scan(committed, media)
    admin = create_user("admin")
    port = free_port()
    copy = nginx_copy(tmp_path, api_port=live_api, listen_port=port, spa=spa, media=media)
    process = subprocess.Popen([nginx, "-c", str(copy), "-p", str(tmp_path), "-g", "daemon off;"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(base + "/", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
                time.sleep(0.05)

        # The SPA: files as they are, every other path falls back to index.html, fetched fresh.
        route = requests.get(base + "/requests/15/edit", timeout=5)
        assert route.status_code == 200 and "<div id=app>" in route.text
        assert route.headers["Cache-Control"] == "no-cache"
        asset = requests.get(base + "/assets/app.1234.js", timeout=5)
        assert asset.text == "console.log('spa')" and "immutable" in asset.headers["Cache-Control"]
        assert requests.get(base + "/assets/missing.js", timeout=5).status_code == 404

        # /api goes to the API, which sees nginx's request id.
        health = requests.get(base + "/api/health", timeout=5)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert re.fullmatch(r"[0-9a-f]{32}", health.headers["X-Request-ID"])
        assert health.headers["X-Content-Type-Options"] == "nosniff"
        login = requests.post(base + "/api/auth/login", json={"login": "nobody", "password": "wrong-password"},
                              timeout=5)
        assert login.status_code == 401 and login.json()["detail"]

        # A file: the API checks who asks, nginx sends the bytes with the API's headers.
        token = requests.post(base + "/api/auth/login", json={"login": admin.login, "password": TEST_PASSWORD},
                              timeout=5).json()["access_token"]
        scan = requests.get(f"{base}/api/secure-files/view/{path}", headers=bearer(token), timeout=5)
        assert scan.status_code == 200 and scan.content == data
        assert scan.headers["Content-Type"] == "image/jpeg"
        assert scan.headers["Content-Disposition"].startswith("inline;")
        assert scan.headers["X-Content-Type-Options"] == "nosniff"  # once, not repeated by nginx
        assert scan.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "sandbox" in scan.headers["Content-Security-Policy"]
        anonymous = requests.get(f"{base}/api/secure-files/view/{path}", timeout=5)
        assert anonymous.status_code == 401 and data not in anonymous.content

        # Never public: metrics and the internal media location.
        for private in ("/metrics", "/flower/metrics", f"/_protected_media/{path}"):
            response = requests.get(base + private, timeout=5)
            assert response.status_code == 404 and data not in response.content, private
    finally:
        process.terminate()
        process.wait(timeout=10)
    shutil.rmtree(tmp_path / "proxy", ignore_errors=True)
