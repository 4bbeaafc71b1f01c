"""Field encryption: AES-GCM (the ``cryptography`` package) for columns marked encrypted.

A stored value is text: ``hwenc:1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``. The key id
beside each value lets keys rotate: new values use the current key, old ones stay readable
while their key is listed, and ``headwater keys rotate-data`` rewrites them under the current
key. The table and column are the associated data, so a value copied into another column
does not decrypt. Values without the prefix (written before the column was encrypted) read
as they are, until ``rotate-data`` encrypts them.

Decryption happens on the way out, after the database built the JSON, and only for the
columns a plan reads; such reads are not cached, so plaintext never reaches a shared cache.
"""

from __future__ import annotations

import base64
import decimal
import os
from collections.abc import Mapping
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from headwater.errors import DecryptionFailed, InvalidBody
from headwater.model.plan import OutputColumn, OutputEmbed, ReadNode
from headwater.settings_file import EncryptionSettings

PREFIX = "hwenc:1:"
# Numbers keep their exact text: the database wrote them, we only pass them through.
_decode = msgspec.json.Decoder(float_hook=decimal.Decimal).decode
_encode = msgspec.json.Encoder(decimal_format="number").encode


class FieldCipher:
    def __init__(self, settings: EncryptionSettings) -> None:
        self.columns = settings.columns
        self.current = settings.current_key
        self._aead = {kid: AESGCM(key) for kid, key in settings.keys.items()}

    @property
    def enabled(self) -> bool:
        return bool(self.columns)

    def encrypted(self, table: str, column: str) -> bool:
        return (table, column) in self.columns

    def table_columns(self, table: str) -> frozenset[str]:
        return frozenset(c for t, c in self.columns if t == table)

    # --- one value ----------------------------------------------------------------------------

    def encrypt(self, table: str, column: str, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidBody(f"{column}: an encrypted column holds text",
                              details=f"column {table}.{column}", code="22P02")
        nonce = os.urandom(12)
        sealed = self._aead[self.current].encrypt(nonce, value.encode("utf-8"),
                                                  f"{table}.{column}".encode())
        return f"{PREFIX}{self.current}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, table: str, column: str, value: Any) -> Any:
        if not isinstance(value, str) or not value.startswith(PREFIX):
            return value
        kid, _, data = value[len(PREFIX):].partition(":")
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptionFailed("A stored value is encrypted with a key that is not "
                                   "configured", details=f"column {table}.{column}, key {kid}")
        try:
            raw = base64.urlsafe_b64decode(data)
            return aead.decrypt(raw[:12], raw[12:], f"{table}.{column}".encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise DecryptionFailed("A stored encrypted value failed authentication",
                                   details=f"column {table}.{column}") from exc

    def key_of(self, value: Any) -> str | None:
        """The key id a stored value was encrypted with (None: plaintext)."""
        if not isinstance(value, str) or not value.startswith(PREFIX):
            return None
        return value[len(PREFIX):].partition(":")[0]

    # --- rows and response bodies -------------------------------------------------------------

    def encrypt_row(self, table: str, names: tuple[str, ...],
                    values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(self.encrypt(table, n, v) if (table, n) in self.columns else v
                     for n, v in zip(names, values, strict=True))

    def decrypt_row(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self.decrypt(table, k, v) if (table, k) in self.columns else v
                for k, v in row.items()}

    def reads(self, node: ReadNode) -> bool:
        """Does a plan's output include an encrypted column (at any embedding level)?"""
        for o in node.outputs:
            if isinstance(o, OutputColumn) and (node.table, o.column) in self.columns:
                return True
            if isinstance(o, OutputEmbed) and self.reads(o.node):
                return True
        return False

    def decrypt_body(self, body: bytes, node: ReadNode) -> bytes:
        """A read's JSON array with the plan's encrypted outputs decrypted."""
        rows = _decode(body)
        if isinstance(rows, list):
            for row in rows:
                self._walk(row, node)
        return _encode(rows)

    def _walk(self, row: Any, node: ReadNode) -> None:
        if not isinstance(row, dict):
            return
        for o in node.outputs:
            if isinstance(o, OutputColumn):
                if (node.table, o.column) in self.columns and o.key in row:
                    row[o.key] = self.decrypt(node.table, o.column, row[o.key])
            elif o.spread and not o.node.to_many:
                self._walk(row, o.node)  # its keys are the row's own
            elif o.spread:
                self._walk_arrays(row, o.node)
            else:
                child = row.get(o.key)
                for item in child if isinstance(child, list) else [child]:
                    self._walk(item, o.node)

    def _walk_arrays(self, row: dict[str, Any], node: ReadNode) -> None:
        """A to-many spread: each of its columns is an array in the parent's row."""
        for o in node.outputs:
            if (isinstance(o, OutputColumn) and (node.table, o.column) in self.columns
                    and isinstance(row.get(o.key), list)):
                row[o.key] = [self.decrypt(node.table, o.column, v) for v in row[o.key]]
