"""The launcher's Redis choice: a volatile or evicting default Redis is swapped for a private
persistent one under `make run` only; an explicit REDIS_URL is kept, with a warning."""

import shutil
from collections.abc import Iterator

import pytest
from redis import Redis

from scripts import services
from scripts.stack import free_port
from tests.scripts.conftest import StartRedis, pings


@pytest.fixture
def private_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A free port for the private Redis, and no REDIS_URL: the default address decides."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    port = free_port()
    yield port
    services.down([f"redis-{port}"])
    shutil.rmtree(services.DATA / f"redis-{port}", ignore_errors=True)


def test_durability_levels() -> None:
    assert services.classify("no", "everysec", "noeviction").level == "volatile"
    assert services.classify("yes", "everysec", "noeviction").level == "os-buffered"
    assert services.classify("yes", "no", "noeviction").level == "os-buffered"
    assert services.classify("yes", "always", "noeviction").level == "fsync"
    evicting = services.classify("yes", "always", "allkeys-lru")
    assert evicting.evicting and not evicting.safe
    assert (
        evicting.describe()
        == "fsync (AOF, appendfsync always) and evicting (maxmemory-policy allkeys-lru)"
    )


@pytest.mark.parametrize(
    ("extra", "found"),
    [
        (("--appendonly", "no"), "volatile (appendonly no)"),
        (
            ("--maxmemory-policy", "allkeys-lru"),
            "os-buffered (AOF, appendfsync everysec) and evicting (maxmemory-policy allkeys-lru)",
        ),
    ],
)
def test_make_run_moves_off_a_volatile_or_evicting_default_redis(
    redis_server: StartRedis,
    private_port: int,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    found: str,
) -> None:
    default = redis_server(*extra)
    started = services.up(
        switch_redis=True, default_redis_url=default, private_redis_port=private_port
    )
    assert started.redis_url == f"redis://127.0.0.1:{private_port}/0"
    assert started.names == [f"redis-{private_port}"]
    durability = services.redis_durability(started.redis_url)
    assert durability.level == "os-buffered" and durability.safe
    client = Redis.from_url(started.redis_url)
    assert client.config_get("maxmemory")["maxmemory"] == str(2 * 1024**3)
    client.close()
    host_port = default.removeprefix("redis://").removesuffix("/0")
    assert (
        f"services: Redis at {host_port} is {found}; starting a private persistent Redis on "
        f"127.0.0.1:{private_port} under {services.DATA / f'redis-{private_port}'}"
    ) in capsys.readouterr().err
    services.down(started.names)
    assert not pings(started.redis_url)


def test_a_persistent_redis_already_on_the_private_port_is_used_not_owned(
    redis_server: StartRedis, private_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    volatile = redis_server("--appendonly", "no")
    persistent = redis_server()
    port = int(persistent.rsplit(":", 1)[1].split("/")[0])
    started = services.up(switch_redis=True, default_redis_url=volatile, private_redis_port=port)
    assert started.redis_url == persistent and started.names == []
    assert f"using the persistent Redis already on 127.0.0.1:{port}" in capsys.readouterr().err


def test_an_explicit_redis_url_is_kept_and_tests_never_switch(
    redis_server: StartRedis,
    private_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    volatile = redis_server("--appendonly", "no")
    # `scripts.services exec` (make test): the default address is kept, only a warning.
    started = services.up(default_redis_url=volatile, private_redis_port=private_port)
    assert started.redis_url == volatile and started.names == []
    assert "is volatile (appendonly no); a restart of it drops" in capsys.readouterr().err
    # `make run` with REDIS_URL set: used as it is.
    monkeypatch.setenv("REDIS_URL", volatile)
    started = services.up(
        switch_redis=True,
        default_redis_url="redis://127.0.0.1:1/0",
        private_redis_port=private_port,
    )
    assert started.redis_url == volatile and started.names == []
    assert "REDIS_URL is set, so it is used as it is" in capsys.readouterr().err
    assert not pings(f"redis://127.0.0.1:{private_port}/0")
