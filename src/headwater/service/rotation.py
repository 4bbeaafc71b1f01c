"""``headwater keys rotate-data``: rewrite every encrypted column under the current data key.

Rows are walked in primary-key order, ``batch`` per transaction; a value already under the
current key is left alone, a value under an older key is decrypted and encrypted again, and
a plaintext value (written before the column was marked encrypted) is encrypted. Running it
twice is harmless; it can run while Headwater serves.
"""

from __future__ import annotations

import re

from headwater.config import Settings
from headwater.db.catalog import introspect
from headwater.db.connect import open_database
from headwater.db.sql import ident
from headwater.errors import SettingsError
from headwater.service.crypto import FieldCipher
from headwater.settings_file import EncryptionSettings

_DOLLAR = re.compile(r"\$(\d+)")


async def rotate(settings: Settings, encryption: EncryptionSettings, *,
                 batch: int = 500) -> dict[str, int]:
    cipher = FieldCipher(encryption)
    catalog = await introspect(settings.database_url, settings.db_schema,
                               prepared_statements=settings.db_prepared_statements)
    db = open_database(settings)
    await db.start()
    counts: dict[str, int] = {}
    try:
        for table_name, column in sorted(encryption.columns):
            table = catalog.table(table_name)
            if table is None or column not in table.columns:
                raise SettingsError(f"encryption.columns: {table_name}.{column} does not exist")
            if len(table.primary_key) != 1:
                raise SettingsError(f"{table_name} needs a one-column primary key to rotate "
                                    "its encrypted values")
            pk = table.primary_key[0]
            target = ident(table_name)
            if db.dialect == "postgresql" and db.schema:
                target = f"{ident(db.schema)}.{target}"

            def sql(text: str) -> str:
                return _DOLLAR.sub(r"?\1", text) if db.dialect == "sqlite" else text

            select = sql(f"SELECT {ident(pk)}, {ident(column)} FROM {target} WHERE "
                         f"{ident(column)} IS NOT NULL AND {ident(pk)} > $1 "
                         f"ORDER BY {ident(pk)} LIMIT {int(batch)}")
            first = sql(f"SELECT {ident(pk)}, {ident(column)} FROM {target} WHERE "
                        f"{ident(column)} IS NOT NULL ORDER BY {ident(pk)} LIMIT {int(batch)}")
            update = sql(f"UPDATE {target} SET {ident(column)} = $1 WHERE {ident(pk)} = $2")
            done = 0
            last: object = None
            while True:
                async with db.transaction() as tx:
                    rows = await tx.fetch(first if last is None else select,
                                          () if last is None else (last,))
                    for key, value in rows:
                        if cipher.key_of(value) == cipher.current:
                            continue
                        plain = cipher.decrypt(table_name, column, value)
                        await tx.fetch(update, (cipher.encrypt(table_name, column, plain), key))
                        done += 1
                if len(rows) < batch:
                    break
                last = rows[-1][0]
            counts[f"{table_name}.{column}"] = done
    finally:
        await db.close()
    return counts
