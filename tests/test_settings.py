"""Settings: read once, validated, errors naming the variable."""

from __future__ import annotations

import pytest

from bem.runtime.registry import static_url
from bem.settings import SettingsError, load_settings, parse_byte_size


@pytest.mark.parametrize(("text", "expected"), [
    ("1024MB", 1024**3), ("512m", 512 * 1024**2), ("2GiB", 2 * 1024**3), ("1048576", 1048576),
    ("1.5k", 1536), (4096, 4096),
])
def test_byte_sizes(text: object, expected: int) -> None:
    assert parse_byte_size(text) == expected


def test_environment_is_read_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "4")
    monkeypatch.setenv("CACHE_SIZE", "1024MB")
    monkeypatch.setenv("BEM_API_KEYS", "a, b,,c")
    s = load_settings()
    assert (s.workers, s.cache_size, s.api_key_set) == (4, 1024**3, frozenset("abc"))


def test_every_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMPY_THREADS", "0")
    monkeypatch.setenv("REDIS_URL", "http://nope")
    monkeypatch.setenv("SFDE_PORT", "70000")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "invalid setting NUMPY_THREADS (got '0')" in text
    assert "invalid setting REDIS_URL (got 'http://nope'): Value error, must start with" in text
    assert "invalid setting SFDE_PORT (got '70000')" in text


def test_static_peer_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    assert static_url(load_settings(), "sfde", "compute") == "http://127.0.0.1:5003"
    monkeypatch.setenv("BACKEND_COMPUTE_URL", "http://compute-cluster")
    monkeypatch.setenv("BACKEND_LOGIC_URL", "http://logic-cluster:9999")
    s = load_settings()
    assert static_url(s, "graph_runtime", "compute") == "http://compute-cluster:5004"
    assert static_url(s, "optimization", "logic") == "http://logic-cluster:5005"  # own port wins
