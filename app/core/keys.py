"""Redis keys built from caller-supplied parts, encoded so no two inputs share a key.

Each part is percent-encoded for the characters that structure a key (`%`, `:`, `{`, `}`),
so `a` + `b:c` and `a:b` + `c` stay apart, and the tenant is the key's hash tag, so all of
one tenant's keys of a kind live in one Redis Cluster slot (the ingest script touches them
together).
"""

_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def part(value: str) -> str:
    """One caller-supplied part, with no separator or hash-tag character left in it."""
    return value.translate(_ESCAPES)


def tenant_key(prefix: str, tenant: str, *parts: str) -> str:
    """`prefix:{tenant}:part:part...`, injective in (tenant, parts) for a fixed prefix."""
    return ":".join((prefix, "{" + part(tenant) + "}", *(part(p) for p in parts)))
