"""Serving stored files: every role × own / other owner, the headers a browser gets, and traversal
attempts that must never return a byte from outside the media root."""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import update

from api.security import issue_token
from models.files.tables import File
from models.people.tables import User
from tests.factories import create_user, make_city, make_request, make_transaction
from tests.file_samples import jpeg_bytes, mp3_bytes, pdf_bytes
from tests.storage_support import both_backends, put_media
from tests.support import bearer, login

ROLES = ("admin", "manager", "director", "callcentr", "avitolog", "master")
ALL = set(ROLES)
SECRET = b"TOP SECRET: outside the media root"


@dataclass
class Stored:
    path: str
    data: bytes
    file_id: int


def store_file(db, media, directory: str, name: str, data: bytes, content_type: str, *, original: str,
               request_id=None, transaction_id=None) -> Stored:
    path = f"{directory}/{name}"
    put_media(media, path, data)
    row = File(kind={"zayvka/bso": "bso", "zayvka/rashod": "expense", "zayvka/zapis": "recording",
                     "gorod/rashod": "transaction"}[directory],
               request_id=request_id, transaction_id=transaction_id, original_name=original, size_bytes=len(data),
               sha256=hashlib.sha256(data).hexdigest(), sniffed_type=content_type, status="ready",
               storage_path=path, quarantine_path=name.split(".")[0])
    db.add(row)
    db.commit()
    return Stored(path, data, row.id)


@pytest.fixture()
def world(db, media, tmp_path):
    (tmp_path / "secret.txt").write_bytes(SECRET)  # beside the media root: must never be served
    a, b = make_city("Город А"), make_city("Город Б")
    users = {role: create_user(role, city_id=a.id if role in ("director", "master") else None) for role in ROLES}
    other_master = create_user("master", city_id=a.id)
    own = make_request(a.id, master_id=users["master"].id)
    same_city = make_request(a.id, master_id=other_master.id)
    other_city = make_request(b.id)
    tx_a, tx_b = make_transaction(a.id), make_transaction(b.id)
    files = {
        "own request": store_file(db, media, "zayvka/bso", "a1b2c3d4e5f60718293a4b5c6d7e8f90.jpg", jpeg_bytes(),
                                  "image/jpeg", original="БСО №1.jpg", request_id=own.id),
        "same city, other master": store_file(db, media, "zayvka/rashod", "11111111111111111111111111111111.pdf",
                                              pdf_bytes(), "application/pdf", original="чек.pdf",
                                              request_id=same_city.id),
        "other city": store_file(db, media, "zayvka/zapis", "22222222222222222222222222222222.mp3", mp3_bytes(),
                                 "audio/mpeg", original="звонок.mp3", request_id=other_city.id),
        "transaction own city": store_file(db, media, "gorod/rashod", "33333333333333333333333333333333.jpg",
                                           jpeg_bytes(20, 20), "image/jpeg", original="квитанция.jpg",
                                           transaction_id=tx_a.id),
        "transaction other city": store_file(db, media, "gorod/rashod", "44444444444444444444444444444444.pdf",
                                             pdf_bytes(), "application/pdf", original="акт.pdf",
                                             transaction_id=tx_b.id),
        "owner deleted": store_file(db, media, "zayvka/bso", "55555555555555555555555555555555.jpg", jpeg_bytes(),
                                    "image/jpeg", original="старый.jpg"),
    }
    return {"users": users, "files": files, "requests": (own, same_city, other_city)}


VISIBLE = {
    "own request": ALL,
    "same city, other master": ALL - {"master"},
    "other city": ALL - {"director", "master"},
    "transaction own city": {"admin", "manager", "director"},
    "transaction other city": {"admin", "manager"},
    "owner deleted": {"admin", "manager"},
}


def _token(app, user: User) -> str:
    with app.app_context():
        return issue_token(user)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("owner", list(VISIBLE))
@pytest.mark.parametrize("mode", ["view", "download"])
def test_every_role_sees_only_files_of_what_it_may_read(app, client, world, role, owner, mode):
    stored = world["files"][owner]
    headers = bearer(_token(app, world["users"][role]))
    response = client.get(f"/api/secure-files/{mode}/{stored.path}", headers=headers)
    state = client.get(f"/api/files/{stored.file_id}", headers=headers)
    if role in VISIBLE[owner]:
        assert response.status_code == 200, (role, owner, response.status_code)
        assert response.data == stored.data
        assert state.status_code == 200
    else:
        assert response.status_code == 404, (role, owner, response.status_code)
        assert response.json["code"] == "not_found" and stored.data not in response.data
        assert state.status_code == 404


