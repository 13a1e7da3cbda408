"""What an operator sees when an `erasure` command fails: one line saying what failed, why, and what to do."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import click

from shared.logging import mask_text

TRACEBACK_VARIABLE = "ERASURE_TRACEBACK"
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
MAX_REASON = 300
BROKER_FIX = ("start RabbitMQ (`rabbitmq-server -detached` or `docker compose -f deploy/compose.yaml up -d "
              "rabbitmq`) or point ERASURE_AMQP_URL at one; `erasure doctor` checks it")
DATABASE_FIX = ("check ERASURE_<SERVICE>_DATABASE_URL / ERASURE_DATABASE_URL (e.g. sqlite:///var/ledger.db or "
                "postgresql+psycopg://user@host/db); `erasure doctor` checks every database")


def _reason(exc: BaseException) -> str:
    """The exception's own words on one line, passwords in URLs and personal data masked, at most MAX_REASON."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = mask_text(URL_PASSWORD.sub(r"\1***@", text))
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _is_broker_error(exc: BaseException) -> bool:
    import amqp.exceptions
    import kombu.exceptions
    import pika.exceptions

    broker_errors: tuple[type[BaseException], ...] = (
        kombu.exceptions.OperationalError, amqp.exceptions.AMQPError, pika.exceptions.AMQPError,
        ConnectionError, socket.timeout, socket.gaierror, TimeoutError)
    return isinstance(exc, broker_errors)


def _is_database_error(exc: BaseException) -> bool:
    import sqlalchemy.exc

    return isinstance(exc, sqlalchemy.exc.SQLAlchemyError)


def explain(command: str, exc: BaseException) -> str:
    """One line for an operator: what failed, why, what to do."""
    import sqlalchemy.exc
    from pydantic import ValidationError

    from shared.errors import PublishError
    from shared.keys import KeyConfigError

    if isinstance(exc, KeyConfigError):
        return f"{command}: {_reason(exc)}"
    if isinstance(exc, sqlalchemy.exc.ArgumentError | sqlalchemy.exc.NoSuchModuleError):
        return f"{command}: a database URL is not valid ({_reason(exc)}); {DATABASE_FIX}"
    if _is_database_error(exc):
        return f"{command}: a database did not answer ({_reason(exc)}); {DATABASE_FIX}"
    if isinstance(exc, PublishError) or _is_broker_error(exc):
        return f"{command}: cannot reach the broker ({_reason(exc)}); {BROKER_FIX}"
    if isinstance(exc, ValidationError):
        return f"{command}: a setting is not valid ({settings_problem(exc)}); fix the ERASURE_* variable it names"
    if isinstance(exc, OSError):
        return f"{command}: {_reason(exc)}; check the path or permission it names"
    return (f"{command} failed unexpectedly ({type(exc).__name__}: {_reason(exc)}); nothing more is known. "
            f"Run it again with {TRACEBACK_VARIABLE}=1 for the details and report them")


def settings_problem(exc: Any) -> str:
    """A pydantic ValidationError of a settings class as the variables it names and why (never their values)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or exc.title
        reason = error["msg"].removeprefix("Value error, ")
        problems.append(reason if reason.startswith(where) else f"{where}: {reason}")
    return _reason(Exception("; ".join(problems)))


class SettingsError(click.ClickException):
    """A setting that cannot be used: the invocation is wrong, not the world (exit 2, like a usage error)."""

    exit_code = 2


class OperatorGroup(click.Group):
    """A click group whose commands never show a traceback: a failure is one line on stderr and exit 1.

    Usage errors stay click's (exit 2), and so does a setting that cannot be used. ERASURE_TRACEBACK=1 lets
    the exception through for debugging.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get(TRACEBACK_VARIABLE):
                raise
            from pydantic import ValidationError

            command = f"erasure {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "erasure"
            error = SettingsError if isinstance(exc, ValidationError) else click.ClickException
            raise error(explain(command, exc)) from None
