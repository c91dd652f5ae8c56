"""``rho-actors store migrate``: a database store's schema, brought up to date.

Opening a store migrates it anyway (on first use); this command does it
ahead of time, for operators who upgrade a shared database once rather than
from whichever worker happens to start first.
"""

from __future__ import annotations

import argparse

from .._store._sql import SCHEMA_VERSION
from ._common import EXIT_OK, open_store


def migrate_main(args: argparse.Namespace) -> int:
    store = open_store(args)
    if not hasattr(store.backend, "location"):
        print(f"{store.location}: a session directory has no schema to migrate")
        return EXIT_OK
    store.backend.close()
    print(f"{store.location}: at schema version {SCHEMA_VERSION}")
    return EXIT_OK