@both_backends
def test_browser_headers_for_view_and_download(client, world):
    login(client, world["users"]["admin"])
    image = world["files"]["own request"]
    view = client.get(f"/api/secure-files/view/{image.path}")
    assert view.headers["Content-Type"] == "image/jpeg"
    assert view.headers["X-Content-Type-Options"] == "nosniff"
    assert view.headers["Content-Disposition"] == (
        "inline; filename=\"No1.jpg\"; filename*=UTF-8''%D0%91%D0%A1%D0%9E%20%E2%84%961.jpg"
    )
    assert "sandbox" in view.headers["Content-Security-Policy"]
    assert view.headers["Cache-Control"].startswith("private")
    assert view.data == image.data and view.headers["Content-Length"] == str(len(image.data))
    download = client.get(f"/api/secure-files/download/{image.path}")
    assert download.headers["Content-Disposition"].startswith("attachment; ")
    assert download.headers["X-Frame-Options"] == "DENY"

    pdf = client.get(f"/api/secure-files/view/{world['files']['same city, other master'].path}")
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["X-Frame-Options"] == "SAMEORIGIN"  # the SPA shows it in an <iframe>
    assert pdf.headers["Content-Security-Policy"] == "frame-ancestors 'self'"


@both_backends
def test_audio_supports_ranges_and_conditional_requests(client, world):
    login(client, world["users"]["admin"])
    audio = world["files"]["other city"]
    url = f"/api/secure-files/view/{audio.path}"
    partial = client.get(url, headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and partial.data == audio.data[:100]
    assert partial.headers["Content-Type"] == "audio/mpeg"
    assert partial.headers["Content-Range"] == f"bytes 0-99/{len(audio.data)}"
    middle = client.get(url, headers={"Range": "bytes=50-"})
    assert middle.status_code == 206 and middle.data == audio.data[50:]
    beyond = client.get(url, headers={"Range": f"bytes={len(audio.data) + 10}-"})
    assert beyond.status_code == 416
    etag = client.get(url).headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
    assert stale.status_code == 200 and stale.data == audio.data  # If-Range no longer matches: the whole file


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_s3_presigned_redirect_after_the_same_authorization(app, client, world, media):
    """With S3_PRESIGN_SECONDS the API answers (to those allowed only) a redirect to a short-lived URL of the
    bucket that carries the type and the disposition; the bytes come from S3."""
    media.presign_seconds = 60
    stored = world["files"]["own request"]
    outsider = bearer(_token(app, world["users"]["master"]))
    foreign = client.get(f"/api/secure-files/view/{world['files']['other city'].path}", headers=outsider)
    assert foreign.status_code == 404 and "Location" not in foreign.headers
    login(client, world["users"]["admin"])
    response = client.get(f"/api/secure-files/download/{stored.path}")
    assert response.status_code == 302 and response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    assert location.startswith(media.endpoint_url) and "X-Amz-Expires=60" in location
    fetched = requests.get(location, timeout=10)
    assert fetched.status_code == 200 and fetched.content == stored.data
    assert fetched.headers["Content-Type"] == "image/jpeg"
    assert fetched.headers["Content-Disposition"].startswith("attachment; filename=")


def test_legacy_media_prefix_is_accepted(client, world):
    login(client, world["users"]["admin"])
    stored = world["files"]["own request"]
    assert client.get(f"/api/secure-files/view/media/{stored.path}").data == stored.data


def test_x_accel_redirect_hands_the_bytes_to_nginx(client, world, media):
    login(client, world["users"]["admin"])
    stored = world["files"]["own request"]
    media.accel_prefix = "/_protected_media/"
    response = client.get(f"/api/secure-files/view/{stored.path}")
    assert response.status_code == 200 and response.data == b""
    assert response.headers["X-Accel-Redirect"] == f"/_protected_media/{stored.path}"
    assert response.headers["Content-Type"] == "image/jpeg" and response.headers["X-Content-Type-Options"] == "nosniff"


def test_anonymous_and_disabled_users_get_nothing(client, world, db):
    stored = world["files"]["own request"]
    assert client.get(f"/api/secure-files/view/{stored.path}").status_code == 401
    master = world["users"]["master"]
    login(client, master)
    db.execute(update(User).where(User.id == master.id).values(status="inactive"))
    db.commit()
    response = client.get(f"/api/secure-files/view/{stored.path}")
    assert response.status_code == 401 and stored.data not in response.data


TRAVERSALS = [
    "../secret.txt",
    "../../secret.txt",
    "zayvka/bso/../../secret.txt",
    "zayvka/bso/../../../../../../etc/passwd",
    "..%2fsecret.txt",
    "%2e%2e/%2e%2e/secret.txt",
    "zayvka/bso/%2e%2e/%2e%2e/secret.txt",
    "%252e%252e%252fsecret.txt",  # double-encoded: arrives with '%' still in it
    "zayvka%252fbso%252f..%252f..%252fsecret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "..\\secret.txt",
    "..%5c..%5csecret.txt",
    "zayvka\\bso\\..\\..\\secret.txt",
    "zayvka/bso/a1b2c3d4e5f60718293a4b5c6d7e8f90.jpg%00.txt",
    "zayvka/bso/./a1b2c3d4e5f60718293a4b5c6d7e8f90.jpg",
    "zayvka//bso/a1b2c3d4e5f60718293a4b5c6d7e8f90.jpg",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    "../media_x/zayvka/bso/x.jpg",
    "media/../secret.txt",
    "C:/Windows/win.ini",
    "zayvka/bso/secret.txt",
    "zayvka/bso/00000000000000000000000000000000.jpg",  # well formed, no such file
]


@pytest.mark.parametrize("attempt", TRAVERSALS)
@pytest.mark.parametrize("mode", ["view", "download"])
def test_traversal_attempts_never_leave_the_media_root(client, world, media, attempt, mode):
    sibling = media.media_root.parent / "media_x" / "zayvka" / "bso"
    sibling.mkdir(parents=True, exist_ok=True)
    (sibling / "x.jpg").write_bytes(SECRET)
    login(client, world["users"]["admin"])
    response = client.get(f"/api/secure-files/{mode}/{attempt}")
    assert response.status_code in (403, 404), (attempt, response.status_code)
    assert SECRET not in response.data and b"root:" not in response.data
    assert response.is_json and response.json["detail"]


def test_symlinks_in_the_media_root_are_refused(client, world, db, media):
    """Even a path the database vouches for is refused when it is, or passes through, a symlink."""
    login(client, world["users"]["admin"])
    own = world["requests"][0]
    linked_file = media.media_root / "zayvka/bso/66666666666666666666666666666666.jpg"
    os.symlink(media.media_root.parent / "secret.txt", linked_file)
    outside = media.media_root.parent / "outside"
    outside.mkdir()
    (outside / "77777777777777777777777777777777.jpg").write_bytes(SECRET)
    shutil.rmtree(media.media_root / "zayvka/zapis")
    os.symlink(outside, media.media_root / "zayvka/zapis")
    for path in ("zayvka/bso/66666666666666666666666666666666.jpg",
                 "zayvka/zapis/77777777777777777777777777777777.jpg"):
        db.add(File(kind="bso", request_id=own.id, original_name="x.jpg", status="ready", storage_path=path,
                    sniffed_type="image/jpeg"))
        db.commit()
        for mode in ("view", "download"):
            response = client.get(f"/api/secure-files/{mode}/{path}")
            assert response.status_code == 403, (path, response.status_code)
            assert SECRET not in response.data


def test_pending_and_rejected_files_are_not_served(client, world, db, media):
    login(client, world["users"]["admin"])
    own = world["requests"][0]
    for status, name in (("pending", "88888888888888888888888888888888.jpg"),
                         ("rejected", "99999999999999999999999999999999.jpg")):
        (media.media_root / "zayvka/bso" / name).write_bytes(jpeg_bytes())
        db.add(File(kind="bso", request_id=own.id, original_name="x.jpg", status=status,
                    storage_path=f"zayvka/bso/{name}", sniffed_type="image/jpeg"))
        db.commit()
        assert client.get(f"/api/secure-files/view/zayvka/bso/{name}").status_code == 404


def test_there_is_no_public_media_route(client, world):
    stored = world["files"]["own request"]
    for path in (f"/media/{stored.path}", f"/api/media/{stored.path}", f"/static/../var/media/{stored.path}"):
        response = client.get(path)
        assert response.status_code == 404 and stored.data not in response.data


def test_media_existing_answers_as_media_exists_for_many_paths(media):
    """The bulk check (the legacy verification's) finds exactly the files open_media would open: not
    a symlinked file, not a file in a symlinked folder, not a folder, not a malformed path."""
    root = media.media_root
    for folder in ("zayvka/bso", "zayvka/zapis", "gorod/rashod"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "zayvka/bso/11111111111111111111111111111111.jpg").write_bytes(jpeg_bytes())
    os.symlink(root.parent / "secret.txt", root / "zayvka/bso/22222222222222222222222222222222.jpg")
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "33333333333333333333333333333333.mp3").write_bytes(SECRET)
    shutil.rmtree(root / "zayvka/zapis")
    os.symlink(outside, root / "zayvka/zapis")
    (root / "gorod/rashod/44444444444444444444444444444444.pdf").mkdir()
    paths = ["zayvka/bso/11111111111111111111111111111111.jpg", "zayvka/bso/22222222222222222222222222222222.jpg",
             "zayvka/zapis/33333333333333333333333333333333.mp3", "gorod/rashod/44444444444444444444444444444444.pdf",
             "zayvka/bso/55555555555555555555555555555555.jpg", "zayvka/bso/../../secret.txt", "secret.txt"]
    one_by_one = {path for path in paths if media.media_exists(path)}
    assert media.media_existing(paths) == one_by_one == {"zayvka/bso/11111111111111111111111111111111.jpg"}
