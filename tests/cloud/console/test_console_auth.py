"""Console accounts over real loopback HTTP: login, roles, CSRF, cookies, throttle, audit."""

from datetime import UTC, datetime

import pytest
from yarl import URL

from cloud.console.keys import CONSOLE_STORAGE
from cloud.console.passwords import Passwords
from cloud.console.settings import ConsoleSettings
from cloud.keys import COUNTERS
from console.console_helpers import PASSWORD, Client, add_user, csrf_of, login

PAGES = ["/console/", "/console/alerts", "/console/coupons", "/console/stores/nope"]


async def test_anonymous_visitors_are_sent_to_login_and_come_back_after(client: Client) -> None:
    response = await client.get("/console/alerts?state=resolved", allow_redirects=False)
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert (location.path, location.query["next"]) == (
        "/console/login",
        "/console/alerts?state=resolved",
    )
    await add_user(client, "ada", "viewer")
    form = await client.get(response.headers["Location"])
    signed_in = await client.post(
        response.headers["Location"],
        data={"username": "ada", "password": PASSWORD, "_csrf": csrf_of(await form.text())},
        allow_redirects=False,
    )
    assert signed_in.headers["Location"] == "/console/alerts?state=resolved"


async def test_session_cookie_is_host_only_secure_httponly_and_lax(client: Client) -> None:
    await add_user(client, "ada", "viewer")
    form = await client.get("/console/login")
    response = await client.post(
        "/console/login",
        data={"username": "ada", "password": PASSWORD, "_csrf": csrf_of(await form.text())},
        allow_redirects=False,
    )
    cookie = response.cookies["__Host-storeedge_session"]
    assert cookie["secure"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["domain"]
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


async def test_wrong_password_unknown_user_and_disabled_user_are_refused_alike(
    client: Client,
) -> None:
    await add_user(client, "ada", "viewer")
    await add_user(client, "root", "admin")
    await add_user(client, "gone", "engineer")
    await client.app[CONSOLE_STORAGE].update_user("gone", datetime.now(UTC), disabled=True)
    for username, password in (
        ("ada", "wrong password!!"),
        ("nobody", PASSWORD),
        ("gone", PASSWORD),
    ):
        form = await client.get("/console/login")
        response = await client.post(
            "/console/login",
            data={"username": username, "password": password, "_csrf": csrf_of(await form.text())},
        )
        assert response.status == 401
        assert "Wrong username or password." in await response.text()
    assert client.app[COUNTERS].bad_requests["console_login_failed"] == 3
    await login(client, "root")
    audit = await (await client.get("/console/audit")).text()
    assert audit.count("login_failed") == 3
    assert "nobody" in audit


async def test_login_without_the_form_token_is_refused(client: Client) -> None:
    await add_user(client, "ada", "viewer")
    await client.get("/console/login")
    response = await client.post(
        "/console/login", data={"username": "ada", "password": PASSWORD, "_csrf": "forged"}
    )
    assert response.status == 403
    assert client.app[COUNTERS].bad_requests["console_bad_csrf"] == 1


async def test_repeated_failures_from_one_address_are_throttled(client: Client) -> None:
    await add_user(client, "ada", "viewer")
    statuses = []
    for _ in range(ConsoleSettings().login_max_failures + 1):
        form = await client.get("/console/login")
        response = await client.post(
            "/console/login",
            data={
                "username": "ada",
                "password": "not the password",
                "_csrf": csrf_of(await form.text()),
            },
        )
        statuses.append(response.status)
    assert statuses == [401] * 5 + [429]
    # Even the right password waits out the window now.
    form = await client.get("/console/login")
    right = await client.post(
        "/console/login",
        data={"username": "ada", "password": PASSWORD, "_csrf": csrf_of(await form.text())},
    )
    assert right.status == 429


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("viewer", "/console/users", 403),
        ("viewer", "/console/audit", 403),
        ("engineer", "/console/users", 403),
        ("engineer", "/console/audit", 403),
        ("admin", "/console/users", 200),
        ("admin", "/console/audit", 200),
        ("viewer", "/console/", 200),
        ("viewer", "/console/alerts", 200),
        ("viewer", "/console/coupons", 200),
    ],
)
async def test_each_role_sees_only_its_pages(
    client: Client, role: str, path: str, status: int
) -> None:
    await add_user(client, "someone", role)
    await login(client, "someone")
    response = await client.get(path)
    assert response.status == status
    if status == 403:
        assert f"Your role ({role}) may not do this" in await response.text()


async def test_a_viewer_cannot_acknowledge_or_add_users_even_with_a_valid_token(
    client: Client,
) -> None:
    await add_user(client, "vic", "viewer")
    csrf = await login(client, "vic")
    ack = await client.post("/console/alerts/1/ack", data={"_csrf": csrf})
    assert ack.status == 403
    add = await client.post(
        "/console/users",
        data={"_csrf": csrf, "username": "x", "role": "admin", "password": PASSWORD},
    )
    assert add.status == 403
    assert await client.app[CONSOLE_STORAGE].user_login("x") is None
    assert client.app[COUNTERS].bad_requests["console_forbidden"] == 2


