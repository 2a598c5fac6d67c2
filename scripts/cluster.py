"""A local Redis Cluster for `make run CLUSTER=1` and the tests: N masters (and replicas).

Each node is a loopback `redis-server --cluster-enabled yes` with AOF (everysec),
`noeviction` and a bounded memory, under its own folder of the data dir (git-ignored
`.data/cluster-PORT/` for `make run`, a tmp_path in the tests). The first start creates
the cluster (`redis-cli --cluster create ... --cluster-replicas R --cluster-yes`); a later
start on the same folders finds the nodes' `nodes.conf` and only waits for the cluster to
be whole again. `cluster-require-full-coverage no`: while one master fails over, the slots
of the others keep serving.

    python -m scripts.cluster up [--masters 3 --replicas 1 --port 7000]   start, print the URL
    python -m scripts.cluster down [--port 7000]                         stop those nodes
    python -m scripts.cluster status [--port 7000]
"""

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from scripts.services import DATA, redis_server_args

DEFAULT_PORT = 7000
# Small enough that a killed master's replica takes over within seconds (the tests);
# `make run` keeps it as well: on one box a node "down" for 2 s is down.
NODE_TIMEOUT_MS = 2000
NODE_MAXMEMORY = "512mb"


class ClusterError(RuntimeError):
    pass


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ClusterError(f"{what}: not within {seconds} s")


