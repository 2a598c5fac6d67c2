"""API keys: `python -m scripts.keys create|list|revoke`.

create --tenant T --name N [--expires 90d] [--rate EPS --burst N]
    prints the new key once; only its HMAC is stored
list [--tenant T]       prefixes, names, dates and states (never a key or a hash)
revoke PREFIX           takes effect within KEY_CACHE_TTL_S in every process
"""

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

import asyncpg

from app.auth import keys, queries
from app.core.params import check_param
from app.core.settings import dsn, get_settings
from app.core.timeparse import parse_duration


def _state(row: queries.KeyRow) -> str:
    if row.revoked_at is not None:
        return f"revoked {row.revoked_at.isoformat(timespec='seconds')}"
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        return f"expired {row.expires_at.isoformat(timespec='seconds')}"
    if row.expires_at is not None:
        return f"active until {row.expires_at.isoformat(timespec='seconds')}"
    return "active"


async def main(args: argparse.Namespace) -> int:
    settings = get_settings()
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        if args.action == "create":
            tenant = check_param(args.tenant, "tenant")
            expires = None
            if args.expires:
                seconds = parse_duration(args.expires, "expires", max_s=3650 * 86400)
                expires = datetime.now(UTC) + timedelta(seconds=seconds)
            key, prefix = keys.generate()
            await queries.insert(
                conn,
                prefix=prefix,
                key_hash=keys.digest(key, settings.api_key_pepper),
                tenant=tenant,
                name=args.name,
                expires_at=expires,
                rate_eps=args.rate,
                burst=args.burst,
            )
            print(key)
            print(
                f"created key {prefix} for tenant {tenant!r}; it is shown only now", file=sys.stderr
            )
        elif args.action == "list":
            for row in await queries.listing(conn, args.tenant):
                created = row.created_at.isoformat(timespec="seconds")
                print(
                    f"{row.prefix}  {row.tenant_id}  {row.name}  created {created}  {_state(row)}"
                )
        else:
            revoked = await queries.revoke(conn, args.prefix)
            if revoked is None:
                print(f"no key with prefix {args.prefix!r}", file=sys.stderr)
                return 1
            print(f"revoked {revoked.prefix} of tenant {revoked.tenant_id!r}")
    finally:
        await conn.close()
    return 0


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.keys", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--expires", help="a duration such as 90d")
    create.add_argument("--rate", type=float, help="events/s this key's tenant may ingest")
    create.add_argument("--burst", type=float, help="events above the rate in one burst")
    listing = sub.add_parser("list")
    listing.add_argument("--tenant")
    revoke = sub.add_parser("revoke")
    revoke.add_argument("prefix")
    raise SystemExit(asyncio.run(main(parser.parse_args())))


if __name__ == "__main__":
    cli()
