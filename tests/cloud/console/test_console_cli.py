"""`storeedge cloud user …` as a subprocess against the database the console then serves."""

import subprocess
import sys
from pathlib import Path

from cloud.config import CloudConfig
from cloud.console.keys import CONSOLE_STORAGE
from console.console_helpers import Client, login

STOREEDGE = [sys.executable, "-m", "agent.cli.main"]
CLI_PASSWORD = "typed on the server"


def user(config: CloudConfig, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STOREEDGE, "cloud", "user", *args, "--db", config.db_url],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_user_add_list_set_role_disable_and_sign_in(
    client: Client, config: CloudConfig
) -> None:
    added = user(
        config, "add", "ops", "--role", "admin", "--password-stdin", stdin=CLI_PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout == ""  # the password is never echoed
    generated = user(config, "add", "guest", "--role", "viewer", "--generate")
    assert generated.returncode == 0, generated.stderr
    guest_password = generated.stdout.strip()
    assert len(guest_password) >= 20
    listed = user(config, "list")
    assert listed.stdout.splitlines() == ["guest\tviewer\tactive", "ops\tadmin\tactive"]
    # The hashes the CLI wrote (default cost) verify in the served console.
    await login(client, "ops", CLI_PASSWORD)
    await login(client, "guest", guest_password)
    assert user(config, "set-role", "guest", "engineer").returncode == 0
    assert user(config, "disable", "guest").returncode == 0
    assert user(config, "list").stdout.splitlines()[0] == "guest\tengineer\tdisabled"
    audit, _ = await client.app[CONSOLE_STORAGE].list_audit(0, 50)
    cli_actions = [
        (r.entry.actor, r.entry.action, r.entry.target) for r in audit if r.entry.actor == "cli"
    ]
    assert ("cli", "user_add", "ops") in cli_actions
    assert ("cli", "user_set_role", "guest") in cli_actions
    assert ("cli", "user_disable", "guest") in cli_actions


def test_user_commands_refuse_bad_input_with_a_reason(tmp_path: Path, config: CloudConfig) -> None:
    assert (
        user(config, "add", "ops", "--role", "admin", "--password-stdin", stdin="x" * 20).returncode
        == 0
    )
    duplicate = user(config, "add", "OPS", "--role", "viewer", "--password-stdin", stdin="y" * 20)
    assert duplicate.returncode == 2
    assert "already exists" in duplicate.stderr
    short = user(config, "add", "new", "--role", "viewer", "--password-stdin", stdin="short")
    assert short.returncode == 2
    assert "at least 12 characters" in short.stderr
    name = user(config, "add", "bad name", "--role", "viewer", "--password-stdin", stdin="z" * 20)
    assert name.returncode == 2
    assert "username:" in name.stderr
    last = user(config, "disable", "ops")
    assert last.returncode == 2
    assert "without an active admin" in last.stderr
    ghost = user(config, "enable", "ghost")
    assert ghost.returncode == 2
    assert "no user 'ghost'" in ghost.stderr
