"""`acquirer-stub password USER`: the way back in for an operator who lost the password that init printed once
(docs/raspberry-pi.md). Whoever can read the instance folder may; the old password and every session end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webform import post_login, world_login
from werkzeug.security import check_password_hash

from acquirer_stub.cli import main
from acquirer_stub.instance import Instance
from acquirer_stub.store import db, users


def test_a_new_password_replaces_the_old_and_ends_the_sessions(instance: Instance, client: FlaskClient,
                                                               operator: FlaskClient,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    username, old = world_login(instance.world, "operator")
    assert operator.get("/dashboard/").status_code == 200  # logged in before the reset
    assert main(["password", username, "--instance", str(instance.root)]) == 0
    out = capsys.readouterr().out
    found = re.fullmatch(rf"new password for {username}: (\S+) {{2}}\(shown once; .*\)\n", out)
    assert found, out
    new = found.group(1)
    assert len(new) >= 16 and new != old
    assert operator.get("/dashboard/").status_code == 302  # the session ended
    assert post_login(client, username, old)[1].status_code != 302
    assert post_login(client, username, new)[1].status_code == 302
    connection = db.connect(instance.database)
    try:
        texts = [row["body"] for row in connection.execute("SELECT body FROM events WHERE kind = 'security'")]
    finally:
        connection.close()
    assert any("password_reset" in text and new not in text for text in texts)


def test_an_unknown_user_or_folder_is_one_line_and_changes_nothing(instance: Instance, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    username, old = world_login(instance.world, "operator")
    assert main(["password", "nobody", "--instance", str(instance.root)]) == 1
    assert capsys.readouterr().err == "acquirer-stub: no user 'nobody'\n"
    assert main(["password", username, "--instance", str(tmp_path)]) == 1
    assert "is not an acquirer instance" in capsys.readouterr().err
    connection = db.connect(instance.database)
    try:
        user = users.find_by_name(connection, username)
    finally:
        connection.close()
    assert user is not None and check_password_hash(user.password_hash, old)
