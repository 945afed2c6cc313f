"""The ``edgesep`` command line: parse, call the library, print. TensorFlow is imported
inside the commands that need it, so ``--help`` stays fast and the runtime side works
without it."""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from edgesep import __version__
from edgesep.errors import EdgesepError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


class UserError(click.ClickException):
    """A user mistake: one line ``Error: ...`` and exit code 2 (1 is kept for failed gates)."""

    exit_code = 2


def user_errors(func):
    """Decorate a command so :class:`EdgesepError` becomes :class:`UserError`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EdgesepError as exc:
            raise UserError(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgesep")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """edgesep: train, compress, export, stream and validate a voice-separation model
    for hearing devices (coupled U-Net + ASPP)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )


def main() -> None:
    cli(prog_name="edgesep")


if __name__ == "__main__":
    main()
