"""How launch scripts run: a user's mistake is one line and exit status 2; a bug keeps its traceback.

    if __name__ == "__main__":
        cli.run(main)

`run` is absl's `app.run` with these differences:
  * the project's input errors (`WorldscapeInputError`: bad data, checkpoint, export or config), absl
    flag errors and `app.UsageError`, raised while flags are parsed or in `main`, print
    `error: <message>` on one line to stderr and exit with status 2;
  * ml_collections config flags that cannot load their file (`--config configs/nope.py:tiny`), that
    override a field the config lacks (`--config.optim.lrr=1`) or whose `get_config` refuses its
    argument are reported the same way, naming the flag or the file;
  * `--help`, `--helpshort` and `--helpfull` exit with status 0 (absl exits 1 after printing help).
Any other exception propagates with its traceback: it is a bug to fix, not a message to read.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

from absl import app, flags
from ml_collections.config_flags.config_flags import is_config_flag

from worldscape_jax.errors import WorldscapeInputError

EXIT_INPUT_ERROR = 2
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
INPUT_ERRORS = (WorldscapeInputError, flags.Error, app.UsageError)


def run(main: Callable[[list[str]], Any]) -> None:
    """`app.run(main)` with input errors as one line (exit 2) and help exiting 0."""
    app.run(_guarded(main), flags_parser=parse_flags)


def fail(message: Any) -> NoReturn:
    """Print `error: message` on one line to stderr and exit with status 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(EXIT_INPUT_ERROR)


def one_line(message: Any) -> str:
    """The message with its lines joined and runs of whitespace collapsed."""
    return " ".join(str(message).split())


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl flag parsing (the `flags_parser` of `app.run`) with every user error as one line."""
    try:
        remaining = flags.FLAGS(list(argv))
        _check_config_files()
        return remaining
    except SystemExit:
        if any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)  # absl's help flags print the help and exit 1 while parsing
        raise
    except INPUT_ERRORS as e:
        fail(_flag_error(e))
    except (KeyError, AttributeError) as e:  # ml_collections: an override names a field the config lacks
        message = _unknown_field(argv, e)
        if message is None:
            raise  # not an override's field: a bug in a config file
        fail(message)
    except OSError as e:
        message = _missing_config_file(e)
        if message is None:
            raise
        fail(message)
    except ValueError as e:  # get_config refused its argument (an unknown scale or variant)
        fail(f"config: {e}")


def _check_config_files() -> None:
    """ml_collections defers a config file's loading error to the first use of the config: use it now."""
    for name in list(flags.FLAGS):
        flag = flags.FLAGS[name]
        if is_config_flag(flag) and flag.value is not None:
            try:
                flag.value.keys()
            except OSError as e:
                fail(f"--{name}: {_missing_config_file(e) or e}")


def _flag_error(error: BaseException) -> str:
    """absl's message, without the traceback ml_collections puts inside it when a config file raises."""
    text = str(error)
    if "Traceback (most recent call last)" not in text:
        return text
    head = text.split("Traceback (most recent call last)")[0].rstrip(": \n")
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    return f"{head}: {last}"


def _guarded(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    @functools.wraps(main)
    def guarded(argv: list[str]) -> Any:
        try:
            return main(argv)
        except INPUT_ERRORS as e:
            fail(e)

    return guarded


def _innermost(error: BaseException) -> BaseException:
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    return error


def _unknown_field(argv: Sequence[str], error: BaseException) -> str | None:
    inner = _innermost(error)
    text = str(inner.args[0]) if inner.args else str(inner)
    key = re.match(r"'([^']*)'", text)
    field = key.group(1) if key else text
    overrides = [arg.split("=")[0] for arg in argv[1:]
                 if arg.startswith("--") and "." in arg.split("=")[0] and field in arg.split("=")[0].split(".")]
    if not overrides:
        return None
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    hint = f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""
    return f"{overrides[0]}: the config has no field {field!r}{hint}"


def _missing_config_file(error: BaseException) -> str | None:
    text = " ".join(str(e) for e in (error, error.__cause__, error.__context__) if e is not None)
    missing = re.search(r"No such file or directory: '([^']+)'", text)
    if missing is None:
        return None
    return (f"config file {missing.group(1)!r} does not exist (expected FILE.py:ARGUMENT, e.g. "
            "configs/teacher.py:tiny)")