def _client(port: int) -> Redis:
    # No retries: a node that is down must say so at once (the waits poll).
    return Redis(
        port=port, socket_connect_timeout=0.5, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def _info(port: int, section: str) -> dict[str, object]:
    client = _client(port)
    try:
        found: dict[str, object] = client.info(section)
        return found
    except (RedisError, OSError):
        return {}
    finally:
        client.close()


def _cluster_info(port: int) -> dict[str, str]:
    client = _client(port)
    try:
        raw = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    except (RedisError, OSError):
        return {}
    finally:
        client.close()
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(count: int, low: int = 20000, high: int = 50000) -> int:
    """A first port of `count` consecutive free ports whose cluster-bus ports (+10000) are
    free too."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - count)
        if all(_free(p) and _free(p + 10000) for p in range(base, base + count)):
            return base
    raise ClusterError(f"no {count} consecutive free ports between {low} and {high}")


@dataclass
class Cluster:
    """Nodes on consecutive ports from `port`: the first `masters` are created as masters,
    the rest as their replicas (`replicas` each)."""

    data: Path
    masters: int = 3
    replicas: int = 0
    port: int = DEFAULT_PORT
    node_timeout_ms: int = NODE_TIMEOUT_MS
    # Children of this process (the tests); a daemonized cluster (make run) keeps pidfiles.
    daemonize: bool = False
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ports(self) -> list[int]:
        return list(range(self.port, self.port + self.masters * (1 + self.replicas)))

    @property
    def url(self) -> str:
        """REDIS_CLUSTER_URL: every node as a startup node, so any one of them suffices."""
        return ",".join(f"redis://127.0.0.1:{port}" for port in self.ports)

    def folder(self, port: int) -> Path:
        return self.data / f"cluster-{port}"

    def node_args(self, port: int) -> list[str]:
        server = shutil.which("redis-server")
        if server is None:
            raise ClusterError("redis-server is not installed")
        folder = self.folder(port)
        return [
            *redis_server_args(server, port, folder, maxmemory=NODE_MAXMEMORY),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(folder / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            # Replicas sync at once (the default waits 5 s for more to join); a SIGTERM
            # does not wait for lagging replicas (the AOF is still flushed).
            "--repl-diskless-sync-delay", "0",
            "--shutdown-on-sigterm", "now",
            "--protected-mode", "no",
            "--logfile", str(folder / "redis.log"),
        ]  # fmt: skip

    def answers(self, port: int) -> bool:
        client = _client(port)
        try:
            return bool(client.ping())
        except (RedisError, OSError):
            return False
        finally:
            client.close()

    def start_node(self, port: int) -> None:
        """Start one node (again: a killed node rejoins from its nodes.conf and AOF)."""
        folder = self.folder(port)
        folder.mkdir(parents=True, exist_ok=True)
        args = self.node_args(port)
        if self.daemonize:
            args += ["--daemonize", "yes", "--pidfile", str(folder / "redis.pid")]
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        else:
            self.processes[port] = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        _until(lambda: self.answers(port), 30, f"cluster node on {port}")

    def kill_node(self, port: int) -> None:
        """SIGKILL one node, as a crash would (no AOF flush, no goodbye to the cluster)."""
        process = self.processes.get(port)
        if process is not None:
            process.kill()
            process.wait(timeout=10)
            return
        pid = self._pid(port)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _until(lambda: not self.answers(port), 10, f"node {port} gone")

    def _pid(self, port: int) -> int | None:
        try:
            return int((self.folder(port) / "redis.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def created(self) -> bool:
        return all((self.folder(port) / "nodes.conf").exists() for port in self.ports)

    def start(self, seconds: float = 60.0) -> "Cluster":
        """Start every node not answering yet, create the cluster on the first start, and
        wait until it is whole: state ok on every node and each master with its replicas."""
        fresh = not self.created()
        for port in self.ports:
            if not self.answers(port):
                self.start_node(port)
        if fresh:
            tool = shutil.which("redis-cli")
            if tool is None:
                raise ClusterError("redis-cli is not installed")
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            result = subprocess.run(
                [tool, "--cluster", "create", *nodes, "--cluster-replicas",
                 str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise ClusterError(f"redis-cli --cluster create failed: {result.stdout[-2000:]}")
        self.wait_ok(seconds)
        return self

    def wait_ok(self, seconds: float = 60.0) -> None:
        _until(self.whole, seconds, "cluster state ok with every replica in sync")

    def whole(self) -> bool:
        """Every live node says ok with all slots served, and every master has its replicas
        connected (replicated acceptance needs them)."""
        live = [port for port in self.ports if self.answers(port)]
        for port in live:
            info = _cluster_info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
        masters = [p for p in live if _info(p, "replication").get("role") == "master"]
        if len(masters) != self.masters:
            return False
        want = min(self.replicas, (len(live) - len(masters)) // max(1, len(masters)))
        for port in masters:
            replication = _info(port, "replication")
            online = [
                value
                for key, value in replication.items()
                if key.startswith("slave") and isinstance(value, dict)
                and value.get("state") == "online"
            ]  # fmt: skip
            if len(online) < want:
                return False
        return True

    def flush(self) -> None:
        """FLUSHALL on every master (the tests, between cases)."""
        for port in self.master_ports():
            client = _client(port)
            try:
                client.flushall()
            finally:
                client.close()

    def role(self, port: int) -> str:
        return str(_info(port, "replication").get("role", "down"))

    def master_ports(self) -> list[int]:
        return [port for port in self.ports if self.role(port) == "master"]

    def replica_of(self, master: int) -> int | None:
        """The port of a replica of the master on `master`."""
        for port in self.ports:
            info = _info(port, "replication")
            if info.get("role") == "slave" and int(str(info.get("master_port", 0))) == master:
                return port
        return None

    def stop(self) -> None:
        """Stop every node (SIGTERM: the AOF is flushed), children or daemonized."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
        for port in self.ports:
            pid = self._pid(port)
            if pid is None:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"redis" in cmdline:
                os.kill(pid, signal.SIGTERM)
        for port in self.ports:
            self._until_down(port)

    def _until_down(self, port: int) -> None:
        _until(lambda: not self.answers(port), 15, f"node {port} stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    cluster = Cluster(args.data, args.masters, args.replicas, args.port, daemonize=True)
    if args.action == "up":
        cluster.start()
        print(cluster.url)
    elif args.action == "down":
        cluster.stop()
    else:
        for port in cluster.ports:
            print(port, cluster.role(port), _cluster_info(port).get("cluster_state", "down"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
