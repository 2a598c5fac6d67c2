"""An asyncio TCP proxy that can brown a service out: delay, stall, drop and refuse.

Put it between the workers and PostgreSQL (their DATABASE_URL names the proxy's port) to
see what a slow or flaky database does to the pipeline:

    python -m scripts.proxy --upstream 127.0.0.1:5432 --listen 127.0.0.1:6432 \
        --brownout-after 10 --brownout-for 30

- delay: every chunk waits before it is forwarded (both directions);
- stall: chunks are held, connections stay open (a hung server or network);
- drop: every open connection is aborted (a server restart or a network cut);
- refuse: new connections are closed at once (the server is down).

In the CLI, SIGUSR1 toggles a stall and SIGUSR2 drops every connection.
"""

import argparse
import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    refused: int = 0
    dropped: int = 0
    bytes: int = 0


class Proxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.delay_s = 0.0
        self.refusing = False
        self.stats = ProxyStats()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.resume()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # Faults ---------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        """Back to normal: no delay, no stall, connections accepted."""
        self.delay_s = 0.0
        self.refusing = False
        self._flowing.set()

    def drop(self) -> None:
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
            self.stats.dropped += 1
        self._links.clear()

    def refuse(self) -> None:
        self.refusing = True

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    # Forwarding -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.stats.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.stats.refused += 1
            writer.transport.abort()
            return
        self.stats.connections += 1
        link = (writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        self._links.discard(link)
        for side in link:
            side.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                await self._flowing.wait()
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                    await self._flowing.wait()
                if writer.transport.is_closing():
                    return
                writer.write(chunk)
                self.stats.bytes += len(chunk)
                await writer.drain()


async def brownout(proxy: Proxy, seconds: float, rng: random.Random | None = None) -> list[str]:
    """A database having a bad time for `seconds`: spells of delay, stalls, dropped and
    refused connections, in random order and length; returns what it did."""
    rng = rng or random.Random()
    deadline = time.monotonic() + seconds
    done: list[str] = []
    spells = ["delay", "stall", "drop", "refuse", "delay-drop"]
    # Every kind once, in random order, then at random.
    order = rng.sample(spells, len(spells))
    try:
        while (left := deadline - time.monotonic()) > 0:
            spell = order.pop() if order else rng.choice(spells)
            length = min(left, rng.uniform(0.2, 0.15 * seconds))
            proxy.resume()
            if spell == "delay":
                proxy.delay(rng.uniform(0.05, 0.5))
            elif spell == "stall":
                proxy.stall()
            elif spell == "drop":
                proxy.drop()
                proxy.delay(0.02)
            elif spell == "refuse":
                proxy.drop()
                proxy.refuse()
            else:
                proxy.delay(0.1)
                proxy.drop()
            done.append(f"{spell} {length:.1f}s")
            await asyncio.sleep(length)
    finally:
        proxy.resume()
    return done


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main(args: argparse.Namespace) -> None:
    upstream, listen = _address(args.upstream), _address(args.listen)
    proxy = Proxy(*upstream, *listen)
    port = await proxy.start()
    print(f"proxy: 127.0.0.1:{port} -> {upstream[0]}:{upstream[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: proxy.resume() if proxy.stalled else proxy.stall()
    )
    loop.add_signal_handler(signal.SIGUSR2, proxy.drop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def program() -> None:
        while args.brownout_for > 0:
            await asyncio.sleep(args.brownout_after)
            print(f"proxy: brownout for {args.brownout_for:.0f} s", flush=True)
            spells = await brownout(proxy, args.brownout_for)
            print(f"proxy: brownout over: {', '.join(spells)}", flush=True)
            if not args.repeat:
                return

    task = asyncio.create_task(program())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await proxy.close()


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.proxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", required=True, help="host:port to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any free)")
    parser.add_argument("--brownout-after", type=float, default=10.0, help="seconds")
    parser.add_argument("--brownout-for", type=float, default=0.0, help="seconds (0: never)")
    parser.add_argument("--repeat", action="store_true", help="brown out again and again")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
