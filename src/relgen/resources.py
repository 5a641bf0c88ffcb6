"""Where the grammar, templates and semantic patches are: the checkout's folders or relgen/_data."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `name` ("grammars", "templates", "cocci"), installed or in a source checkout."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"relgen data folder {name!r} not found next to {_PACKAGE}")
