"""`runwatch user …` and `runwatch token …`: people who sign in and the API's tokens (admins).

Each subcommand is one call into `etl.accounts`, made as the CLI's caller (`args.caller`). The
accounts module (and Argon2 with it) is imported only when one of them runs, so that every other
command starts as fast as before.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from db.enums import Role

if TYPE_CHECKING:
    import sqlalchemy as sa

    from db.models import TokenInfo, UserInfo

ROLES = [str(role) for role in Role]


def read_password(args: argparse.Namespace) -> str:
    """The new password: one line of stdin with --password-stdin, else asked twice on the terminal."""
    from db.queries import BadParams

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadParams("No terminal to ask for the password: pipe it in with --password-stdin.")
    from getpass import getpass

    first = getpass("Password (at least 12 characters): ")
    if getpass("The same password again: ") != first:
        raise BadParams("The two passwords differ; nothing was changed.")
    return first


# ---------------------------------------------------------------- users


def cmd_user_add(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Add a user who signs in to the app with a password."""
    from etl import accounts

    accounts.add_user(engine, args.caller, args.name, read_password(args), args.role)
    print(f"User {args.name} added with the {args.role} role.")
    return 0


def cmd_user_passwd(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Set a user's password (a lock after failed sign-ins ends too)."""
    from etl import accounts

    accounts.set_password(engine, args.caller, args.name, read_password(args))
    print(f"Password of {args.name} changed.")
    return 0


def cmd_user_role(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Give a user another role."""
    from etl import accounts

    accounts.set_role(engine, args.caller, args.name, args.role)
    print(f"User {args.name} now has the {args.role} role.")
    return 0


def cmd_user_disable(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Refuse a user every sign-in."""
    from etl import accounts

    accounts.disable_user(engine, args.caller, args.name)
    print(f"User {args.name} disabled: they cannot sign in.")
    return 0


def cmd_user_enable(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Let a disabled user sign in again."""
    from etl import accounts

    accounts.enable_user(engine, args.caller, args.name)
    print(f"User {args.name} enabled.")
    return 0


def cmd_user_list(args: argparse.Namespace, engine: sa.Engine) -> int:
    """List the users with role and state; never a password hash."""
    from etl import accounts

    print(_USERS.format("NAME", "ROLE", "STATE", "CREATED (UTC)", "CHANGED (UTC)"))
    for user in accounts.list_users(engine, args.caller):
        times = _moment(user.created_at), _moment(user.updated_at)
        print(_USERS.format(user.name, user.role, _user_state(user), *times))
    return 0


_USERS = "{:<24} {:<9} {:<34} {:<17} {}"


def _user_state(user: UserInfo) -> str:
    if user.disabled:
        return "disabled"
    if user.locked_until is not None and user.locked_until > datetime.now(UTC):
        return f"locked until {_moment(user.locked_until)}"
    return "active"


def _moment(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}" if moment else "-"


# ---------------------------------------------------------------- API tokens


def cmd_token_create(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Create an API token and print it, this once."""
    from etl import accounts

    raw = accounts.create_token(engine, args.caller, args.name, args.role)
    print(raw)
    print(
        f"API token {args.name} ({args.role}) created. It will not be shown again: keep it now "
        "(send it as `Authorization: Bearer <token>`).",
        file=sys.stderr,
    )
    return 0


def cmd_token_list(args: argparse.Namespace, engine: sa.Engine) -> int:
    """List the API tokens with role, maker, state and last use; never a token or its hash."""
    from etl import accounts

    print(_TOKENS.format("NAME", "ROLE", "STATE", "CREATED BY", "CREATED (UTC)", "LAST USED (UTC)"))
    for token in accounts.list_tokens(engine, args.caller):
        print(_TOKENS.format(*_token_row(token)))
    return 0


_TOKENS = "{:<24} {:<9} {:<26} {:<20} {:<17} {}"


def _token_row(token: TokenInfo) -> tuple[str, ...]:
    state = f"revoked {_moment(token.revoked_at)}" if token.revoked_at else "active"
    created = _moment(token.created_at)
    return token.name, token.role, state, token.created_by, created, _moment(token.last_used_at)


def cmd_token_revoke(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Revoke an API token: every request with it is refused from now on."""
    from etl import accounts

    accounts.revoke_token(engine, args.caller, args.name)
    print(f"API token {args.name} revoked.")
    return 0


# ---------------------------------------------------------------- parsers


def add_account_commands(commands: Any) -> None:
    """`runwatch user …` and `runwatch token …`."""
    users = commands.add_parser("user", help="people who sign in to the app (admins)")
    verbs = users.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    for verb, handler, what, password in (
        ("add", cmd_user_add, "add a user with a password and a role", True),
        ("passwd", cmd_user_passwd, "set a user's password", True),
        ("role", cmd_user_role, "give a user another role", False),
        ("disable", cmd_user_disable, "refuse a user every sign-in", False),
        ("enable", cmd_user_enable, "let a disabled user sign in again", False),
    ):
        command = verbs.add_parser(verb, help=what)
        command.add_argument("name", metavar="NAME")
        if verb == "role":
            command.add_argument("role", metavar="ROLE", choices=ROLES, help=" | ".join(ROLES))
        if verb == "add":
            command.add_argument("--role", required=True, choices=ROLES)
        if password:
            command.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from one line of stdin instead of asking twice",
            )
        command.set_defaults(handler=handler)
    verbs.add_parser("list", help="the users, their roles and states").set_defaults(
        handler=cmd_user_list
    )
    _add_token_commands(commands)


def _add_token_commands(commands: Any) -> None:
    tokens = commands.add_parser("token", help="bearer tokens of the HTTP API (admins)")
    verbs = tokens.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = verbs.add_parser("create", help="create a token and print it, this once")
    create.add_argument("name", metavar="NAME", help="what the token is for, e.g. grafana")
    create.add_argument("--role", required=True, choices=ROLES)
    create.set_defaults(handler=cmd_token_create)
    verbs.add_parser("list", help="the tokens, their roles and last use").set_defaults(
        handler=cmd_token_list
    )
    revoke = verbs.add_parser("revoke", help="refuse every request with a token from now on")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=cmd_token_revoke)
