"""cosmo_torrent downloads without a timeout; the mend gives every request one."""

from __future__ import annotations

import pytest

from hscsim_utils.compat.cosmo_torrent import request_timeout


class _Stop(Exception):
    pass


class _Requests:
    """Records the keyword arguments of ``get`` and stops the download there."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def get(self, url, **kwargs):
        self.calls.append(kwargs)
        raise _Stop(url)


@pytest.fixture
def recorder(monkeypatch):
    import cosmo_torrent.cosmo_torrent as ct

    fake = _Requests()
    monkeypatch.setattr(ct, "requests", fake)
    return ct, fake


def test_cosmo_torrent_requests_without_timeout(recorder, tmp_path):
    ct, fake = recorder
    with pytest.raises(_Stop):
        ct.download_data("HSC_tables", str(tmp_path), "http://127.0.0.1:9")
    assert fake.calls and "timeout" not in fake.calls[0]


def test_mended_requests_have_the_timeout_and_are_restored(recorder, tmp_path):
    ct, fake = recorder
    with request_timeout(ct, (3.0, 30.0)), pytest.raises(_Stop):
        ct.download_data("HSC_tables", str(tmp_path), "http://127.0.0.1:9")
    assert fake.calls[0]["timeout"] == (3.0, 30.0)
    assert fake.calls[0]["stream"] is True
    assert ct.requests is fake
