"""A password in the form the server stores it, made on the client.

The roles command gives each role its password this way, so the plain password never
reaches the server: statement logs, `pg_stat_statements` and MariaDB's general log keep
what a client sends, and a hash is all they then hold. Each function gives exactly what
the server would have made of the plain password, so logging in works as before.
"""

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

# PostgreSQL's default `scram_iterations`.
SCRAM_ITERATIONS = 4096

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes: RFC 4013's SASLprep of the password, or the password
    as it is when it is plain ASCII or SASLprep refuses it (as PostgreSQL does)."""
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(check(c) for c in prepared for check in _PROHIBITED):
        return raw
    right_to_left = [stringprep.in_table_d1(c) for c in prepared]
    if any(right_to_left) and (
        any(stringprep.in_table_d2(c) for c in prepared)
        or not (right_to_left[0] and right_to_left[-1])
    ):
        return raw
    return prepared.encode("utf-8")


def scram_sha_256(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """PostgreSQL's SCRAM-SHA-256 secret (RFC 5802, 7677) for `password`, with a random
    salt unless one is given."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def native_password(password: str) -> str:
    """MariaDB's `mysql_native_password` hash, as its PASSWORD() function makes it: the
    server's format (what `mysql.user` holds anyway), hence SHA-1."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324
