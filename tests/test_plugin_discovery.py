"""Entry-point discovery: the start-up cache is used, and never outlives an install or removal."""

from __future__ import annotations

import json
import shutil

from ess import plugins

PLUGIN_SOURCE = '''
from ess import hookimpl


@hookimpl
def ess_register_commands(cli):
    pass
'''


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
