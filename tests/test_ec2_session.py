"""One Ec2Session per command (per Settings object), gone with it; no AWS call to make one."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from ess.settings import load_settings
from ess_ec2.backend import Ec2Backend
from ess_ec2.session import SEEN_FRESH, session_for


def settings(tmp_path: Path):
    conf = tmp_path / "instance.conf"
    conf.write_text("[EC2]\nkey_name: pem_file\nregion: us-east-1\n")
    return load_settings(Ec2Backend(), conf)


def test_a_command_has_one_session_and_another_command_its_own(tmp_path: Path) -> None:
    first, second = settings(tmp_path), settings(tmp_path)
    assert session_for(first) is session_for(first)
    assert session_for(second) is not session_for(first)


def test_a_session_goes_with_its_settings(tmp_path: Path) -> None:
    command = settings(tmp_path)
    session = weakref.ref(session_for(command))
    del command
    gc.collect()
    assert session() is None, "a command's session outlived its settings"


def test_what_a_command_saw_is_trusted_while_fresh_and_what_it_launched_always(tmp_path: Path) -> None:
    session = session_for(settings(tmp_path))
    session.remember([{"InstanceId": "i-1"}], now=100.0)
    session.remember([{"InstanceId": "i-2"}], now=100.0, launched=True)
    assert set(session.seen_recently(["i-1", "i-2"], now=100.0 + SEEN_FRESH) or {}) == {"i-1", "i-2"}
    assert session.seen_recently(["i-1"], now=101.0 + SEEN_FRESH) is None
    assert session.seen_recently(["i-2"], now=1e9) == {"i-2": {"InstanceId": "i-2"}}
    assert session.seen_recently(["i-3"], now=100.0) is None
    assert session.not_told(["i-7", "i-8"]) == ["i-7", "i-8"]
    assert session.not_told(["i-8", "i-9"]) == ["i-9"]
