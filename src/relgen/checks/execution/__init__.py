"""relgen's interpreter of ia64 control-page code: machine state, instruction semantics, runs.

`machine` holds the state, `semantics` turns one objdump slot into its effect, `run` loads
an assembled object's region at a physical address and executes it to the branch that
leaves it, and `checks` compares the original and the regenerated page on kexec images.
"""