async def test_posts_need_the_session_csrf_token_and_our_origin(client: Client) -> None:
    await add_user(client, "root", "admin")
    csrf = await login(client, "root")
    body = {"username": "newbie", "role": "viewer", "password": PASSWORD}
    missing = await client.post("/console/users", data=body)
    assert missing.status == 403
    cross = await client.post(
        "/console/users", data={**body, "_csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403
    assert await client.app[CONSOLE_STORAGE].user_login("newbie") is None
    ok = await client.post("/console/users", data={**body, "_csrf": csrf}, allow_redirects=False)
    assert ok.status == 303
    assert await client.app[CONSOLE_STORAGE].user_login("newbie") is not None


async def test_admin_actions_are_audited_and_roles_take_effect(
    client: Client, other_client: Client
) -> None:
    await add_user(client, "root", "admin")
    csrf = await login(client, "root")
    add = await client.post(
        "/console/users",
        data={"_csrf": csrf, "username": "eng", "role": "viewer", "password": PASSWORD},
        allow_redirects=False,
    )
    assert add.status == 303
    await login(other_client, "eng")
    assert (await other_client.post("/console/alerts/1/ack", data={"_csrf": csrf_of(
        await (await other_client.get("/console/")).text())})).status == 403  # fmt: skip
    promote = await client.post(
        "/console/users/eng", data={"_csrf": csrf, "action": "role", "role": "engineer"}
    )
    assert promote.status == 200
    page = await other_client.get("/console/")
    ack = await other_client.post(
        "/console/alerts/1/ack", data={"_csrf": csrf_of(await page.text())}, allow_redirects=False
    )
    assert ack.status == 303  # allowed now (alert 1 does not exist: nothing changes)
    await client.post("/console/users/eng", data={"_csrf": csrf, "action": "disable"})
    assert (await other_client.get("/console/", allow_redirects=False)).status == 303
    audit = await (await client.get("/console/audit")).text()
    for action in ("user_add", "user_role", "user_disable", "alert_acknowledge", "login"):
        assert action in audit


async def test_bad_account_changes_get_a_reason(client: Client) -> None:
    await add_user(client, "root", "admin")
    csrf = await login(client, "root")
    short = await client.post(
        "/console/users",
        data={"_csrf": csrf, "username": "x", "role": "viewer", "password": "short"},
    )
    assert short.status == 400
    assert "at least 12 characters" in await short.text()
    bad_name = await client.post(
        "/console/users",
        data={"_csrf": csrf, "username": "<b>", "role": "viewer", "password": PASSWORD},
    )
    assert bad_name.status == 400
    assert "&lt;b&gt;" not in await bad_name.text() or "username:" in await bad_name.text()
    last = await client.post("/console/users/root", data={"_csrf": csrf, "action": "disable"})
    assert last.status == 400
    assert "without an active admin" in await last.text()
    unknown = await client.post("/console/users/ghost", data={"_csrf": csrf, "action": "enable"})
    assert unknown.status == 404


async def test_logout_ends_the_session_server_side(client: Client) -> None:
    await add_user(client, "ada", "viewer")
    csrf = await login(client, "ada")
    token = client.session.cookie_jar.filter_cookies(client.make_url("/"))[
        "__Host-storeedge_session"
    ].value
    out = await client.post("/console/logout", data={"_csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    # Replaying the old cookie does not work: the session is gone from the database.
    client.session.cookie_jar.update_cookies(
        {"__Host-storeedge_session": token}, client.make_url("/")
    )
    assert (await client.get("/console/", allow_redirects=False)).status == 303


async def test_login_never_redirects_off_the_console(client: Client) -> None:
    await add_user(client, "ada", "viewer")
    for target in ("https://evil.example/", "//evil.example/", "/api/stores", "/console\\@evil"):
        form = await client.get("/console/login", params={"next": target})
        response = await client.post(
            "/console/login",
            params={"next": target},
            data={"username": "ada", "password": PASSWORD, "_csrf": csrf_of(await form.text())},
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/console/"


async def test_passwords_are_argon2id_with_the_rfc_9106_cost_by_default() -> None:
    encoded = await Passwords(ConsoleSettings()).async_hash(PASSWORD)
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await Passwords(ConsoleSettings()).async_verify(encoded, PASSWORD)
    assert not await Passwords(ConsoleSettings()).async_verify(encoded, PASSWORD + "x")


async def test_the_admin_api_still_wants_its_bearer_token(client: Client) -> None:
    await add_user(client, "root", "admin")
    await login(client, "root")
    assert (await client.get("/api/stores")).status == 401  # a console session is not enough
    assert (await client.get("/api/stores", headers={"Authorization": "Bearer t"})).status == 200


async def test_login_page_warns_when_secure_cookies_cannot_stick(client: Client) -> None:
    local = await (await client.get("/console/login")).text()
    assert "served over plain HTTP" not in local
    remote = await client.get("/console/login", headers={"Host": "console.example.com"})
    assert "served over plain HTTP" in await remote.text()
    proxied = await client.get(
        "/console/login", headers={"Host": "console.example.com", "X-Forwarded-Proto": "https"}
    )
    assert "served over plain HTTP" not in await proxied.text()
