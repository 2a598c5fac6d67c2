"""Inspect and replay the dead-letter stream, a page at a time.

python -m scripts.deadletter list [--from ID] [--to ID] [--count N]
python -m scripts.deadletter replay [ID ...] [--from ID] [--to ID] [--dry-run]

`list` prints one JSON line per dead letter and, when more remain, the `--from` of the next
page. `replay` puts the letters back on the ingest stream with the stream sequence they had
(latest-write-wins still orders them as first ingested); `--dry-run` only counts them.
"""

import argparse
import asyncio
import sys

import orjson

from app.core.redis import create_redis
from app.core.settings import get_settings
from workers.deadletter import DeadLetters


async def main(args: argparse.Namespace) -> None:
    settings = get_settings()
    redis = create_redis(settings)
    dead = DeadLetters(
        redis, settings.stream, settings.dead_letter_stream, settings.dead_letter_maxlen
    )
    try:
        if args.action == "list":
            page = await dead.page(args.lo, args.hi, args.count)
            for row in page.letters:
                print(orjson.dumps(row).decode())
            if page.next_id is not None:
                print(f"more: --from {page.next_id}", file=sys.stderr)
        else:
            count = await dead.replay(
                args.ids or None, lo=args.lo, hi=args.hi, dry_run=args.dry_run
            )
            verb = "would replay" if args.dry_run else "replayed"
            print(f"{verb} {count} dead letters onto {settings.stream}")
    finally:
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.deadletter", description=__doc__)
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("ids", nargs="*", help="dead-letter ids to replay")
    parser.add_argument("--from", dest="lo", default="-", help="first id (inclusive)")
    parser.add_argument("--to", dest="hi", default="+", help="last id (inclusive)")
    parser.add_argument("--count", type=int, default=100, help="page size for list")
    parser.add_argument("--dry-run", action="store_true", help="count what replay would do")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
