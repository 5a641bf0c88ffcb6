"""relgen's own errors: positioned input errors (`path:line:col: error: ...`) and tool errors."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


@dataclass
class RelgenError(Exception):
    """An error in the input or the set-up, reported as `path:line:col: error: message`.

    `line` and `column` are 1-based; either may be None where no position is known.
    `source_line` is the text of the offending line (without its ending), shown under
    the message with a caret at `column`.
    """

    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    source_line: str | None = None
    exit_status: int = EXIT_USAGE

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        where = [p for p in (self.path, self.line, self.column) if p is not None]
        head = ":".join(str(p) for p in where)
        text = f"{head}: error: {self.message}" if head else f"error: {self.message}"
        if self.source_line is not None:
            text += "\n" + self.source_line
            if self.column is not None:
                # keep tabs under tabs so the caret lines up in any terminal
                pad = "".join(c if c == "\t" else " " for c in self.source_line[: self.column - 1])
                text += "\n" + pad + "^"
        return text


class ToolError(RelgenError):
    """A required external tool (assembler, preprocessor) is missing or failed."""
