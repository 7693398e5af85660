"""Checks of option values, run before any model is loaded: a value that cannot work stops the
command with `error: <option>=<value>: <why>` and exit code 2, instead of a traceback after the
model has loaded (or, worse, numbers the model never computed).

    positive_int("batch_size", cfg.batch_size)          # OptionError: batch_size=-1: must be a positive integer
    one_of("precision", cfg.precision, ("fp32", "int8", "bf16"))
"""


class OptionError(ValueError):
    """An option whose value cannot work; the message is `<option>=<value>: <why>`."""

    def __init__(self, name: str, value, why: str):
        super().__init__(f"{name}={value!r}: {why}")


def positive_int(name: str, value, optional: bool = False):
    """`value` if it is an integer >= 1 (or None where `optional`), else OptionError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(name, value, "must be a positive integer" + (" or null" if optional else ""))
    return value


def non_negative_int(name: str, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(name, value, "must be an integer >= 0")
    return value


def one_of(name: str, value, choices):
    """`value` if it is one of `choices`, else OptionError listing them."""
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(map(str, choices[:-1])) + f" or {choices[-1]}" if len(choices) > 1 else str(choices[0])
        raise OptionError(name, value, f"expected {listed}")
    return value


def boolean(name: str, value):
    if not isinstance(value, bool):
        raise OptionError(name, value, "expected true or false")
    return value
