"""Reading ia64 assembly: the nodes, the parser, expressions, the control-page region and the
preprocessor configurations it names.

The public API, after LibCST: `parse_module`, `parse_statement`, `parse_expression` and
`unparse`, and the node types of `relgen.source.nodes`.
"""

from relgen.source.expressions import MAX_NESTING
from relgen.source.nodes import (
    Assignment,
    BundleClose,
    BundleOpen,
    Comment,
    Directive,
    Instruction,
    Item,
    Label,
    Line,
    MacroCall,
    Module,
    Preprocessor,
    Separator,
    Stop,
    Tag,
    owner_of_comment_line,
    to_json,
)
from relgen.source.parser import parse_expression, parse_module, parse_statement, unparse
from relgen.source.reading import MAX_SOURCE_BYTES, decode_source, read_source, read_stream

__all__ = [
    "MAX_NESTING", "MAX_SOURCE_BYTES", "Assignment", "BundleClose", "BundleOpen", "Comment",
    "Directive", "Instruction", "Item", "Label", "Line", "MacroCall", "Module", "Preprocessor",
    "Separator", "Stop", "Tag", "decode_source", "owner_of_comment_line", "parse_expression",
    "parse_module", "parse_statement", "read_source", "read_stream", "to_json", "unparse",
]
