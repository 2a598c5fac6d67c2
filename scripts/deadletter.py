"""Inspect and replay the dead-letter stream.

python -m scripts.deadletter list [--count N]
python -m scripts.deadletter replay [ID ...]     (all when no id is given)
"""

import argparse
import asyncio

import orjson

from app.core.redis import create_redis
from app.core.settings import get_settings
from workers.deadletter import DeadLetters


async def main(action: str, ids: list[str], count: int) -> None:
    settings = get_settings()
    redis = create_redis(settings)
    dead = DeadLetters(redis, settings.stream, settings.dead_letter_stream)
    try:
        if action == "list":
            for row in await dead.entries(count):
                print(orjson.dumps(row).decode())
        else:
            replayed = await dead.replay(ids or None)
            print(f"replayed {replayed} dead letters onto {settings.stream}")
    finally:
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.deadletter", description=__doc__)
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("ids", nargs="*", help="dead-letter ids to replay")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.action, args.ids, args.count))


if __name__ == "__main__":
    cli()
