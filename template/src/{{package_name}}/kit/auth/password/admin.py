"""The service's users, for an operator: `python -m <package>.kit.auth.password.admin`.

    create EMAIL [--permissions P,Q]   a user; the password is read from stdin
    permissions EMAIL P,Q              replace the user's permissions ("" for none)
    disable EMAIL | enable EMAIL       a disabled user's tokens stop working at once
    revoke EMAIL                       end every login of the user

The password never is an argument (arguments show in `ps` and shell histories): it is
the first line of stdin, so `create` works with registration closed, from a script or
a prompt. It reads the service's settings from the environment, as the app does. An
unknown email, a taken one or a password the rules refuse is one line on stderr (exit
1); bad arguments print the usage (exit 2).
"""

import argparse
import asyncio
import sys

from ...db.session import ReadSession
from ...errors import DomainError
from ...replicas.replicas import open_database
from ...settings import Settings
from ...settings import load_settings
from .accounts import Accounts
from .accounts import Users
from .accounts import normal_email
from .models import User


def _permissions(text: str) -> frozenset[str]:
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m <package>.kit.auth.password.admin", description="The service's users."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="a user; the password is read from stdin")
    create.add_argument("email")
    create.add_argument("--permissions", type=_permissions, default=None, help="P,Q")
    permissions = commands.add_parser("permissions", help="replace a user's permissions")
    permissions.add_argument("email")
    permissions.add_argument("permissions", type=_permissions, help='P,Q ("" for none)')
    for name, text in (
        ("disable", "a disabled user cannot log in, and their tokens stop working"),
        ("enable", "let a disabled user in again"),
        ("revoke", "end every login of the user"),
    ):
        commands.add_parser(name, help=text).add_argument("email")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    password = sys.stdin.readline().rstrip("\r\n") if args.command == "create" else ""
    return asyncio.run(_run(load_settings(Settings), args, password))


async def _run(settings: Settings, args: argparse.Namespace, password: str) -> int:
    accounts = Accounts(settings)
    db = open_database(settings)
    await db.connect()
    try:
        async with db.write_session() as session:
            if args.command == "create":
                try:
                    user = await accounts.register(
                        session, args.email, password, args.permissions or frozenset()
                    )
                except DomainError as error:
                    print(f"password admin: {error.detail}", file=sys.stderr)
                    return 1
                print(f"created {user.email} ({user.id}): {user.permissions or '(none)'}")
                return 0
            found = await _user(session, args.email)
            if found is None:
                print(f"password admin: no user has the email {args.email}", file=sys.stderr)
                return 1
            if args.command == "permissions":
                await accounts.set_permissions(session, found.id, args.permissions)
            elif args.command in ("disable", "enable"):
                await accounts.set_active(session, found.id, args.command == "enable")
            else:
                await accounts.revoke_sessions(session, found.id)
            print(f"{args.command}: {found.email}")
            return 0
    finally:
        await db.disconnect()


async def _user(session: ReadSession, email: str) -> User | None:
    return await Users(session).get_by(email=normal_email(email))


if __name__ == "__main__":
    raise SystemExit(main())
