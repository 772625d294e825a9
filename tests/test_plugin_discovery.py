"""Entry-point discovery: the start-up cache is used, and never outlives an install or removal."""

from __future__ import annotations

import json
import shutil

import pytest

from ess import plugins

PLUGIN_SOURCE = """
from ess import hookimpl


@hookimpl
def ess_register_commands(cli):
    pass
"""


def install_fake_plugin(folder):
    """A minimal installed distribution with an `ess` entry point, as pip would leave it."""
    (folder / "fake_ess_plugin.py").write_text(PLUGIN_SOURCE)
    info = folder / "fake_ess_plugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ess-plugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[ess]\nfake = fake_ess_plugin\n")
    return info


def names() -> set[str]:
    plugins.reset()
    return {info.name for info in plugins.plugin_infos()}


def test_cache_is_written_and_used(ess_home):
    assert "ec2" in names()
    cache = ess_home / "cache" / "entry-points.json"
    data = json.loads(cache.read_text())
    assert ["ec2", "ess_ec2.plugin", "ess"] in data["entry_points"]
    data["entry_points"].append(["ghost", "no_such_module_anywhere", "ghost"])
    cache.write_text(json.dumps(data))
    plugins.reset()
    assert any(e.name == "ghost" for e in plugins.load_errors()), "the fresh cache was not used"


def test_installing_and_removing_a_plugin_invalidates_the_cache(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert "fake" not in names()
    info = install_fake_plugin(site)
    assert "fake" in names()
    version = next(i.version for i in plugins.plugin_infos() if i.name == "fake")
    assert version == "1.2.3"
    shutil.rmtree(info)
    assert "fake" not in names()


def test_a_damaged_cache_is_rebuilt(ess_home):
    names()
    cache = ess_home / "cache" / "entry-points.json"
    cache.write_text("{not json")
    assert "local" in names()
    assert json.loads(cache.read_text())["entry_points"]


def install_dist(folder, dist: str, entry_points: dict[str, str], source: str = PLUGIN_SOURCE) -> None:
    """A distribution named ``dist`` in ``folder`` whose ``ess`` entry points load ``source``."""
    folder.mkdir(parents=True, exist_ok=True)
    module = dist.replace("-", "_")
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value or module}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text("[ess]\n" + lines)


def fresh_manager():
    plugins.reset()
    return plugins.get_plugin_manager()


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        "null",
        '"text"',
        "42",
        "{}",
        '{"key": KEY}',
        '{"key": KEY, "entry_points": null}',
        '{"key": KEY, "entry_points": {}}',
        '{"key": KEY, "entry_points": [1]}',
        '{"key": KEY, "entry_points": [["ini", "ess.loaders.ini"]]}',
        '{"key": KEY, "entry_points": [["a", "b", "c", "d"]]}',
        '{"key": KEY, "entry_points": [[1, 2, 3]]}',
        '{"key": KEY, "entry_points": [null]}',
    ],
    ids=lambda content: content.replace("KEY", "k"),
)
def test_a_cache_of_the_wrong_shape_is_rebuilt_and_never_breaks_a_command(ess_home, ess, content):
    names()
    cache = ess_home / "cache" / "entry-points.json"
    key = json.dumps(json.loads(cache.read_text())["key"])
    cache.write_text(content.replace("KEY", key))

    result = ess("--help")

    assert result.code == 0, result
    assert result.err == "", result
    assert ["local", "ess_local.plugin", "ess"] in json.loads(cache.read_text())["entry_points"]


def test_built_ins_register_first_then_third_parties_sorted_by_name(tmp_path, monkeypatch):
    # Two folders on sys.path, "zeta" listed before "alpha", both before the ess install:
    # importlib.metadata yields zeta, alpha, then the built-ins.
    install_dist(tmp_path / "second", "alpha-plugin", {"alpha": ""})
    install_dist(tmp_path / "first", "zeta-plugin", {"zeta": ""})
    monkeypatch.syspath_prepend(str(tmp_path / "second"))
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    pm = fresh_manager()
    order = [name for name, _ in pm.list_name_plugin()]
    assert order[:6] == ["ec2", "hosts", "ini", "local", "ssh", "toml"]
    third = [name for name in order[6:] if name in ("alpha", "zeta", "pool")]
    assert third == sorted(third) and {"alpha", "zeta"} <= set(third), order


def test_an_entry_point_that_takes_a_built_in_name_is_a_load_error_shown_by_ess_plugins(tmp_path, monkeypatch, ess):
    install_dist(tmp_path / "site", "sneaky-plugin", {"local": ""})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    result = ess("plugins")
    assert result.code == 0, result
    assert (
        "load error: local: from sneaky-plugin not loaded: the entry-point name is taken by the built-in "
        "plugin (rename it in its package)" in result.out
    ), result
    assert plugins.get_plugin_manager().get_plugin("local").__name__ == "ess_local.plugin"


def test_backends_and_plugin_infos_go_through_pluggy_so_monitoring_sees_every_call():
    pm = fresh_manager()
    seen: list[tuple[str, str]] = []

    def before(hook_name, impls, kwargs):
        seen.extend((hook_name, impl.plugin_name) for impl in impls)

    undo = pm.add_hookcall_monitoring(before, lambda outcome, hook_name, impls, kwargs: None)
    try:
        providers = {impl.plugin_name for impl in pm.hook.ess_backends.get_hookimpls()}
        assert {"ec2", "local", "hosts"} <= set(plugins.backends())
        assert {name for hook, name in seen if hook == "ess_backends"} == providers
        seen.clear()
        infos = {info.name: info.backends for info in plugins.plugin_infos()}
        assert infos["local"] == ("local",)
        assert {name for hook, name in seen if hook == "ess_backends"} == providers
    finally:
        undo()


def test_a_cache_that_is_binary_or_a_folder_is_bypassed(ess_home, ess):
    names()
    cache = ess_home / "cache" / "entry-points.json"
    cache.write_bytes(b"\xff\xfe\x00garbage")
    assert ess("--help").code == 0 and "local" in names()
    cache.unlink()
    cache.mkdir()
    result = ess("--help")
    assert result.code == 0 and result.err == "", result
    assert "local" in names()


def test_plugins_are_asked_for_their_settings_once_per_manager():
    """Building a backend's whole command tree asks for specs ~30 times; the plugins answer once."""
    from ess.cli.instance import backend_group
    from ess.settings import specs_for

    pm = fresh_manager()
    asked: list[str] = []
    undo = pm.add_hookcall_monitoring(
        lambda hook_name, impls, kwargs: asked.append(hook_name), lambda outcome, hook_name, impls, kwargs: None
    )
    try:
        backend_group(plugins.backends()["local"])
        assert "ssh_timeout" in specs_for(())  # the SSH plugin's settings are there
        assert asked.count("ess_settings") == 1
    finally:
        undo()
    again = fresh_manager()  # a new manager (another ESS_PLUGINS) is asked afresh
    assert again is not pm and "ssh_timeout" in specs_for(())
