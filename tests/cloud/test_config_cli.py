"""`storeedge cloud config …` as an operator runs it, against a database file."""

import json
import subprocess
import sys
from pathlib import Path

STOREEDGE = [sys.executable, "-m", "agent.cli.main"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STOREEDGE, *args], input=stdin, capture_output=True, text=True, timeout=30
    )


def test_set_get_and_history_through_the_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    assert run("cloud", "enroll-code", "--store", "s1", "--db", db).returncode == 0
    fleet = run("cloud", "config", "set", "--fleet", "-", "--db", db, "--author", "ops",
                "--comment", "receipts", stdin='{"receipt": {"store_name": "Chain"}}')  # fmt: skip
    assert fleet.returncode == 0, fleet.stderr
    assert fleet.stdout == "1\n"
    override = tmp_path / "s1.json"
    override.write_text('{"devices": {"scanner-9": {}}}')
    store = run("cloud", "config", "set", "--store", "s1", str(override), "--db", db)
    assert store.returncode == 0, store.stderr
    assert store.stdout == "2\n"
    shown = json.loads(run("cloud", "config", "get", "--store", "s1", "--db", db).stdout)
    assert shown["settings_version"] == 2
    assert shown["effective"]["receipt"]["store_name"] == "Chain"
    assert shown["effective"]["devices"] == {"scanner-9": {"scan": {
        "coupon_prefixes": [], "staff_badge_patterns": []}}}  # fmt: skip
    lines = run("cloud", "config", "history", "--store", "s1", "--db", db).stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["2", "s1"], ["1", "fleet"]]
    assert lines[1].endswith("ops  receipts")


def test_the_cli_refuses_what_the_api_refuses(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    bad = run("cloud", "config", "set", "--fleet", "-", "--db", db, stdin='{"receipt": {"x": 1}}')
    assert bad.returncode == 2
    assert "receipt.x: Extra inputs are not permitted" in bad.stderr
    assert bad.stdout == ""
    garbage = run("cloud", "config", "set", "--fleet", "-", "--db", db, stdin="{nope")
    assert garbage.returncode == 2
    assert "not JSON" in garbage.stderr
    unknown = run("cloud", "config", "set", "--store", "s9", "-", "--db", db, stdin="{}")
    assert unknown.returncode == 2
    assert "unknown store 's9'" in unknown.stderr
    raced = run("cloud", "config", "set", "--fleet", "-", "--db", db, "--if-version", "3",
                stdin="{}")  # fmt: skip
    assert raced.returncode == 2
    assert "is at version 0, not 3" in raced.stderr
    empty = run("cloud", "config", "get", "--fleet", "--db", db)
    assert json.loads(empty.stdout) == {"fleet": None}
